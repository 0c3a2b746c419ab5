#!/usr/bin/env bash
# Install (if needed) and run the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python -m monai_equivariant.quickstart "$@"
