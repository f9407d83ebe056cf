#!/usr/bin/env bash
# Installs (scripts/install.sh) and runs the whole test suite: lint, then pytest on real models.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .  # one formatter: run `ruff format .` before committing
mkdir -p test-artifacts
.venv/bin/python -m pytest -ra --durations=15 "$@"
