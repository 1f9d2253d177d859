from __future__ import annotations

import pytest

from buildpilot.cache import cache_refs, slug
from buildpilot.config import CacheSettings


@pytest.mark.parametrize(
    ("branch", "tag"),
    [
        ("main", "main"),
        ("feature/Add-STT", "feature-add-stt"),
        ("-weird..name-", "weird..name"),
        ("renovate/torch@2.3", "renovate-torch-2.3"),
        ("///", "default"),
        ("x" * 300, "x" * 128),
    ],
)
def test_slug(branch: str, tag: str) -> None:
    assert slug(branch) == tag


def test_reads_branch_then_default_and_writes_branch() -> None:
    refs = cache_refs(
        CacheSettings(),
        registry="localhost:5000/speech",
        image="stt",
        branch="feature/x",
        default_branch="main",
    )
    assert refs.cache_from == (
        "type=registry,ref=localhost:5000/speech/cache/stt:feature-x",
        "type=registry,ref=localhost:5000/speech/cache/stt:main",
    )
    assert refs.cache_to == (
        "type=registry,ref=localhost:5000/speech/cache/stt:feature-x,mode=max,"
        "image-manifest=true,oci-mediatypes=true,ignore-error=true",
    )


def test_default_branch_is_read_once() -> None:
    refs = cache_refs(
        CacheSettings(mode="min", ignore_error=False),
        registry="r",
        image="a",
        branch="main",
        default_branch="main",
    )
    assert refs.cache_from == ("type=registry,ref=r/cache/a:main",)
    assert refs.cache_to == (
        "type=registry,ref=r/cache/a:main,mode=min,image-manifest=true,oci-mediatypes=true",
    )


def test_images_never_share_a_ref() -> None:
    a = cache_refs(CacheSettings(), registry="r", image="stt", branch="b", default_branch="main")
    b = cache_refs(CacheSettings(), registry="r", image="tts", branch="b", default_branch="main")
    assert not set(a.cache_to) & set(b.cache_to)


def test_read_only_and_disabled() -> None:
    ro = cache_refs(
        CacheSettings(), registry="r", image="a", branch="pr", default_branch="main", write=False
    )
    assert ro.cache_to == ()
    assert len(ro.cache_from) == 2
    off = cache_refs(
        CacheSettings(enabled=False), registry="r", image="a", branch="x", default_branch="main"
    )
    assert off.cache_from == off.cache_to == ()
