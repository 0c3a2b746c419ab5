#!/usr/bin/env bash
# Create (or refresh) the project virtualenv in $VENV (default .venv) on a fresh machine: the package (editable)
# with its test extra and the steerable extra's no-compiler path (escnn without py3nj), as docs/installation.md
# describes. Needs no compiler. Idempotent: reinstalls only when setup.cfg, setup.py or pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
stamp="$VENV/.monai_equivariant-installed"
want=$(cat setup.cfg setup.py pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi

pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "^WARNING: Location" >&2); }
# torch: pip's own configuration decides where it comes from. A wheel that the configuration keeps locally
# (find-links: e.g. a CPU build) is taken first; otherwise the index's (on Linux a CUDA build of several GB).
# Install the torch you want into $VENV before running this to choose another build.
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  pip install --no-index --no-deps torch 2>/dev/null || echo "setup_env: no local torch wheel; torch from the index" >&2
fi
pip install -e ".[test,steerable]"
"$VENV/bin/python" -m monai_equivariant.steerable_install > /dev/null 2> >(grep -v "^WARNING: Location" >&2)  # escnn itself, without py3nj (no Fortran)
"$VENV/bin/python" -W ignore -c "import monai_equivariant, escnn, monai, ignite, fire" \
  || { echo "setup_env: install failed" >&2; exit 1; }
echo "$want" > "$stamp"
