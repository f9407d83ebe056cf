#!/usr/bin/env bash
# Installs (scripts/install.sh) and runs the whole test suite: lint, then pytest on real models.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/ruff check .
mkdir -p test-artifacts
.venv/bin/python -m pytest -ra --durations=15 "$@"
