from __future__ import annotations

import pytest

from buildpilot.errors import CycleError, UnknownImageError
from buildpilot.graph import closure, descendants, find_cycle, waves

GRAPH = {"base": [], "stt": ["base"], "tts": ["base"], "gateway": [], "edge": ["stt", "gateway"]}


def test_waves_put_bases_first_and_siblings_together() -> None:
    assert waves(GRAPH, GRAPH) == [["base", "gateway"], ["stt", "tts"], ["edge"]]


def test_closure_adds_dependencies() -> None:
    assert closure(GRAPH, ["edge"]) == {"edge", "stt", "base", "gateway"}


def test_closure_unknown_image_lists_known_ones() -> None:
    with pytest.raises(UnknownImageError, match="unknown image 'stx'") as info:
        closure(GRAPH, ["stx"])
    assert info.value.hint is not None
    assert "base, edge, gateway, stt, tts" in info.value.hint


def test_find_cycle_returns_the_loop() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": []}) == ["a", "b", "c", "a"]
    assert find_cycle(GRAPH) is None


def test_waves_refuse_a_cycle() -> None:
    with pytest.raises(CycleError, match="a -> b -> a"):
        waves({"a": ["b"], "b": ["a"]}, ["a", "b"])


def test_descendants() -> None:
    assert descendants(GRAPH, "base") == {"stt", "tts", "edge"}
    assert descendants(GRAPH, "edge") == set()
