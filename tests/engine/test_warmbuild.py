"""The warm `build --skip-existing [--push]`: the same run as the full CLI's, or the full CLI runs."""

from __future__ import annotations

import io
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

from buildpilot import entry, handoff, plancache, prebuild, warmbuild
from buildpilot.engineapi import Engine
from buildpilot.results import RunResult
from buildpilot.runs import load_run
from buildpilot.status import Status
from tests.engine.conftest import Repo, docker, registry_tags
from tests.engine.test_build import images, service_repo

ARGS = ("build", "--push", "--skip-existing")
LOCAL = ("build", "--skip-existing")
RUN_ID = re.compile(r"run \d{8}T\d{6}Z-[0-9a-f]{4}")
TITLE = re.compile(r"run \d{8}T\d{6}Z-[0-9a-f]{4}: (\d+) images in \d+\.\ds")  # id, wall time


def same_but_run(output: str) -> str:
    """`output` without what differs between two runs: the run's id and its wall time."""
    return TITLE.sub(r"run X: \1 images in N.Ns", output)


@pytest.fixture(autouse=True)
def _trust_fresh_files(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fixture's files were written a moment ago; outside tests a snapshot waits 2 s.
    monkeypatch.setattr(plancache, "RACY_NS", 0)


def warm(repo: Repo, monkeypatch: pytest.MonkeyPatch, *args: str) -> str | None:
    """`buildpilot build ARGS` through the warm path, its stdout a pipe; None: it declined."""
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_ACTIONS", "GITLAB_CI")}
    return warmbuild.run([*args[1:], "--config", str(repo.root / "buildpilot.yaml")], env)


def through_the_entry(repo: Repo, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]) -> None:
    """`buildpilot ARGS` in this process through the console entry: the warm path, then
    the full CLI in the same process; it must succeed."""
    monkeypatch.setattr(handoff._Answers, "armed", False)  # as it was, after this test
    monkeypatch.setattr(handoff._Answers, "left", {})
    monkeypatch.setattr(
        sys, "argv", ["buildpilot", *args, "-c", str(repo.root / "buildpilot.yaml")]
    )
    try:
        with pytest.raises(SystemExit) as exit_:
            entry.main()
    finally:
        prebuild.discard()  # what the process's exit would end: nothing outlives the test
    assert exit_.value.code == 0


def inspected(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The refs the engine is asked about from now on, in the order asked."""
    asked: list[str] = []
    inspect = Engine.inspect

    def counting(engine: Engine, ref: str) -> dict[str, object] | None:
        asked.append(ref)
        return inspect(engine, ref)

    monkeypatch.setattr(Engine, "inspect", counting)
    return asked


def comparable(run: RunResult) -> list[dict[str, object]]:
    return [i.model_dump(exclude={"started", "completed"}) for i in run.images]


@pytest.mark.parametrize("args", [ARGS, LOCAL], ids=["push", "load"])
def test_warm_run_is_the_full_runs_twin(
    repo: Repo, namespace: str, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    service_repo(repo, namespace, sleep=0)
    assert repo.buildpilot(*args)[0] == 0  # builds, and leaves the reuse snapshot
    code, full_output = repo.buildpilot(*args)
    assert code == 0, full_output
    full = repo.last_run()
    assert {i.status for i in full.images} == {Status.SKIPPED}

    output = warm(repo, monkeypatch, *args)
    assert output is not None
    assert same_but_run(output) == same_but_run(full_output)
    found = RUN_ID.search(output)
    assert found is not None
    again = load_run(repo.root, found.group(0).removeprefix("run "))
    assert again.id != full.id
    assert comparable(again) == comparable(full)
    record = Path(repo.root / ".buildpilot" / "runs" / f"{again.id}.json").read_text()
    assert record == again.model_dump_json(indent=2)  # as the full path writes it
    history = (repo.root / ".buildpilot" / "history.jsonl").read_text().splitlines()
    assert again.id in history[-1]
    assert full.id in history[-2]
    junit = (repo.root / ".buildpilot" / "junit.xml").read_text()
    assert 'tests="4"' in junit
    assert 'skipped="0"' in junit  # reused images exist: they pass


def test_new_commit_gets_its_tags_without_a_build(
    repo: Repo, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service_repo(repo, namespace, sleep=0)
    data = yaml.safe_load((repo.root / "buildpilot.yaml").read_text())
    for image in data["images"].values():
        image["tags"] = ["{registry}/{name}:latest", "{registry}/{name}:{short_sha}"]
    repo.write({"buildpilot.yaml": data})
    repo.commit("sha tags")
    assert repo.buildpilot(*ARGS)[0] == 0
    first = images(repo.last_run().images)
    repo.write({"README.md": "docs, read by no image\n"})
    repo.commit("docs")
    sha = load_run(repo.root).commit
    output = warm(repo, monkeypatch, *ARGS)
    assert output is not None
    found = RUN_ID.search(output)
    assert found is not None
    run = load_run(repo.root, found.group(0).removeprefix("run "))
    assert run.commit != sha
    for image in run.images:
        assert image.digest == first[image.name].digest
        assert (run.commit or "")[:12] in registry_tags(f"{namespace}/{image.name}")


def test_local_run_puts_back_the_tags_it_needs(
    repo: Repo, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service_repo(repo, namespace, sleep=0)
    assert repo.buildpilot(*LOCAL)[0] == 0
    built = images(repo.last_run().images)
    base = built["base"].digest or ""
    pinned = f"{namespace}/base:{base.replace(':', '-')}"  # what dependents are pinned to
    docker("image", "rm", f"{namespace}/base:latest", pinned)

    output = warm(repo, monkeypatch, *LOCAL)
    assert output is not None
    for ref in (f"{namespace}/base:latest", pinned):
        assert docker("image", "inspect", "--format", "{{.Id}}", ref).strip() == base
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    assert warm(repo, monkeypatch, *LOCAL) is None  # not a local socket: the CLI's business


def test_a_declined_run_hands_what_it_asked_to_the_full_cli(
    repo: Repo, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service_repo(repo, namespace, sleep=0)
    assert repo.buildpilot(*LOCAL)[0] == 0
    fp_tags = {i.name: next(t for t in i.tags if ":fp-" in t) for i in repo.last_run().images}
    repo.write({"svc/tts.txt": "tts, changed\n"})  # tts must be built: the warm path declines
    asked = inspected(monkeypatch)
    through_the_entry(repo, monkeypatch, LOCAL)
    run = images(repo.last_run().images)
    assert {n: i.status for n, i in run.items()} == {
        "base": Status.SKIPPED,
        "stt": Status.SKIPPED,
        "tts": Status.SUCCESS,
        "gateway": Status.SKIPPED,
    }
    for name in ("base", "stt", "gateway"):  # the warm path asked; the full one did not
        assert asked.count(fp_tags[name]) == 1, (name, asked)


@pytest.mark.parametrize("args", [ARGS, LOCAL], ids=["push", "load"])
def test_a_missing_image_starts_building_before_the_full_cli_loads(
    repo: Repo,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
) -> None:
    """The warm path starts the build of a missing image whose bases exist; the full CLI's
    backend takes that very build over instead of starting another."""
    service_repo(repo, namespace, sleep=0)
    assert repo.buildpilot(*args)[0] == 0  # leaves the reuse snapshot, with each request
    repo.write({"svc/tts.txt": "tts, changed\n"})
    started: list[list[str]] = []
    taken: list[list[str]] = []
    start, take = prebuild.start, prebuild.take

    def starting(command: list[str]) -> bool:
        started.append(list(command))
        return start(command)

    def taking(command: list[str]) -> prebuild.Started | None:
        found = take(command)
        taken.extend([list(command)] if found else [])
        return found

    monkeypatch.setattr(prebuild, "start", starting)
    monkeypatch.setattr(prebuild, "take", taking)
    through_the_entry(repo, monkeypatch, args)
    run = images(repo.last_run().images)
    assert [c[c.index("--label") + 1] for c in started] == ["dev.buildpilot.image=tts"]
    assert taken == started  # taken over, exactly as started
    assert started[0][-len(run["tts"].command) + 2 :] == run["tts"].command[2:]  # the same build
    assert {n for n, i in run.items() if i.status is Status.SUCCESS} == {"tts"}


def test_the_changed_image_and_its_base_are_looked_up_first(
    repo: Repo, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Locally the warm path asks the engine first about the images whose fingerprint
    changed since the snapshot's run, and their bases: their build starts before the
    other images are answered."""
    service_repo(repo, namespace, sleep=0)
    assert repo.buildpilot(*LOCAL)[0] == 0
    before = {i.name: i.fingerprint for i in repo.last_run().images}
    repo.write({"svc/tts.txt": "tts, changed again\n"})
    asked = inspected(monkeypatch)
    through_the_entry(repo, monkeypatch, LOCAL)
    after = {i.name: i.fingerprint for i in repo.last_run().images}
    assert [n for n in after if after[n] != before[n]] == ["tts"]
    first = {f"{namespace}/base:fp-{after['base'][:32]}", f"{namespace}/tts:fp-{after['tts'][:32]}"}
    assert set(asked[:2]) == first, asked


def test_anything_to_build_or_to_doubt_goes_to_the_full_cli(
    repo: Repo, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service_repo(repo, namespace, sleep=0)
    assert repo.buildpilot(*ARGS)[0] == 0
    runs = len(list((repo.root / ".buildpilot" / "runs").glob("*.json")))
    assert warm(repo, monkeypatch, *ARGS, "--no-cache") is None  # an option it does not know
    assert warm(repo, monkeypatch, *ARGS, "nosuch") is None  # the full CLI names it
    repo.write({"svc/tts.txt": "tts, changed\n"})  # tts must be built
    assert warm(repo, monkeypatch, *ARGS) is None
    repo.write({"svc/tts.txt": "tts\n", "svc/stt.Dockerfile": "FROM scratch\nCOPY stt.txt /\n"})
    assert warm(repo, monkeypatch, *ARGS) is None  # a Dockerfile changed: no snapshot
    assert len(list((repo.root / ".buildpilot" / "runs").glob("*.json"))) == runs
