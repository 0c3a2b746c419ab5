#!/usr/bin/env bash
# Create (or refresh) the project virtualenv in $VENV (default .venv) on a fresh machine.
# Idempotent: reinstalls only when setup.cfg changed. Safe to run on every command.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

# escnn needs py3nj, which compiles Fortran: get gfortran where we can (root + apt), else fall back below.
if ! command -v gfortran >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gfortran >/dev/null) \
    || echo "setup_env: could not install gfortran; escnn will run without py3nj" >&2
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
stamp="$VENV/.monai_equivariant-installed"
want=$(cat setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi

pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "^WARNING: Location" >&2); }
# Take the local CPU wheel of torch when the machine has one (a bare 'torch' would pull the CUDA build).
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  if ls /opt/wheels/torch-2.13.0* >/dev/null 2>&1; then pip install "torch==2.13.0"; else pip install torch; fi
fi
if [ -n "${MONAI_EQ_NO_FORTRAN:-}" ] || ! command -v gfortran >/dev/null 2>&1; then
  # No Fortran compiler: escnn without py3nj (escnn only warns; py3nj serves SO(3) irreps). pip would try to
  # build py3nj for escnn's requirements, so install our requirements ourselves and the package without deps.
  reqs=$("$VENV/bin/python" - <<'PY'
import configparser
cfg = configparser.ConfigParser()
cfg.read("setup.cfg")
lines = cfg["options"]["install_requires"].splitlines() + cfg["options.extras_require"]["test"].splitlines()
print(" ".join(r.strip() for r in lines if r.strip() and not r.strip().startswith(("#", "escnn"))))
PY
)
  pip install --no-deps escnn
  escnn_reqs=$("$VENV/bin/python" -c "import importlib.metadata as m, re
print(' '.join(re.sub(r'[() ]', '', r.split(';')[0]) for r in m.requires('escnn') if not r.startswith('py3nj')))")
  # shellcheck disable=SC2086
  pip install $reqs $escnn_reqs
  pip install --no-deps -e .
else
  pip install -e ".[test]"
fi
"$VENV/bin/python" -c "import monai_equivariant, escnn, monai, ignite" \
  || { echo "setup_env: install failed" >&2; exit 1; }
echo "$want" > "$stamp"
