#!/usr/bin/env bash
# Create .venv with the verified, pinned stack (constraints.txt) and install this project into it.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade "pip>=24"
# torch first and by exact version: pip takes a local CPU build where the machine provides one.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]"
echo "setup: .venv ready ($(.venv/bin/python --version))"
