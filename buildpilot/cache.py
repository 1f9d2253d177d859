"""Cache-ref policy: which registry refs an image reads its cache from and writes it to."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pure at run time: the warm reuse path slugs branches for tags
    from buildpilot.config import CacheSettings

_SLUG_DROP = re.compile(r"[^a-z0-9_.-]+")
MAX_TAG = 128


def slug(branch: str) -> str:
    """A branch name as a valid registry tag: `feature/Add-STT` -> `feature-add-stt`."""
    tag = _SLUG_DROP.sub("-", branch.lower()).strip(".-")
    return (tag or "default")[:MAX_TAG]


@dataclass(frozen=True)
class CacheRefs:
    """buildx `--cache-from` and `--cache-to` values for one image."""

    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()


def cache_refs(
    settings: CacheSettings,
    *,
    registry: str,
    image: str,
    branch: str,
    default_branch: str,
    target_branch: str | None = None,
    write: bool = True,
) -> CacheRefs:
    """Read the branch's cache, then a pull request's target branch's, then the default
    branch's; write the branch's own when writes are allowed.

    One location per image (a repository, or a gha scope), so images never overwrite each
    other's cache; one tag per branch, so branches never overwrite each other's either.
    """
    if not settings.enabled:
        return CacheRefs()
    if settings.backend == "gha":
        return _gha_refs(settings, image=image, write=write)
    repository = settings.repository.format(registry=registry, name=image)
    branches = [branch, *([target_branch] if target_branch else []), default_branch]
    reads = dict.fromkeys(f"{repository}:{slug(b)}" for b in branches)
    cache_from = tuple(f"type=registry,ref={ref}" for ref in reads)
    if not write:
        return CacheRefs(cache_from=cache_from)
    options = [
        "type=registry",
        f"ref={repository}:{slug(branch)}",
        f"mode={settings.mode}",
        "image-manifest=true",
        "oci-mediatypes=true",
    ]
    if settings.ignore_error:
        options.append("ignore-error=true")
    return CacheRefs(cache_from=cache_from, cache_to=(",".join(options),))


def _gha_refs(settings: CacheSettings, *, image: str, write: bool) -> CacheRefs:
    """GitHub's cache service: one scope per image (GitHub scopes entries by branch itself)."""
    scope = f"buildpilot-{image}"
    cache_from = (f"type=gha,scope={scope}",)
    if not write:
        return CacheRefs(cache_from=cache_from)
    options = ["type=gha", f"scope={scope}", f"mode={settings.mode}"]
    if settings.ignore_error:
        options.append("ignore-error=true")
    return CacheRefs(cache_from=cache_from, cache_to=(",".join(options),))
