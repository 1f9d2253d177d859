"""A declining warm build's answers, handed once to the full path's first lookup."""

from __future__ import annotations

from typing import Any

import pytest

from buildpilot import handoff
from buildpilot.backend import DockerBackend, Found

BASE = "localhost:5000/speech/base:fp-1"
STT = "localhost:5000/speech/stt:fp-2"
BASE_ID = "sha256:" + "a" * 64
BASE_IMAGE = {"Id": BASE_ID, "RepoTags": [BASE]}


@pytest.fixture
def armed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handoff._Answers, "armed", True)
    monkeypatch.setattr(handoff._Answers, "left", {})


class CountingEngine:
    """The engine's API, answering from a dict and counting the refs it was asked about."""

    def __init__(self, images: dict[str, dict[str, Any]]) -> None:
        self.images = images
        self.asked: list[str] = []

    def inspect(self, ref: str) -> dict[str, Any] | None:
        self.asked.append(ref)
        return self.images.get(ref)


def backend_with(engine: CountingEngine) -> DockerBackend:
    backend = DockerBackend()
    backend.__dict__["_engine"] = engine  # the cached property, answered by the fake
    return backend


@pytest.mark.usefixtures("armed")
def test_the_first_lookup_takes_the_warm_answers_and_asks_only_the_rest() -> None:
    handoff.leave(handoff.ENGINE, {BASE: BASE_IMAGE})  # the warm path saw the base
    engine = CountingEngine({BASE: BASE_IMAGE})
    backend = backend_with(engine)

    assert backend.find([BASE, STT], registry=False) == {BASE: Found(BASE_ID, frozenset([BASE]))}
    assert engine.asked == [STT]
    backend.find([BASE], registry=False)
    assert engine.asked == [STT, BASE]  # each answer is given out once


@pytest.mark.usefixtures("armed")
def test_a_missing_answer_is_an_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    monkeypatch.setattr("buildpilot.backend.manifest_digest", asked.append)
    handoff.leave(handoff.REGISTRY, {STT: None, BASE: "sha256:" + "b" * 64})

    assert DockerBackend().find([BASE, STT], registry=True) == {BASE: Found("sha256:" + "b" * 64)}
    assert asked == []


def test_an_unarmed_process_hands_nothing_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handoff._Answers, "armed", False)
    monkeypatch.setattr(handoff._Answers, "left", {})
    handoff.leave(handoff.ENGINE, {BASE: BASE_IMAGE})  # a warm run inside a test, say
    engine = CountingEngine({})
    assert backend_with(engine).find([BASE], registry=False) == {}
    assert engine.asked == [BASE]
