"""A build the warm path started is taken over by the backend, once, exactly as asked for."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from buildpilot import prebuild
from buildpilot.backend import DockerBackend

DIGEST = "sha256:" + "ab" * 32
# A stand-in for `docker-buildx`: counts its runs, prints one rawjson status, writes the
# metadata file buildpilot asked for, and then waits for as long as it is told.
FAKE_BUILDX = f"""
import json, pathlib, sys, time
args = sys.argv[1:]
runs = pathlib.Path(args[args.index("--runs") + 1])
runs.write_text(runs.read_text() + "run\\n" if runs.exists() else "run\\n")
sys.stderr.write(json.dumps({{"vertexes": [{{"digest": "sha256:1", "name": "[1/1] RUN true"}}]}}))
sys.stderr.write("\\n")
sys.stderr.flush()
time.sleep(float(args[args.index("--sleep") + 1]))
meta = pathlib.Path(args[args.index("--metadata-file") + 1])
meta.write_text(json.dumps({{"containerimage.digest": "{DIGEST}"}}))
"""


@pytest.fixture(autouse=True)
def _nothing_left() -> Iterator[None]:
    yield
    prebuild.discard()


def build_argv(tmp_path: Path, image: str, *, sleep: float = 0.0) -> list[str]:
    """`buildx build …` of `image`, as the executor hands it to the backend."""
    runs = tmp_path / f"{image}.runs"
    return [
        "buildx",
        "build",
        "--label",
        f"dev.buildpilot.image={image}",
        "--runs",
        str(runs),
        "--sleep",
        str(sleep),
    ]


def backend(tmp_path: Path) -> tuple[DockerBackend, list[str]]:
    """A backend whose buildx is FAKE_BUILDX, and that program."""
    script = tmp_path / "docker-buildx.py"
    script.write_text(FAKE_BUILDX, encoding="utf-8")
    buildx = [sys.executable, str(script)]
    docker = DockerBackend(grace_seconds=1)
    docker.__dict__["_buildx"] = buildx  # the cached plugin lookup
    return docker, buildx


def test_the_backend_takes_over_the_started_build(tmp_path: Path) -> None:
    docker, buildx = backend(tmp_path)
    argv = build_argv(tmp_path, "api", sleep=0.2)
    assert prebuild.start([*buildx, *argv[1:]])
    started = prebuild._started[(*buildx, *argv[1:])]
    statuses: list[dict[str, Any]] = []
    outcome = docker.build(argv, on_status=statuses.append)
    assert outcome.returncode == 0
    assert outcome.digest == DIGEST  # from the metadata file the started build wrote
    assert outcome.since == started.since  # the image's duration counts from there
    assert [v["name"] for s in statuses for v in s["vertexes"]] == ["[1/1] RUN true"]
    assert (tmp_path / "api.runs").read_text() == "run\n"  # one buildx, not two
    assert not started.metadata_file.parent.exists()  # its files are gone once read


def test_a_build_is_taken_once(tmp_path: Path) -> None:
    docker, buildx = backend(tmp_path)
    argv = build_argv(tmp_path, "api")
    assert prebuild.start([*buildx, *argv[1:]])
    assert docker.build(argv, on_status=lambda status: None).since is not None
    assert docker.build(argv, on_status=lambda status: None).since is None  # its own build
    assert (tmp_path / "api.runs").read_text() == "run\nrun\n"


def test_another_command_for_the_image_ends_the_started_build_first(tmp_path: Path) -> None:
    docker, buildx = backend(tmp_path)
    started_argv = build_argv(tmp_path, "api", sleep=30)
    assert prebuild.start([*buildx, *started_argv[1:]])
    started = prebuild._started[(*buildx, *started_argv[1:])]
    other = build_argv(tmp_path, "api", sleep=0)
    other += ["--no-cache"]  # the full path asks for something else
    outcome = docker.build(other, on_status=lambda status: None)
    assert outcome.returncode == 0
    assert outcome.since is None  # built by the backend itself
    assert started.process.returncode is not None  # the started one no longer runs
    assert not started.metadata_file.parent.exists()


def test_a_build_of_another_image_is_left_running(tmp_path: Path) -> None:
    docker, buildx = backend(tmp_path)
    web = build_argv(tmp_path, "web", sleep=30)
    assert prebuild.start([*buildx, *web[1:]])
    assert docker.build(build_argv(tmp_path, "api"), on_status=lambda status: None).since is None
    assert prebuild._started[(*buildx, *web[1:])].process.poll() is None


def test_builds_nobody_took_end_at_exit(tmp_path: Path) -> None:
    _, buildx = backend(tmp_path)
    argv = build_argv(tmp_path, "api", sleep=30)
    assert prebuild.start([*buildx, *argv[1:]])
    started = prebuild._started[(*buildx, *argv[1:])]
    prebuild.discard()  # what the exit handler runs
    assert started.process.returncode is not None
    assert not prebuild._started


def test_a_build_that_cannot_start_is_left_to_the_full_path(tmp_path: Path) -> None:
    assert not prebuild.start([str(tmp_path / "no-such-buildx"), "build"])
    assert not prebuild._started


def test_the_metadata_file_is_the_started_builds_own(tmp_path: Path) -> None:
    _, buildx = backend(tmp_path)
    argv = build_argv(tmp_path, "api")
    assert prebuild.start([*buildx, *argv[1:]])
    started = prebuild.take([*buildx, *argv[1:]])
    assert started is not None
    started.process.communicate()
    assert json.loads(started.metadata_file.read_text()) == {"containerimage.digest": DIGEST}
    started.folder.cleanup()


@pytest.mark.parametrize(
    ("flags", "environment", "seen"),
    [
        (["--provenance=false"], {}, "false"),  # no attestation reads buildx's git lookups
        (["--provenance=false"], {"BUILDX_GIT_INFO": "1"}, "1"),  # the user's setting stands
        ([], {}, "unset"),  # provenance records the commit: buildx looks it up
    ],
)
def test_builds_without_provenance_skip_buildx_git_lookups(
    monkeypatch: pytest.MonkeyPatch, flags: list[str], environment: dict[str, str], seen: str
) -> None:
    monkeypatch.delenv("BUILDX_GIT_INFO", raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    script = 'import os, sys; sys.stdout.write(os.environ.get("BUILDX_GIT_INFO", "unset"))'
    process = prebuild.spawn([sys.executable, "-c", script, *flags])
    stdout, _ = process.communicate(timeout=30)
    assert stdout.decode() == seen


# A stand-in for `docker-buildx` that writes its stderr in the pieces it is given, pausing
# after each as long as it is told, then writes the metadata file.
PACED_BUILDX = f"""
import json, pathlib, sys, time
args = sys.argv[1:]
for text, pause in json.loads(pathlib.Path(args[args.index("--pieces") + 1]).read_text()):
    sys.stderr.write(text)
    sys.stderr.flush()
    time.sleep(pause)
meta = pathlib.Path(args[args.index("--metadata-file") + 1])
meta.write_text(json.dumps({{"containerimage.digest": "{DIGEST}"}}))
"""
WHEN = "2026-11-22T10:00:00.000000000Z"
LOAD = {"digest": "sha256:1", "name": "[internal] load build context", "started": WHEN}
COPY = {"digest": "sha256:2", "name": "[2/3] COPY . .", "started": WHEN, "cached": True}
RUN = {"digest": "sha256:3", "name": "[3/3] RUN make", "started": WHEN}


def line(*vertexes: dict[str, Any]) -> str:
    return json.dumps({"vertexes": list(vertexes)}) + "\n"


def paced(tmp_path: Path, pieces: list[tuple[str, float]]) -> tuple[DockerBackend, list[str]]:
    """A backend whose buildx writes `pieces`, and the argv of a build the warm path started."""
    script = tmp_path / "paced-buildx.py"
    script.write_text(PACED_BUILDX, encoding="utf-8")
    (tmp_path / "pieces.json").write_text(json.dumps(pieces), encoding="utf-8")
    docker = DockerBackend(grace_seconds=1)
    docker.__dict__["_buildx"] = [sys.executable, str(script)]
    argv = ["buildx", "build", "--label", "dev.buildpilot.image=api"]
    argv += ["--pieces", str(tmp_path / "pieces.json")]
    assert prebuild.start([sys.executable, str(script), *argv[1:]])
    return docker, argv


def names(docker: DockerBackend, argv: list[str]) -> list[str]:
    """The vertex names of every status the backend's build of `argv` reports, in order."""
    statuses: list[dict[str, Any]] = []
    assert docker.build(argv, on_status=statuses.append).returncode == 0
    return [v["name"] for s in statuses for v in s["vertexes"]]


def test_settle_waits_until_a_step_runs_and_the_backend_still_sees_every_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prebuild, "STEP_GRACE", 0.0)
    done = {**RUN, "completed": WHEN}
    docker, argv = paced(
        tmp_path, [(line(LOAD), 0.1), (line(COPY), 0.1), (line(RUN), 3.0), (line(done), 0)]
    )
    prebuild.settle(limit=30)
    (started,) = prebuild._started.values()
    assert started.process.poll() is None  # back while the step runs
    assert bytes(started.head) == (line(LOAD) + line(COPY) + line(RUN)).encode()  # no further
    assert names(docker, argv) == [LOAD["name"], COPY["name"], RUN["name"], RUN["name"]]


def test_settle_ends_with_a_build_that_never_runs_a_step(tmp_path: Path) -> None:
    docker, argv = paced(tmp_path, [(line(LOAD), 0), (line(COPY), 0)])
    since = time.monotonic()
    prebuild.settle(limit=30)
    assert time.monotonic() - since < 30  # the end of its output, not the limit
    assert names(docker, argv) == [LOAD["name"], COPY["name"]]


def test_a_line_settle_cut_in_two_is_whole_for_the_backend(tmp_path: Path) -> None:
    text = line(RUN)
    docker, argv = paced(tmp_path, [(text[:20], 1.0), (text[20:], 0)])
    prebuild.settle(limit=0.3)
    (started,) = prebuild._started.values()
    assert bytes(started.head) == text[:20].encode()
    assert names(docker, argv) == [RUN["name"]]


def test_settle_reads_each_build_once(tmp_path: Path) -> None:
    docker, argv = paced(tmp_path, [(line(LOAD), 0.5), (line(COPY), 0)])
    prebuild.settle(limit=0.2)
    prebuild.settle(limit=30)  # a settled build is not waited for again
    (started,) = prebuild._started.values()
    assert bytes(started.head) == line(LOAD).encode()
    assert names(docker, argv) == [LOAD["name"], COPY["name"]]
