#!/usr/bin/env bash
# Set up (if needed) and start consultd with the embedded SQLite store under ./data.
# Extra arguments go to `consultd serve` (see `.venv/bin/consultd serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/consultd serve "$@"
