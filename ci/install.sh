#!/usr/bin/env bash
# Install buildpilot and its dev tools into .venv (made once, reused after).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 \
    | { grep -v "^WARNING: Location '.*' is ignored" || true; }
