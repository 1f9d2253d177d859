"""The `docker buildx bake` definition equivalent to a buildpilot plan, for side-by-side runs.

Every target gets the same context, Dockerfile, args, secrets, tags and cache refs as
buildpilot's own build of that image; `image:<name>` contexts become bake's
`target:<name>` links, which is how bake orders a base before its dependents.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from buildpilot.plan import Plan


def bake_definition(plan: Plan) -> dict[str, Any]:
    """A bake JSON definition (the `--print` schema) for every image of `plan`."""
    targets: dict[str, Any] = {}
    for name in plan.order:
        request = plan.requests[name]
        target: dict[str, Any] = {
            "context": str(request.context),
            "dockerfile": str(request.dockerfile),
            "args": dict(request.args),
            "labels": dict(request.labels),
            "tags": list(request.tags),
            "contexts": {
                **request.named_contexts,
                **{key: f"target:{image}" for key, image in request.image_contexts.items()},
            },
            "cache-from": list(request.cache.cache_from),
            "cache-to": list(request.cache.cache_to),
            "secret": list(request.secrets),
            "ssh": list(request.ssh),
            "platforms": list(request.platforms),
            "output": ["type=registry" if request.output == "push" else "type=docker"],
        }
        if request.target:
            target["target"] = request.target
        if not request.attestations:
            target["attest"] = ["type=provenance,disabled=true"]
        targets[name] = {key: value for key, value in target.items() if value not in ({}, [])}
    return {"group": {"default": {"targets": list(plan.order)}}, "target": targets}


def write_bake_file(plan: Plan, path: Path) -> Path:
    """Write the bake definition of `plan` to `path` as JSON."""
    path.write_text(json.dumps(bake_definition(plan), indent=2), encoding="utf-8")
    return path
