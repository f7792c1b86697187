# The README's two commands: `make run` and `make test`. Both create .venv on
# first use and (re)install the project when pyproject.toml changed; when
# nothing changed the install step is skipped.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# bench/ may not exist in a fresh clone (git keeps no empty directories).
LINT_PATHS := $(wildcard gateway tests bench)

.PHONY: run test lint typecheck pytest install clean

run: $(STAMP)
	$(BIN)/gateway serve

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)

typecheck: $(STAMP)
	$(BIN)/mypy gateway

# pytest exits 5 when it collected no tests: make treats that as failure.
pytest: $(STAMP)
	$(BIN)/pytest

install: $(STAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Python >= 3.11 needed (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
