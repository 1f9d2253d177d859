from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from buildpilot.config import load_config
from buildpilot.errors import ConfigError, UnknownImageError
from buildpilot.fingerprint import Fingerprint
from buildpilot.plan import make_plan
from buildpilot.request import BuildOptions, request_data, request_from_data
from buildpilot.workflow import dry_run_lines, prepare
from tests.conftest import write_tree

CONFIG = {
    "version": 1,
    "registry": "localhost:5000/speech",
    "images": {
        "base": {"context": "images/base"},
        "stt": {
            "context": ".",
            "dockerfile": "services/stt/Dockerfile",
            "contexts": {"base": "image:base", "shared": "libs"},
            "args": {"PYTHON_VERSION": "3.11"},
            "target": "runtime",
            "ssh": ["default"],
            "secrets": [{"id": "pipcert", "src": "ca.crt"}, {"id": "token", "env": "HF_TOKEN"}],
            "tags": ["{registry}/stt:{short_sha}", "{registry}/stt:{branch}"],
            "platforms": ["linux/amd64"],
        },
        "gateway": {"context": "gateway", "cache": {"enabled": False}},
    },
}
FILES = {
    "images/base/Dockerfile": "FROM scratch\n",
    "services/stt/Dockerfile": "FROM base AS runtime\n",
    "gateway/Dockerfile": "FROM scratch\n",
    "libs/x.py": "",
    "ca.crt": "",
}
SHA = "0123456789abcdef0123456789abcdef01234567"


def project(tmp_path: Path, config: dict[str, object] = CONFIG):  # type: ignore[no-untyped-def]
    write_tree(tmp_path, {**FILES, "buildpilot.yaml": config})
    return load_config(tmp_path / "buildpilot.yaml")


def test_waves_and_closure(tmp_path: Path) -> None:
    plan = make_plan(project(tmp_path), ["stt"], BuildOptions(git_sha=SHA))
    assert [list(w) for w in plan.waves] == [["base"], ["stt"]]
    plan = make_plan(project(tmp_path), [], BuildOptions(git_sha=SHA))
    assert [list(w) for w in plan.waves] == [["base", "gateway"], ["stt"]]


def test_exact_buildx_command_of_a_dependent(tmp_path: Path) -> None:
    plan = make_plan(project(tmp_path), ["stt"], BuildOptions(branch="feat/x", git_sha=SHA))
    argv = plan.requests["stt"].argv({"base": "localhost:5000/speech/base:sha256-abc"})
    assert argv == [
        "buildx",
        "build",
        "--progress=rawjson",
        "--file",
        f"{tmp_path}/services/stt/Dockerfile",
        "--target",
        "runtime",
        "--build-arg",
        "PYTHON_VERSION=3.11",
        "--label",
        "dev.buildpilot.image=stt",
        "--build-context",
        f"shared={tmp_path}/libs",
        "--build-context",
        "base=docker-image://localhost:5000/speech/base:sha256-abc",
        "--platform",
        "linux/amd64",
        "--ssh",
        "default",
        "--secret",
        f"id=pipcert,src={tmp_path}/ca.crt",
        "--secret",
        "id=token,env=HF_TOKEN",
        "--cache-from",
        "type=registry,ref=localhost:5000/speech/cache/stt:feat-x",
        "--cache-from",
        "type=registry,ref=localhost:5000/speech/cache/stt:main",
        "--cache-to",
        "type=registry,ref=localhost:5000/speech/cache/stt:feat-x,mode=max,"
        "image-manifest=true,oci-mediatypes=true,ignore-error=true",
        "--provenance=false",
        "--tag",
        "localhost:5000/speech/stt:0123456789ab",
        "--tag",
        "localhost:5000/speech/stt:feat-x",
        "--load",
        str(tmp_path),
    ]


@pytest.mark.parametrize("output", ["load", "push"])
def test_a_request_kept_as_data_gives_the_same_command(tmp_path: Path, output: str) -> None:
    """The warm path starts a build from the reuse snapshot's copy of each request: the
    command must be the very one the full path runs, with this run's tags and fingerprint."""
    options = BuildOptions(output=output, branch="feat/x", git_sha=SHA)  # type: ignore[arg-type]
    plan = make_plan(project(tmp_path), [], options)
    fingerprint = Fingerprint(value="f" * 64)
    refs = {"base": "localhost:5000/speech/base@sha256:abc"}
    for request in plan.requests.values():
        data = request_data(request.with_fingerprint(Fingerprint(value="0" * 64)))
        assert data is not None
        again = request_from_data(json.loads(json.dumps(data)), request.tags, fingerprint)
        assert again.argv(refs) == request.with_fingerprint(fingerprint).argv(refs)


def test_push_no_cache_and_disabled_cache(tmp_path: Path) -> None:
    plan = make_plan(
        project(tmp_path),
        ["gateway"],
        BuildOptions(output="push", no_cache=True, builder="remote1"),
    )
    argv = plan.requests["gateway"].argv({})
    assert argv[3:5] == ["--builder", "remote1"]
    assert "--push" in argv
    assert "--load" not in argv
    assert "--no-cache" in argv
    assert not [a for a in argv if a.startswith("--cache")]
    assert "localhost:5000/speech/gateway:latest" in argv


def test_dry_run_lists_bases_first_with_placeholder_digest(tmp_path: Path) -> None:
    loaded = project(tmp_path)
    prepared = prepare(
        loaded,
        make_plan(loaded, ["stt"], BuildOptions(git_sha=SHA)),
        since=None,
        skip_existing=False,
    )
    commands = [shlex.split(line) for line in dry_run_lines(prepared)]
    assert [c[-1] for c in commands] == [f"{tmp_path}/images/base", str(tmp_path)]
    assert "base=docker-image://localhost:5000/speech/base@<digest of base>" in commands[1]


def test_unknown_image_on_command_line(tmp_path: Path) -> None:
    with pytest.raises(UnknownImageError):
        make_plan(project(tmp_path), ["nope"], BuildOptions())


def test_tag_needing_git_sha_outside_git(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"images.stt.tags: .* needs \{short_sha\}"):
        make_plan(project(tmp_path), ["stt"], BuildOptions(git_sha=None))
