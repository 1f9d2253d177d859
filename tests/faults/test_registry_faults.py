"""Registry faults: stopped before the run or mid-build, slow, refusing writes, failing for a
while. Cache faults are warnings and the image stands; push faults fail the image with the
registry and the cause; a release writes no tag; transient push errors are retried."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from buildpilot.results import RunResult
from buildpilot.runs import load_run
from buildpilot.status import Status
from tests.conftest import git
from tests.engine.conftest import registry_tags
from tests.faults.conftest import Repo, buildpilot, history_lines, start
from tests.faults.netfaults import FaultProxy, Registry, Rule

pytestmark = pytest.mark.engine

SLOW = "FROM scratch\nCOPY --from=base /bin /bin\nRUN sleep 3 && echo {nonce} > /slow\n"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory, engine: None) -> Iterator[Registry]:
    """A registry of this module's own, on a free loopback port."""
    registry = Registry(tmp_path_factory.mktemp("registry")).start()
    yield registry
    registry.stop()


@pytest.fixture
def proxy(upstream: Registry) -> Iterator[FaultProxy]:
    """A proxy in front of the module's registry; each test sets its faults."""
    fault_proxy = FaultProxy(upstream.host)
    yield fault_proxy
    fault_proxy.close()


def project(repo: Repo, host: str, **images: dict[str, object]) -> tuple[Path, str]:
    """A config whose registry is `host`/<a namespace of its own>; returns it and the
    namespace. Without images, one: `base`."""
    namespace = f"f{secrets.token_hex(5)}"
    repo.write(
        {
            "slow/Dockerfile": SLOW.format(nonce=secrets.token_hex(6)),
            "buildpilot.yaml": {
                "version": 1,
                "registry": f"{host}/{namespace}",
                "images": images or {"base": {"context": "base"}},
            },
        }
    )
    repo.commit()
    return repo.root / "buildpilot.yaml", namespace


def only(run: RunResult) -> dict[str, Status]:
    return {image.name: image.status for image in run.images}


def local_image_exists(ref: str) -> bool:
    done = subprocess.run(["docker", "image", "inspect", ref], capture_output=True, check=False)
    return done.returncode == 0


def test_registry_stopped_before_the_run_cache_is_a_warning(
    repo: Repo, tmp_path: Path, engine: None
) -> None:
    stopped = Registry(tmp_path / "stopped").start()
    stopped.stop()
    config, namespace = project(repo, f"localhost:{stopped.port}")
    done = buildpilot(config, "build")
    assert done.code == 0, done.output
    run = load_run(repo.root)
    assert only(run) == {"base": Status.SUCCESS}
    [warning] = run.images[0].warnings
    assert f"cache export to localhost:{stopped.port}/{namespace}/cache/base:main failed" in warning
    assert "the image itself is fine" in done.stderr
    assert local_image_exists(f"localhost:{stopped.port}/{namespace}/base:latest")


def test_registry_stopped_before_a_push_fails_the_image_naming_registry_and_cause(
    repo: Repo, tmp_path: Path, engine: None
) -> None:
    stopped = Registry(tmp_path / "stopped").start()
    stopped.stop()
    config, namespace = project(repo, f"localhost:{stopped.port}")
    done = buildpilot(config, "build", "--push")
    assert done.code == 1, done.output
    [image] = load_run(repo.root).images
    assert image.status is Status.FAILED
    assert image.reason is not None
    assert image.reason.startswith(f"push of localhost:{stopped.port}/{namespace}/base:")
    assert image.reason.endswith("connection refused")
    assert not any("retry" in w for w in image.warnings)  # a refused connection is no blip
    assert f"push of localhost:{stopped.port}/{namespace}/base" in done.stdout
    assert "Traceback" not in done.output


def test_registry_stopped_between_cache_import_and_export(
    repo: Repo, proxy: FaultProxy, engine: None
) -> None:
    config, namespace = project(
        repo,
        f"localhost:{proxy.port}",
        base={"context": "base"},
        slow={"context": "slow", "contexts": {"base": "image:base"}},
    )
    process = start(config, "build", "slow")
    deadline = time.monotonic() + 90
    imported = f"/v2/{namespace}/cache/slow/manifests/"
    while not any(imported in seen.path for seen in list(proxy.state.seen)):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the cache import never reached the registry"
        time.sleep(0.05)
    proxy.go_down()  # while `RUN sleep 3` runs
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stdout + stderr
    run = load_run(repo.root)
    assert only(run) == {"base": Status.SUCCESS, "slow": Status.SUCCESS}
    slow = run.images[1]
    assert slow.timeline.cache_export_failed
    assert slow.warnings == [
        f"slow: cache export to localhost:{proxy.port}/{namespace}/cache/slow:main failed; "
        "the image itself is fine"
    ]
    assert local_image_exists(f"localhost:{proxy.port}/{namespace}/slow:latest")


def test_slow_registry_only_slows_the_build(
    repo: Repo, proxy: FaultProxy, upstream: Registry, engine: None
) -> None:
    proxy.state.delay = 0.25  # every answer
    config, namespace = project(repo, f"localhost:{proxy.port}")
    done = buildpilot(config, "build", "--push")
    assert done.code == 0, done.output
    assert only(load_run(repo.root)) == {"base": Status.SUCCESS}
    assert len(proxy.state.seen) > 10
    assert "latest" in registry_tags(f"{upstream.host}/{namespace}/base")
    assert "main" in registry_tags(f"{upstream.host}/{namespace}/cache/base")


def refuse_writes(proxy: FaultProxy, status: int = 403) -> None:
    proxy.state.rules += [Rule("PUT", ".", status), Rule("POST", ".", status)]


def test_registry_refusing_writes_leaves_the_loaded_image_with_a_warning(
    repo: Repo, proxy: FaultProxy, engine: None
) -> None:
    refuse_writes(proxy)
    config, namespace = project(repo, f"localhost:{proxy.port}")
    done = buildpilot(config, "build")
    assert done.code == 0, done.output
    [image] = load_run(repo.root).images
    assert image.status is Status.SUCCESS
    assert image.timeline.cache_export_failed
    assert "403 Forbidden" in str(image.timeline.phases)
    assert f"cache export to localhost:{proxy.port}/{namespace}/cache/base:main failed" in (
        done.stderr
    )
    assert proxy.state.injected()


def test_registry_refusing_writes_fails_the_push_without_retrying(
    repo: Repo, proxy: FaultProxy, engine: None
) -> None:
    refuse_writes(proxy)
    config, namespace = project(repo, f"localhost:{proxy.port}")
    done = buildpilot(config, "build", "--push")
    assert done.code == 1, done.output
    [image] = load_run(repo.root).images
    assert image.status is Status.FAILED
    assert image.reason == (
        f"push of localhost:{proxy.port}/{namespace}/base:latest failed: 403 Forbidden"
    )
    assert not any("retry" in w for w in image.warnings)  # a 403 is an answer, not a blip
    assert f"push of localhost:{proxy.port}/{namespace}/base:latest failed: 403" in done.stdout


def test_release_writes_no_tag_when_the_registry_refuses(
    repo: Repo, proxy: FaultProxy, upstream: Registry, engine: None
) -> None:
    refuse_writes(proxy)
    config, namespace = project(
        repo,
        f"localhost:{proxy.port}",
        base={"context": "base"},
        app={"context": "slow", "contexts": {"base": "image:base"}},
    )
    done = buildpilot(config, "release", "--version", "1.2.3")
    assert done.code == 1, done.output
    assert "release not tagged: no release tag was written anywhere" in done.stderr
    assert "base: failed (push of" in done.stderr
    assert "403 Forbidden" in done.stderr
    for name in ("base", "app"):
        assert registry_tags(f"{upstream.host}/{namespace}/{name}") == []
    assert not (repo.root / ".buildpilot/releases").exists()
    assert only(load_run(repo.root)) == {"base": Status.FAILED, "app": Status.ABORTED}


def test_transient_push_errors_are_retried_and_reported(
    repo: Repo, proxy: FaultProxy, upstream: Registry, engine: None
) -> None:
    config, namespace = project(repo, f"localhost:{proxy.port}")
    # BuildKit tries a manifest four times itself; the fifth 503 reaches buildpilot's retry.
    proxy.state.rules.append(Rule("PUT", f"/v2/{namespace}/base/manifests/", 503, times=5))
    done = buildpilot(config, "build", "--push")
    assert done.code == 0, done.output
    assert len(proxy.state.injected()) == 5
    run = load_run(repo.root)
    [image] = run.images
    assert image.status is Status.SUCCESS
    assert image.warnings == ["base: push failed (503 Service Unavailable); retry 1/3 in 1s"]
    assert "warning: base: push failed (503 Service Unavailable); retry 1/3 in 1s" in done.stderr
    assert "latest" in registry_tags(f"{upstream.host}/{namespace}/base")
    [line] = history_lines(repo.root)
    assert line["id"] == run.id


def test_a_tag_put_after_the_push_is_retried_and_a_refused_one_fails_the_image(
    repo: Repo, proxy: FaultProxy, upstream: Registry, engine: None
) -> None:
    config, namespace = project(repo, f"localhost:{proxy.port}")
    fingerprint_tag = f"/v2/{namespace}/base/manifests/fp-"
    proxy.state.rules.append(Rule("PUT", fingerprint_tag, 503, times=1))
    done = buildpilot(config, "build", "--push")
    assert done.code == 0, done.output
    [image] = load_run(repo.root).images
    assert image.status is Status.SUCCESS
    [warning] = image.warnings
    assert warning.startswith(f"base: tagging failed (PUT http://localhost:{proxy.port}/")
    assert "HTTP 503" in warning
    assert warning.endswith("; retry 1/3 in 1s")
    assert f"warning: {warning}" in done.stderr
    tags = registry_tags(f"{upstream.host}/{namespace}/base")
    assert sorted(tags) == ["fp-" + (image.fingerprint or "")[:32], "latest"]

    proxy.state.rules.append(Rule("PUT", fingerprint_tag, 403))  # refused: not retried
    done = buildpilot(config, "build", "--push", "--no-skip-existing")
    assert done.code == 1
    [image] = load_run(repo.root).images
    assert image.status is Status.FAILED
    assert image.reason is not None
    assert image.reason.startswith(f"pushed as localhost:{proxy.port}/{namespace}/base:latest")
    assert "but tagging it fp-" in image.reason
    assert "HTTP 403" in image.reason
    assert [seen.status for seen in proxy.state.injected()] == [503, 403]
    assert "Traceback" not in done.output


def test_a_reused_image_tagged_for_a_new_commit_retries_a_transient_tag_error(
    repo: Repo, proxy: FaultProxy, upstream: Registry, engine: None
) -> None:
    """Nothing changed but the commit: the image is reused and only gets its new commit's
    tag, whose PUT the registry refuses for a while (the warm path's try, if it makes one,
    included)."""
    images = {"base": {"context": "base", "tags": ["{registry}/{name}:{short_sha}"]}}
    config, namespace = project(repo, f"localhost:{proxy.port}", **images)
    assert buildpilot(config, "build", "--push").code == 0
    repo.write({"NOTES.md": "no image reads this\n"})
    repo.commit()
    sha = git(repo.root, "rev-parse", "HEAD")[:12]
    proxy.state.rules.append(Rule("PUT", f"/v2/{namespace}/base/manifests/{sha}$", 503, times=2))
    done = buildpilot(config, "build", "--push")
    assert done.code == 0, done.output
    [image] = load_run(repo.root).images
    assert image.status is Status.SKIPPED
    assert image.reason is not None
    assert image.reason.startswith(f"reused localhost:{proxy.port}/{namespace}/base:fp-")
    assert image.warnings
    assert all(w.startswith("base: tagging failed (") for w in image.warnings)
    assert "HTTP 503" in image.warnings[0]
    assert image.warnings[0].endswith("; retry 1/3 in 1s")
    assert f"warning: {image.warnings[0]}" in done.stderr
    assert sha in registry_tags(f"{upstream.host}/{namespace}/base")
    assert [seen.status for seen in proxy.state.injected()] == [503, 503]
