#!/usr/bin/env bash
# The whole test suite on a fresh machine, in one command: installs and starts the Docker
# engine and loopback registry the engine tier needs (ci/engine-up.sh), installs buildpilot
# with its dev tools into .venv, runs lint, types and every test, then stops exactly what
# it started. Extra arguments go to pytest (e.g. `bash ci/test.sh -k cache`).
set -euo pipefail
cd "$(dirname "$0")/.."

# A state directory of this run's own: engine-down.sh then stops only what this run's
# engine-up.sh started, never an engine that was already there. The registry data in it
# (about 150 MB of test images) goes at the end; the engine's logs stay after a failure.
own_state=""
if [ -z "${BUILDPILOT_ENGINE_STATE:-}" ]; then
    own_state=$(mktemp -d /tmp/buildpilot-test-engine.XXXXXX)
    export BUILDPILOT_ENGINE_STATE="$own_state"
fi
finish() {
    local status=$?
    bash ci/engine-down.sh
    if [ -n "$own_state" ]; then
        if [ "$status" -eq 0 ]; then
            rm -rf "$own_state"
        else
            rm -rf "$own_state/registry-data"
            echo "test.sh: the engine's logs are in $own_state" >&2
        fi
    fi
}
trap finish EXIT
bash ci/engine-up.sh

bash ci/install.sh
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff" && ruff check . && ruff format --check .
echo "== mypy" && mypy
echo "== pytest"
# The engine is up: from here a missing engine is a failure, never a skip.
BUILDPILOT_REQUIRE_ENGINE=1 python -m pytest "$@"
