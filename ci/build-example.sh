#!/usr/bin/env bash
# The main job on a fresh machine, in one command: install and start the engine and the
# loopback registry (ci/engine-up.sh), install buildpilot into .venv, and build the bundled
# speech example (buildpilot.yaml) with it. The engine stays up afterwards so that the
# images can be used; `bash ci/engine-down.sh` stops what engine-up.sh started.
# Extra arguments go to `buildpilot build` (e.g. `--push`, `stt`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/engine-up.sh
bash ci/install.sh
exec .venv/bin/buildpilot build --config buildpilot.yaml "$@"
