#!/usr/bin/env bash
# Re-record the BuildKit progress streams in this directory from a real engine
# (ci/engine-up.sh: Docker engine + buildx, registry on 127.0.0.1:5000).
# Each build context is src/<name>/ plus a copy of /bin/busybox, made in a temp dir
# so that the 2 MB binary is not kept in the repository.
set -uo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ctx() {  # ctx NAME -> prints the path of a fresh build context for src/NAME
    rm -rf "${work:?}/$1"
    cp -r "src/$1" "$work/$1"
    cp /bin/busybox "$work/$1/busybox"
    echo "$work/$1"
}

build() {  # build OUTPUT CONTEXT ARGS... ; progress goes to OUTPUT, the exit code is ignored
    local out=$1 context=$2; shift 2
    docker buildx build --progress=rawjson --provenance=false "$@" "$context" 2>"$out" >/dev/null
    echo "record.sh: $out exit=$?" >&2
}

build multistage_cold.rawjson "$(ctx multistage)" --no-cache -t progress-test/multistage:t
build multistage_cached.rawjson "$(ctx multistage)" -t progress-test/multistage:t
build single_stage_logs.rawjson "$(ctx single)" --no-cache -t progress-test/single:t
build failing_step.rawjson "$(ctx failing)" --no-cache -t progress-test/failing:t
build cache_export_to_registry.rawjson "$(ctx multistage)" --no-cache -t progress-test/multistage:t \
    --cache-to type=registry,ref=localhost:5000/progress-test/cache:t,mode=max,ignore-error=true
build cache_export_failed.rawjson "$(ctx multistage)" --no-cache -t progress-test/multistage:t \
    --cache-to type=registry,ref=localhost:5999/progress-test/cache:t,mode=max,ignore-error=true
build cache_import_and_push.rawjson "$(ctx multistage)" -t localhost:5000/progress-test/multistage:t --push \
    --cache-from type=registry,ref=localhost:5000/progress-test/cache:t
build from_local_image.rawjson "$(ctx from_local)" --no-cache -t progress-test/from-local:t
