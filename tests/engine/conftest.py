"""The engine tier: real Docker engine with buildx and the loopback registry.

Under ci/test.sh (BUILDPILOT_REQUIRE_ENGINE) or in CI (`CI`) a missing engine fails these
tests; elsewhere they are skipped with the command that starts one.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from buildpilot.cli import app
from buildpilot.results import RunResult
from buildpilot.runs import load_run
from tests.conftest import BUSYBOX, TINY_BASE, git, write_tree

REGISTRY = os.environ.get("BUILDPILOT_TEST_REGISTRY", "localhost:5000")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.engine)


def _engine_problem() -> str | None:
    if shutil.which("docker") is None:
        return "docker CLI not found"
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        return "the Docker engine does not answer"
    try:
        urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=5)
    except OSError as exc:
        return f"no registry on {REGISTRY}: {exc}"
    return None


@pytest.fixture(scope="session")
def engine() -> Iterator[None]:
    """The engine and the registry, checked; the local image store is left as it was found
    (module fixtures' images go at the end, each test's own as it ends: `_store_as_found`)."""
    problem = _engine_problem()
    if problem is not None:
        message = f"engine tier: {problem}; start it with `bash ci/engine-up.sh`"
        if os.environ.get("CI") or os.environ.get("BUILDPILOT_REQUIRE_ENGINE"):
            pytest.fail(message)
        pytest.skip(message)
    with _added_images_removed():
        yield


@pytest.fixture(autouse=True)
def _store_as_found(request: pytest.FixtureRequest) -> Iterator[None]:
    """Remove the images a test using the engine added to the local store. Left there, they
    pile up run after run on a developer's engine, and every image lookup walks the store
    (the prediction corpus took twice as long on a store of 1,900 images)."""
    if "engine" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("engine")  # set up first, so that its snapshot predates the test
    with _added_images_removed():
        yield


@contextmanager
def _added_images_removed() -> Iterator[None]:
    before = local_images()
    yield
    remove_images(local_images() - before)


def local_images() -> set[str]:
    """The references in the local image store: `repo:tag`, `repo@digest` for an image
    kept by digest only, the image ID for an untagged one."""
    listing = docker("image", "ls", "--no-trunc", "--format", "{{json .}}")
    refs = set()
    for line in listing.splitlines():
        image = json.loads(line)
        repo, tag, digest = image["Repository"], image["Tag"], image["Digest"]
        if repo == "<none>":
            refs.add(image["ID"])
        elif tag != "<none>":
            refs.add(f"{repo}:{tag}")
        else:
            refs.add(f"{repo}@{digest}" if digest != "<none>" else image["ID"])
    return refs


def remove_images(refs: Iterable[str]) -> None:
    """Untag `refs`, deleting images left with no name; one that a container still uses
    stays."""
    if refs := sorted(refs):
        subprocess.run(["docker", "image", "rm", *refs], capture_output=True, check=False)


@pytest.fixture
def namespace(engine: None) -> str:
    """A registry namespace of this test's own: images and caches never collide."""
    return f"{REGISTRY}/t{secrets.token_hex(4)}"


class Repo:
    """A fixture repository with a buildpilot.yaml, driven through the CLI in process."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, files: Mapping[str, object]) -> None:
        write_tree(self.root, files)

    def commit(self, message: str = "change") -> None:
        git(self.root, "add", "-A")
        git(
            self.root,
            "-c",
            "user.email=t@example.com",
            "-c",
            "user.name=t",
            "commit",
            "-qm",
            message,
        )

    def buildpilot(self, *args: str, env: Mapping[str, str] | None = None) -> tuple[int, str]:
        result = CliRunner().invoke(
            app,
            [*args, "--config", str(self.root / "buildpilot.yaml")],
            env=dict(env or {}),
            catch_exceptions=False,
        )
        return result.exit_code, result.output

    def last_run(self) -> RunResult:
        return load_run(self.root)


@pytest.fixture
def repo(tmp_path: Path, namespace: str) -> Repo:
    """An empty git repository holding busybox, for tiny `FROM scratch` bases."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    # A layer of its own, so that no step is cached from another test's build.
    nonce = f"RUN echo {secrets.token_hex(8)} > /nonce\n"
    write_tree(root, {"base/busybox": BUSYBOX.read_bytes(), "base/Dockerfile": TINY_BASE + nonce})
    (root / "base/busybox").chmod(0o755)
    return Repo(root)


def config(namespace: str, images: Mapping[str, object], **top: object) -> dict[str, object]:
    """A buildpilot.yaml as a dict."""
    return {"version": 1, "registry": namespace, **top, "images": dict(images)}


def docker(*args: str) -> str:
    """Run the docker CLI and return stdout (test helper)."""
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


def registry_tags(repository: str) -> list[str]:
    """The tags of `host/name` in the loopback registry, over its HTTP API."""
    host, _, name = repository.partition("/")
    try:
        with urllib.request.urlopen(f"http://{host}/v2/{name}/tags/list", timeout=10) as resp:
            return sorted(json.load(resp).get("tags") or [])
    except OSError:
        return []


def drop_build_cache() -> None:
    """What a fresh CI runner has: no local BuildKit cache (registry caches stay)."""
    docker("buildx", "prune", "--all", "--force")


def run_in_image(image: str, *command: str) -> str:
    """Output of `command` run in `image`."""
    return docker("run", "--rm", image, *command)
