"""Servicedesk mail gateway: turns customer e-mail into service-desk tickets."""

__version__ = "0.1.0"
