# The README's two commands: `make run` and `make test`. Both create .venv on
# first use and (re)install the project when pyproject.toml changed; when
# nothing changed the install step is skipped. `make test` also installs the
# Debian packages the tests talk to when it runs as root.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# bench/ may not exist in a fresh clone (git keeps no empty directories).
LINT_PATHS := $(wildcard gateway tests bench)

.PHONY: run test system-packages lint typecheck pytest install clean

run: $(STAMP)
	$(BIN)/gateway serve

test: system-packages lint typecheck pytest

# As root: apt-get install whatever of scripts/debian-packages.txt is missing
# (nothing to do, no apt-get, once they are there). As another user: a note;
# the tests that need root or a missing package are skipped with the reason.
system-packages:
	@scripts/install-debian-packages.sh

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
