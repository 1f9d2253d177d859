"""Image tags from the config's templates: `{registry}/{name}:{git_sha}` and the like."""

from __future__ import annotations

from collections.abc import Mapping

from buildpilot.cache import slug

Fields = Mapping[str, str | None]


def tag_fields(registry: str, name: str, git_sha: str | None, branch: str) -> Fields:
    """The values a tag template of image `name` may use (None: unknown outside git)."""
    return {
        "registry": registry,
        "name": name,
        "git_sha": git_sha,
        "short_sha": git_sha[:12] if git_sha else None,
        "branch": slug(branch),
    }


def missing_field(template: str, fields: Fields) -> str | None:
    """The first field `template` uses that has no value, if any."""
    return next(
        (key for key, value in fields.items() if value is None and "{" + key + "}" in template),
        None,
    )


def render(template: str, fields: Fields) -> str:
    """The tag; every field it uses has a value (see `missing_field`)."""
    return template.format(**fields)


def digest_tag(repository: str, digest: str) -> str:
    """The local tag that names exactly one build, `REPO:sha256-<hex>`: the local image store
    resolves tags only, so a loaded base reaches its dependents under it."""
    return f"{repository}:{digest.replace(':', '-')}"


def tag_name(reference: str) -> str | None:
    """The tag of `host/name:tag`, or None."""
    last = reference.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def image_name(reference: str) -> str:
    """`host:5000/a/b:v1` -> `host:5000/a/b`, as the docker CLI writes it."""
    name, _, last = reference.split("@", 1)[0].rpartition("/")
    return f"{name}/{last.split(':', 1)[0]}" if name else last.split(":", 1)[0]
