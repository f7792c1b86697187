"""The desk's operations on tickets, whoever asks: the mail pipeline, the
command line and the web call the same functions (``operations``), which
check who may do what (``access``), record the history and decide the
notifications (``notify``)."""
