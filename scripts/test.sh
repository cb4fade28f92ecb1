#!/usr/bin/env bash
# Set up (if needed), then lint, type-check and run every test. CI runs exactly this.
# Extra arguments go to pytest (e.g. scripts/test.sh -k chat).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
