"""Package data: the example configuration, installed as ``gateway._config``
(see pyproject.toml). Not code; the __init__ makes it importable in editable
installs too."""
