#!/usr/bin/env bash
# Rebuild gateway/store/migrations/versions/0001_initial.py from the models
# (gateway/store/models.py) by autogenerating against an empty scratch SQLite
# database. Only while nothing is deployed: once a database exists at 0001,
# add a new revision instead (python -m gateway.store.schema revision -m "...").
# Afterwards: review the file, then `pytest tests/integration/test_schema.py`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
versions=gateway/store/migrations/versions
others=$(find "$versions" -maxdepth 1 -name '*.py' ! -name '0001_initial.py' | head -n1)
if [[ -n "$others" ]]; then
    echo "refusing: later revisions exist ($others); make a new revision instead" >&2
    exit 1
fi
rm -f "$versions/0001_initial.py"
"$PY" -m gateway.store.schema revision --rev-id 0001 -m initial
"$PY" -m ruff format --quiet "$versions/0001_initial.py" 2>/dev/null || true
echo "regenerated $versions/0001_initial.py"
