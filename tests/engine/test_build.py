"""`buildpilot build` against the real engine and registry."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from buildpilot.registry import manifest_digest
from buildpilot.results import ImageResult
from buildpilot.status import Status
from tests.engine.conftest import (
    Repo,
    config,
    docker,
    drop_build_cache,
    registry_tags,
    run_in_image,
)

SERVICE = """\
FROM base
RUN sleep {sleep} && echo {name} > /name
COPY {name}.txt /app.txt
"""


def images(run_images: list[ImageResult]) -> dict[str, ImageResult]:
    return {image.name: image for image in run_images}


def dockerfile_steps(image: ImageResult) -> list[tuple[str | None, bool]]:
    return [(s.instruction, s.cached) for s in image.timeline.steps if s.stage is not None]


def fully_cached(image: ImageResult) -> bool:
    """BuildKit ran the image's Dockerfile steps and took every one from its cache."""
    steps = dockerfile_steps(image)
    return bool(steps) and all(cached for _, cached in steps)


def last_step_completed(image: ImageResult) -> datetime:
    return max(s.completed for s in image.timeline.steps if s.stage and s.completed)


def service_repo(repo: Repo, namespace: str, *, sleep: int = 1) -> None:
    """base <- stt, base <- tts, and an independent gateway."""
    repo.write(
        {
            "svc/stt.txt": "stt\n",
            "svc/tts.txt": "tts\n",
            "svc/stt.Dockerfile": SERVICE.format(name="stt", sleep=sleep),
            "svc/tts.Dockerfile": SERVICE.format(name="tts", sleep=sleep),
            "gateway/Dockerfile": "FROM scratch AS build\nCOPY g.txt /g\nFROM scratch\nCOPY --from=build /g /g\n",
            "gateway/g.txt": "g",
            "buildpilot.yaml": config(
                namespace,
                {
                    "base": {"context": "base"},
                    "stt": {
                        "context": "svc",
                        "dockerfile": "stt.Dockerfile",
                        "contexts": {"base": "image:base"},
                    },
                    "tts": {
                        "context": "svc",
                        "dockerfile": "tts.Dockerfile",
                        "contexts": {"base": "image:base"},
                    },
                    "gateway": {"context": "gateway"},
                },
            ),
        }
    )
    repo.commit("init")


def test_registry_cache_round_trip(repo: Repo, namespace: str) -> None:
    service_repo(repo, namespace)
    code, output = repo.buildpilot("build", "stt")
    assert code == 0, output
    first = images(repo.last_run().images)
    assert not all(cached for _, cached in dockerfile_steps(first["stt"]))
    assert registry_tags(f"{namespace}/cache/stt") == ["main"]
    assert registry_tags(f"{namespace}/cache/base") == ["main"]

    drop_build_cache()
    code, output = repo.buildpilot("build", "stt", "--no-skip-existing")  # through BuildKit
    assert code == 0, output
    again = images(repo.last_run().images)
    for name in ("base", "stt"):
        steps = dockerfile_steps(again[name])
        assert steps, name
        assert all(cached for _, cached in steps), (name, steps)
    assert again["stt"].digest == first["stt"].digest


def test_feature_branch_reads_default_branch_cache_and_writes_its_own(
    repo: Repo, namespace: str
) -> None:
    service_repo(repo, namespace)
    assert repo.buildpilot("build", "base")[0] == 0
    drop_build_cache()
    code, output = repo.buildpilot(
        "build", "base", "--branch", "feature/Fast-STT", "--no-skip-existing"
    )
    assert code == 0, output
    base = repo.last_run().images[0]
    assert fully_cached(base)
    assert registry_tags(f"{namespace}/cache/base") == ["feature-fast-stt", "main"]


def test_bases_first_and_independent_images_in_parallel(repo: Repo, namespace: str) -> None:
    service_repo(repo, namespace, sleep=3)
    code, output = repo.buildpilot("build", "--jobs", "3")
    assert code == 0, output
    run = images(repo.last_run().images)
    assert {name: r.status for name, r in run.items()} == dict.fromkeys(run, Status.SUCCESS)
    base, stt, tts = run["base"], run["stt"], run["tts"]
    for image in (base, stt, tts):
        assert image.started is not None
        assert image.completed is not None
    # Dependents start once the base's image exists (its cache export may still run).
    assert last_step_completed(base) <= stt.started
    assert last_step_completed(base) <= tts.started
    # stt and tts each sleep 3 s: their builds overlap in time
    assert stt.started < tts.completed
    assert tts.started < stt.completed


def test_unchanged_base_leaves_dependents_fully_cached(repo: Repo, namespace: str) -> None:
    service_repo(repo, namespace)
    assert repo.buildpilot("build", "stt")[0] == 0
    first = images(repo.last_run().images)
    # A new commit that touches neither image: the base is rebuilt from cache, and BuildKit
    # must report every step of the dependent as cached.
    repo.write({"README.md": "docs\n"})
    repo.commit("docs")
    assert repo.buildpilot("build", "stt", "--no-skip-existing")[0] == 0  # through BuildKit
    second = images(repo.last_run().images)
    assert second["base"].digest == first["base"].digest
    assert fully_cached(second["stt"]), dockerfile_steps(second["stt"])


def test_push_reaches_dependents_through_registry_by_digest(repo: Repo, namespace: str) -> None:
    service_repo(repo, namespace)
    code, output = repo.buildpilot("build", "stt", "--push")
    assert code == 0, output
    run = images(repo.last_run().images)
    for name in ("base", "stt"):  # the tag asked for, and the fingerprint tag for reuse
        tags = registry_tags(f"{namespace}/{name}")
        assert "latest" in tags
        fingerprint_tag = f"fp-{run[name].fingerprint[:32]}"
        assert [t for t in tags if t != "latest"] == [fingerprint_tag]
        # buildx pushes `latest`; the fingerprint tag is the same manifest, put after it
        assert f"{namespace}/{name}:{fingerprint_tag}" not in run[name].command
        for tag in tags:
            assert manifest_digest(f"{namespace}/{name}:{tag}") == run[name].digest
    pinned = f"base=docker-image://{namespace}/base@{run['base'].digest}"
    assert pinned in run["stt"].command
    # Pushing again with nothing changed keeps the dependent fully cached.
    drop_build_cache()
    assert repo.buildpilot("build", "stt", "--push", "--no-skip-existing")[0] == 0
    again = images(repo.last_run().images)
    assert again["base"].digest == run["base"].digest
    assert fully_cached(again["stt"])


def test_failing_image_aborts_its_dependents_only(repo: Repo, namespace: str) -> None:
    repo.write(
        {
            "bad/Dockerfile": "FROM base\nRUN echo 'compiling model' && echo 'boom: no GPU found' >&2 && exit 3\n",
            "child/Dockerfile": "FROM bad\n",
            "ok/Dockerfile": "FROM base\nRUN sleep 2\n",
            "buildpilot.yaml": config(
                namespace,
                {
                    "base": {"context": "base"},
                    "bad": {"context": "bad", "contexts": {"base": "image:base"}},
                    "child": {"context": "child", "contexts": {"bad": "image:bad"}},
                    "ok": {"context": "ok", "contexts": {"base": "image:base"}},
                },
            ),
        }
    )
    repo.commit()
    code, output = repo.buildpilot("build")
    assert code == 1, output
    run = images(repo.last_run().images)
    assert run["base"].status is Status.SUCCESS
    assert run["ok"].status is Status.SUCCESS
    assert run["bad"].status is Status.FAILED
    assert run["child"].status is Status.ABORTED
    assert run["child"].reason == "not built: dependency 'bad' failed"
    assert run["bad"].timeline.failed_step is not None
    assert "RUN echo 'compiling model'" in run["bad"].timeline.failed_step
    assert any("boom: no GPU found" in line for line in run["bad"].timeline.log_tail)
    assert "boom: no GPU found" in output
    assert '"vertexes"' not in output  # the progress stream is not dumped as the error


def test_fail_fast_starts_nothing_after_a_failure(repo: Repo, namespace: str) -> None:
    repo.write(
        {
            "bad/Dockerfile": "FROM base\nRUN exit 1\n",
            "later/Dockerfile": "FROM base\nRUN true\n",
            "buildpilot.yaml": config(
                namespace,
                {
                    "base": {"context": "base"},
                    "bad": {"context": "bad", "contexts": {"base": "image:base"}},
                    "later": {"context": "later", "contexts": {"base": "image:base"}},
                },
            ),
        }
    )
    repo.commit()
    code, _ = repo.buildpilot("build", "--jobs", "1", "--fail-fast")
    assert code == 1
    run = images(repo.last_run().images)
    assert run["bad"].status is Status.FAILED
    assert run["later"].status is Status.ABORTED
    assert run["later"].reason == "not started: --fail-fast after bad failed"


def test_cache_mount_persists_between_builds(repo: Repo, namespace: str) -> None:
    repo.write(
        {
            "app/Dockerfile": (
                "FROM base\nARG BUST\n"
                f"RUN --mount=type=cache,target=/cache,id=counter-{namespace.rsplit('/', 1)[-1]} echo $BUST >> /cache/runs "
                "&& wc -l < /cache/runs > /count\n"
            ),
            "buildpilot.yaml": config(
                namespace,
                {
                    "base": {"context": "base"},
                    "app": {
                        "context": "app",
                        "contexts": {"base": "image:base"},
                        "args": {"BUST": "one"},
                    },
                },
            ),
        }
    )
    repo.commit()
    assert repo.buildpilot("build", "app")[0] == 0
    first = int(run_in_image(f"{namespace}/app:latest", "cat", "/count"))
    repo.write(
        {
            "buildpilot.yaml": config(
                namespace,
                {
                    "base": {"context": "base"},
                    "app": {
                        "context": "app",
                        "contexts": {"base": "image:base"},
                        "args": {"BUST": "two"},
                    },
                },
            )
        }
    )
    repo.commit()
    assert repo.buildpilot("build", "app")[0] == 0
    assert int(run_in_image(f"{namespace}/app:latest", "cat", "/count")) == first + 1


def test_secret_value_never_appears_anywhere(repo: Repo, namespace: str) -> None:
    value = "s3cr3t-" + secrets.token_hex(16)
    repo.write(
        {
            "app/Dockerfile": (
                "FROM base\n"
                "RUN --mount=type=secret,id=token,required=true sha256sum /run/secrets/token "
                "| cut -d' ' -f1 > /token.sha256\n"
            ),
            "buildpilot.yaml": config(
                namespace,
                {
                    "base": {"context": "base"},
                    "app": {
                        "context": "app",
                        "contexts": {"base": "image:base"},
                        "secrets": [{"id": "token", "env": "HF_TOKEN"}],
                    },
                },
            ),
        }
    )
    repo.commit()
    code, output = repo.buildpilot("build", "app", env={"HF_TOKEN": value})
    assert code == 0, output
    image = f"{namespace}/app:latest"
    # the build really received the value ...
    assert (
        run_in_image(image, "cat", "/token.sha256").strip()
        == hashlib.sha256(value.encode()).hexdigest()
    )
    # ... and it is nowhere a user or an attacker would look
    places = {
        "output": output,
        "history": docker("image", "history", "--no-trunc", image),
        "inspect": docker("image", "inspect", image),
        "report": repo.buildpilot("report", "--json")[1],
    }
    for path in (repo.root / ".buildpilot").rglob("*"):
        if path.is_file():
            places[str(path)] = path.read_text(encoding="utf-8")
    leaked = [where for where, text in places.items() if value in text]
    assert leaked == []


@pytest.fixture
def ssh_agent(tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    """A real ssh-agent holding a fresh key; yields its env and the key's comment."""
    key = tmp_path / "id_ed25519"
    comment = "buildpilot-test-" + secrets.token_hex(4)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)], check=True
    )
    sock = tmp_path / "agent.sock"
    agent = subprocess.run(
        ["ssh-agent", "-a", str(sock), "-s"], check=True, capture_output=True, text=True
    )
    pid = next(
        part.split("=")[1]
        for part in agent.stdout.replace(";", "\n").split()
        if part.startswith("SSH_AGENT_PID=")
    )
    env = {"SSH_AUTH_SOCK": str(sock)}
    subprocess.run(
        ["ssh-add", str(key)], check=True, capture_output=True, env={**os.environ, **env}
    )
    yield env, comment
    subprocess.run(["kill", pid], check=False)


AGENT_PROBE = """\
import os, socket, struct
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["SSH_AUTH_SOCK"])
s.sendall(struct.pack(">IB", 1, 11))  # SSH2_AGENTC_REQUEST_IDENTITIES
size = struct.unpack(">I", s.recv(4))[0]
data = b""
while len(data) < size:
    data += s.recv(size - len(data))
count = struct.unpack(">I", data[1:5])[0]
pos, names = 5, []
for _ in range(count):
    n = struct.unpack(">I", data[pos:pos + 4])[0]; pos += 4 + n
    n = struct.unpack(">I", data[pos:pos + 4])[0]; names.append(data[pos + 4:pos + 4 + n].decode()); pos += 4 + n
open("/agent-keys", "w").write("\\n".join(names))
"""


def test_ssh_mount_forwards_a_real_agent(
    repo: Repo, namespace: str, ssh_agent: tuple[dict[str, str], str]
) -> None:
    env, comment = ssh_agent
    python_base = os.environ.get("BUILDPILOT_PYTHON_IMAGE", "local/debian:bookworm-slim")
    repo.write(
        {
            "app/probe.py": AGENT_PROBE,
            "app/Dockerfile": (
                f"FROM {python_base}\nCOPY probe.py /probe.py\n"
                "RUN --mount=type=ssh,required=true python3 /probe.py\n"
            ),
            "buildpilot.yaml": config(namespace, {"app": {"context": "app", "ssh": ["default"]}}),
        }
    )
    repo.commit()
    code, output = repo.buildpilot("build", "app", env=env)
    assert code == 0, output
    assert run_in_image(f"{namespace}/app:latest", "cat", "/agent-keys").split("\n") == [comment]


def test_ssh_default_without_agent_is_a_clear_error(repo: Repo, namespace: str) -> None:
    repo.write(
        {
            "app/Dockerfile": "FROM base\n",
            "buildpilot.yaml": config(namespace, {"app": {"context": "app", "ssh": ["default"]}}),
        }
    )
    repo.commit()
    code, output = repo.buildpilot("build", "app", env={"SSH_AUTH_SOCK": ""})
    assert code == 2
    assert (
        "images.app.ssh.0: 'default' forwards your SSH agent, but SSH_AUTH_SOCK is not set"
        in output
    )
    assert "Traceback" not in output


def test_timings_for_every_stage_of_every_image(repo: Repo, namespace: str) -> None:
    repo.write(
        {
            "multi/Dockerfile": (
                "FROM base AS deps\nRUN sleep 1 && echo deps > /deps\n"
                "FROM base AS build\nCOPY --from=deps /deps /deps\nRUN sleep 1 && cp /deps /built\n"
                "FROM base AS runtime\nCOPY --from=build /built /built\n"
            ),
            "buildpilot.yaml": config(
                namespace,
                {
                    "base": {"context": "base"},
                    "multi": {
                        "context": "multi",
                        "contexts": {"base": "image:base"},
                        "target": "runtime",
                    },
                },
            ),
        }
    )
    repo.commit()
    assert repo.buildpilot("build")[0] == 0
    run = images(repo.last_run().images)
    assert [s.name for s in run["multi"].timeline.stages] == ["deps", "build", "runtime"]
    assert [s.name for s in run["base"].timeline.stages] == ["stage-0"]
    for image in run.values():
        for stage in image.timeline.stages:
            assert stage.started is not None, (image.name, stage)
            assert stage.completed is not None, (image.name, stage)
        for step in image.timeline.steps:
            if step.stage is not None:
                assert step.started is not None, step
                assert step.completed is not None, step
    slow = [s for s in run["multi"].timeline.steps if s.instruction and "sleep 1" in s.instruction]
    assert len(slow) == 2
    assert all(s.duration >= 1.0 for s in slow)
    assert {"context", "cache-import", "export", "cache-export"} <= {
        p.kind for p in run["base"].timeline.phases
    }
    assert {"cache-import", "export", "cache-export"} <= {
        p.kind for p in run["multi"].timeline.phases
    }
    report = repo.buildpilot("report")[1]
    assert "deps" in report
    assert "runtime" in report
    assert json.loads(repo.buildpilot("report", "--json")[1])["id"] == repo.last_run().id


def test_dependents_start_on_an_unchanged_base_without_waiting(repo: Repo, namespace: str) -> None:
    service_repo(repo, namespace)
    repo.write({"base/Dockerfile": (repo.root / "base/Dockerfile").read_text() + "RUN sleep 2\n"})
    repo.commit()
    assert repo.buildpilot("build", "stt")[0] == 0
    first = images(repo.last_run().images)
    assert first["base"].completed is not None
    assert first["stt"].started is not None
    # No image of base existed yet: stt waited for base's image (not for its cache export).
    assert first["stt"].started >= last_step_completed(first["base"])

    assert repo.buildpilot("build", "stt", "--no-skip-existing")[0] == 0
    second = images(repo.last_run().images)
    assert second["base"].completed is not None
    assert second["stt"].started is not None
    assert second["stt"].started < second["base"].completed  # started on base's existing image
    assert second["base"].digest == first["base"].digest
    assert (
        f"base=docker-image://{namespace}/base:{first['base'].digest.replace(':', '-')}"
        in second["stt"].command
    )
    assert fully_cached(second["stt"])


def test_dependents_start_once_the_base_is_exported(repo: Repo, namespace: str) -> None:
    service_repo(repo, namespace)
    blob = "RUN head -c 30000000 /dev/urandom > /blob\n"  # a cache export that takes a while
    repo.write({"base/Dockerfile": (repo.root / "base/Dockerfile").read_text() + blob})
    repo.commit()
    code, output = repo.buildpilot("build", "stt", "tts", "--push")
    assert code == 0, output
    run = images(repo.last_run().images)
    assert run["base"].completed is not None
    for name in ("stt", "tts"):
        started = run[name].started
        assert started is not None
        assert last_step_completed(run["base"]) <= started < run["base"].completed
        assert f"base=docker-image://{namespace}/base@{run['base'].digest}" in run[name].command
        assert run[name].status is Status.SUCCESS
    assert "again" not in output  # the exported digest was the built one


def test_a_stale_speculated_base_rebuilds_its_dependents(repo: Repo, namespace: str) -> None:
    service_repo(repo, namespace)
    assert repo.buildpilot("build", "stt", "gateway")[0] == 0
    run = images(repo.last_run().images)
    fingerprint_tag = next(t for t in run["base"].tags if ":fp-" in t)
    docker("tag", f"{namespace}/gateway:latest", fingerprint_tag)  # the fp tag now lies
    code, output = repo.buildpilot("build", "stt", "--no-skip-existing")
    assert code == 0, output
    again = images(repo.last_run().images)
    assert "building stt again" in output
    real = f"base=docker-image://{namespace}/base:{again['base'].digest.replace(':', '-')}"
    assert real in again["stt"].command
    assert again["stt"].status is Status.SUCCESS


def test_persisted_cache_mount_survives_a_fresh_builder(repo: Repo, namespace: str) -> None:
    mount_id = "counter-" + namespace.rsplit("/", 1)[-1]  # this test's own cache mount

    def write(bust: str) -> None:
        repo.write(
            {
                "app/Dockerfile": (
                    "FROM base\nARG BUST\n"
                    f"RUN --mount=type=cache,target=/cache,id={mount_id} echo $BUST >> /cache/runs "
                    "&& wc -l < /cache/runs > /count\n"
                ),
                "buildpilot.yaml": config(
                    namespace,
                    {
                        "base": {"context": "base"},
                        "app": {
                            "context": "app",
                            "contexts": {"base": "image:base"},
                            "args": {"BUST": bust},
                            "persist_cache_mounts": True,
                        },
                    },
                ),
            }
        )
        repo.commit()

    write("one")
    assert repo.buildpilot("build", "app")[0] == 0
    assert int(run_in_image(f"{namespace}/app:latest", "cat", "/count")) == 1
    kept = repo.root / f".buildpilot/cache-mounts/{mount_id}/runs"
    assert kept.read_text() == "one\n"
    drop_build_cache()  # what a fresh CI runner has: the cache mount is gone from BuildKit
    write("two")
    code, output = repo.buildpilot("build", "app")
    assert code == 0, output
    assert int(run_in_image(f"{namespace}/app:latest", "cat", "/count")) == 2
    assert kept.read_text() == "one\ntwo\n"
    app = images(repo.last_run().images)["app"]
    kinds = {p.kind: p for p in app.timeline.phases}
    assert kinds["cache-mount-import"].duration > 0
    assert kinds["cache-mount-export"].duration > 0
    assert "injected 1 cache mount(s)" in kinds["cache-mount-import"].name
