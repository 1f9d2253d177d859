"""Reuse, the default of `build`: images found by their input fingerprint are not built."""

from __future__ import annotations

from buildpilot.backend import DockerBackend
from buildpilot.status import Status
from tests.engine.conftest import Repo, docker, drop_build_cache, registry_tags
from tests.engine.test_build import dockerfile_steps, fully_cached, images, service_repo


def test_find_asks_the_registry_and_the_local_store_in_one_batch(
    repo: Repo, namespace: str
) -> None:
    service_repo(repo, namespace, sleep=0)
    assert repo.buildpilot("build", "stt", "--push")[0] == 0
    run = images(repo.last_run().images)
    backend = DockerBackend()
    pushed, missing = f"{namespace}/stt:latest", f"{namespace}/stt:nope"
    found = backend.find([pushed, missing], registry=True)
    assert set(found) == {pushed}
    assert found[pushed].digest == run["stt"].digest

    assert repo.buildpilot("build", "base")[0] == 0
    local = f"{namespace}/base:latest"
    found = backend.find([local, f"{namespace}/base:nope", "nosuch/image:1"], registry=False)
    assert set(found) == {local}
    assert local in found[local].tags
    assert found[local].digest == docker("image", "inspect", local, "--format", "{{.Id}}").strip()


def test_push_run_with_nothing_changed_reuses_every_image(repo: Repo, namespace: str) -> None:
    service_repo(repo, namespace, sleep=0)
    assert repo.buildpilot("build", "--push", "--skip-existing")[0] == 0
    first = images(repo.last_run().images)
    assert {i.status for i in first.values()} == {Status.SUCCESS}

    drop_build_cache()  # a fresh runner: only the registry knows the images
    repo.write({"README.md": "docs\n"})
    repo.commit("docs")
    code, output = repo.buildpilot("build", "--push", "--skip-existing")
    assert code == 0, output
    again = images(repo.last_run().images)
    for name, image in again.items():
        assert image.status is Status.SKIPPED, (name, image.reason)
        assert (image.reason or "").startswith("reused ")
        assert image.digest == first[name].digest
        assert image.timeline.steps == []  # nothing ran
        assert "latest" in registry_tags(f"{namespace}/{name}")


def test_local_run_rebuilds_only_the_changed_service(repo: Repo, namespace: str) -> None:
    service_repo(repo, namespace, sleep=0)
    assert repo.buildpilot("build")[0] == 0
    first = images(repo.last_run().images)
    docker("image", "rm", f"{namespace}/gateway:latest")  # a tag the developer deleted

    repo.write({"svc/tts.txt": "tts, changed\n"})
    repo.commit("tts")
    code, output = repo.buildpilot("build")  # reusing is the default
    assert code == 0, output
    again = images(repo.last_run().images)
    assert again["tts"].status is Status.SUCCESS
    assert again["tts"].digest != first["tts"].digest
    assert {n for n, i in again.items() if i.status is Status.SKIPPED} == {
        "base",
        "stt",
        "gateway",
    }
    for name in ("base", "stt", "gateway"):
        assert again[name].digest == first[name].digest
    # The reused gateway got its tag back; the rebuilt tts sits on the reused base.
    tag_id = docker("image", "inspect", f"{namespace}/gateway:latest", "--format", "{{.Id}}")
    assert tag_id.strip() == first["gateway"].digest
    pinned = f"{namespace}/base:{first['base'].digest.replace(':', '-')}"
    assert f"base=docker-image://{pinned}" in again["tts"].command


def test_no_skip_existing_and_no_cache_put_every_image_through_buildkit(
    repo: Repo, namespace: str
) -> None:
    service_repo(repo, namespace, sleep=0)
    assert repo.buildpilot("build", "stt")[0] == 0
    code, output = repo.buildpilot("build", "stt", "--no-skip-existing")
    assert code == 0, output
    again = images(repo.last_run().images)
    for name in ("base", "stt"):
        assert again[name].status is Status.SUCCESS, (name, again[name].reason)
        assert fully_cached(again[name])  # BuildKit's layer cache still applies

    code, output = repo.buildpilot("build", "stt", "--no-cache")
    assert code == 0, output
    fresh = images(repo.last_run().images)
    for name in ("base", "stt"):  # built, not reused, every step run anew
        steps = dockerfile_steps(fresh[name])
        assert fresh[name].status is Status.SUCCESS, (name, fresh[name].reason)
        assert "--no-cache" in fresh[name].command
        assert steps
        assert not any(cached for _, cached in steps), (name, steps)
