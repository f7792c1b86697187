"""Package data: mail templates, installed as ``gateway._templates`` (see
pyproject.toml). Not code; the __init__ makes it importable in editable
installs too."""
