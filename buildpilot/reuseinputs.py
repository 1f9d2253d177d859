"""The reuse snapshot of a loaded config: what a reusing `build` needs of it, as plain data.

Made after a full reusing `build`: per image its fingerprint spec (`fingerprint_inputs`),
repository, tag templates and the checks its secrets and SSH mounts need before a run; the
dependency graph and the bases (images others are built on); what the cache policy reads of
the config; the run's options and each planned image's build request without its tags and
fingerprint (`request.request_data`), from which the warm path starts the build of a
missing image (`prebuild`), and each planned image's fingerprint, whose changes it looks up
first. Saved with `plancache` (kind
REUSE), watching the config, every Dockerfile, every context directory and secret file (and
what `plancache` watches for every snapshot). `warmbuild.py` reuses images from it.
"""

from __future__ import annotations

from typing import Any

from buildpilot import plancache
from buildpilot.config import Project
from buildpilot.fingerprint_inputs import context_dirs, spec
from buildpilot.plan import Plan, dependency_graph
from buildpilot.request import BuildOptions, options_data, request_data


def remember(project: Project, plan: Plan, options: BuildOptions, *, read_since: int) -> None:
    """Keep the reuse snapshot of `project` after a full run of `plan` with `options` that
    read its files no earlier than `read_since` (`time.time_ns()`). Best effort: a snapshot
    that cannot be made or written costs the next run time, never this one."""
    try:
        body, watched = snapshot(project, plan, options)
        plancache.save(project.path, body, watched, read_since=read_since, kind=plancache.REUSE)
    except Exception:  # noqa: BLE001 - the run is done; a snapshot is an extra
        return


def snapshot(
    project: Project, plan: Plan, options: BuildOptions
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The snapshot body and the paths it watches, each with how (a plancache kind)."""
    config = project.config
    watched: dict[str, str] = {str(project.path): plancache.CONTENT}
    if config.mirrors.ca_bundle is not None:
        watched[str(project.root / config.mirrors.ca_bundle)] = plancache.NODE
    images: dict[str, Any] = {}
    for name, image in config.images.items():
        watched[str(project.dockerfile(name))] = plancache.CONTENT
        watched[str(project.root / image.context)] = plancache.NODE
        secrets = [str(project.root / s.src) for s in image.secrets if s.src is not None]
        watched.update(dict.fromkeys(secrets, plancache.NODE))
        images[name] = {
            "spec": spec(project, name),
            "repository": f"{config.registry}/{name}",
            "tags": list(image.tags),
            "secret_files": secrets,
            "secret_envs": [s.env for s in image.secrets if s.env is not None],
            "ssh_agent": any(s == "default" or s.endswith("=default") for s in image.ssh),
            "sized": image.size_budget is not None,
        }
    dirs = [str(d) for d in context_dirs(project, list(config.images))]
    watched.update(dict.fromkeys(dirs, plancache.NODE))
    body = {
        "root": str(project.root),
        "registry": config.registry,
        "cache_write": config.cache.write,
        "default_branch": config.default_branch,
        "builder": config.builder,
        "deps": dependency_graph(project),
        "bases": sorted({b for i in config.images.values() for b in i.image_contexts().values()}),
        "context_dirs": dirs,
        "images": images,
        "options": options_data(options),
        "requests": {name: request_data(r) for name, r in plan.requests.items()},
        "fingerprints": {name: r.fingerprint for name, r in plan.requests.items()},
    }
    return body, list(watched.items())
