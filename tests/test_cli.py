"""The CLI in process: messages, exit codes, and no tracebacks for user errors."""

from __future__ import annotations

import json
import os
import re
import shlex
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from buildpilot.cli import app
from buildpilot.results import ImageResult, RunResult
from buildpilot.runs import save_run
from buildpilot.status import Status
from tests.conftest import MakeRepo

CONFIG = {
    "version": 1,
    "registry": "localhost:5000/demo",
    "images": {
        "base": {"context": "base"},
        "api": {"context": "api", "contexts": {"base": "image:base"}, "args": {"MODE": "fast"}},
    },
}
FILES = {
    "base/Dockerfile": "FROM scratch\n",
    "api/Dockerfile": "FROM base\n",
    "buildpilot.yaml": CONFIG,
}


def run(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.fixture
def repo(make_repo: MakeRepo, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_repo(FILES)
    monkeypatch.chdir(root)
    return root


def test_help_lists_exit_codes() -> None:
    code, output = run(Path(), "--help")
    assert code == 0
    table = [line.strip() for line in output[output.index("Exit codes:") :].splitlines()]
    assert table[1:6] == [
        "0    success, or nothing to do",
        "1    a build failed",
        "2    usage or config error",
        "3    internal error",
        "130  interrupted",
    ]


def test_validate_ok(repo: Path) -> None:
    code, output = run(repo, "validate")
    assert code == 0
    assert f"{repo}/buildpilot.yaml: valid (2 images: base, api)" in output


def test_validate_finds_config_in_a_parent(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo / "api")
    assert run(repo, "validate")[0] == 0


def test_broken_config_exits_2_with_file_line_and_field(repo: Path) -> None:
    (repo / "buildpilot.yaml").write_text(
        "version: 1\nregistry: r\nimages:\n  api:\n    context: api\n    argz: {}\n"
    )
    code, output = run(repo, "validate")
    assert code == 2
    assert f"{repo}/buildpilot.yaml:6: images.api.argz: unknown key; did you mean 'args'?" in output


def test_every_command_takes_config(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, output = run(repo, "validate")
    assert code == 2
    assert "no buildpilot.yaml" in output
    for command in (["validate"], ["build", "--dry-run"], ["report"]):
        code, _ = run(repo, *command, "--config", str(repo / "buildpilot.yaml"))
        assert code in (0, 2)
    assert run(repo, "validate", "-c", str(repo / "buildpilot.yaml"))[0] == 0


def test_schema_is_json_schema() -> None:
    code, output = run(Path(), "schema")
    assert code == 0
    schema = json.loads(output)
    assert schema["title"] == "buildpilot.yaml"
    assert "images" in schema["required"]


def test_dry_run_prints_commands_bases_first(repo: Path) -> None:
    code, output = run(repo, "build", "api", "--dry-run")
    assert code == 0
    comments = [line for line in output.strip().splitlines() if line.startswith("#")]
    lines = [line for line in output.strip().splitlines() if not line.startswith("#")]
    assert comments[0] == "# cache: local run on branch main: its cache may be written"
    # an image whose fingerprint already has one is reused; the command builds it otherwise
    reuse = r"# reuse localhost:5000/demo/{}:fp-[0-9a-f]{{32}} if it exists, else:"
    assert [
        re.fullmatch(reuse.format(name), c) is not None
        for name, c in zip(("base", "api"), comments[1:], strict=True)
    ] == [True, True]
    assert len(lines) == 2
    base, api = (shlex.split(line) for line in lines)
    assert base[:4] == ["docker", "buildx", "build", "--progress=rawjson"]
    assert base[-1] == str(repo / "base")
    assert api[-1] == str(repo / "api")
    assert "base=docker-image://localhost:5000/demo/base@<digest of base>" in api
    assert "MODE=fast" in api
    assert "--cache-to" in api
    assert not (repo / ".buildpilot").exists()  # nothing built, nothing recorded


def test_dry_run_of_a_push_says_which_tags_are_added_after_it(repo: Path) -> None:
    code, output = run(repo, "build", "base", "--dry-run", "--push")
    assert code == 0, output
    lines = output.strip().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("docker "))
    command = shlex.split(lines[index])
    assert [command[i + 1] for i, a in enumerate(command) if a == "--tag"] == [
        "localhost:5000/demo/base:latest"
    ]
    added = r"# then tagged in the registry: localhost:5000/demo/base:fp-[0-9a-f]{32}"
    assert re.fullmatch(added, lines[index + 1]) is not None


def test_unknown_image_exits_2(repo: Path) -> None:
    code, output = run(repo, "build", "apx", "--dry-run")
    assert code == 2
    assert "unknown image 'apx'" in output
    assert "Known images: api, base" in output


def test_engine_not_answering_says_what_to_run(repo: Path) -> None:
    code, output = run(repo, "build", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert code == 2
    assert "The Docker engine does not answer" in output
    assert "ci/engine-up.sh" in output


def test_docker_cli_missing_says_what_to_run(repo: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to("/usr/bin/git")
    code, output = run(repo, "build", env={"PATH": str(bin_dir)})
    assert code == 2
    assert "The docker CLI is not on PATH" in output


def test_report_without_runs(repo: Path) -> None:
    code, output = run(repo, "report")
    assert code == 2
    assert "no run found" in output


def test_report_renders_a_recorded_run(repo: Path) -> None:
    now = datetime(2026, 11, 21, 5, 0, tzinfo=UTC)
    recorded = RunResult(
        id="20261121T050000Z-abcd",
        started=now,
        completed=now,
        config=str(repo / "buildpilot.yaml"),
        images=[
            ImageResult(name="base", status=Status.FAILED, reason="step failed: [1/1] RUN make"),
            ImageResult(
                name="api", status=Status.ABORTED, reason="not built: dependency 'base' failed"
            ),
        ],
    )
    save_run(repo, recorded)
    code, output = run(repo, "report")
    assert code == 0
    assert "not built: dependency 'base' failed" in output
    code, output = run(repo, "report", "20261121T05", "--json")
    assert code == 0
    assert json.loads(output)["images"][1]["status"] == "aborted"
    assert run(repo, "report", "nosuchrun")[0] == 2


def test_report_shows_the_later_of_two_runs_started_in_one_second(repo: Path) -> None:
    now = datetime(2026, 11, 21, 5, 0, tzinfo=UTC)
    for suffix, image in (("ffff", "first"), ("0000", "second")):  # ids sort the other way
        recorded = RunResult(
            id=f"20261121T050000Z-{suffix}",
            started=now,
            completed=now,
            config=str(repo / "buildpilot.yaml"),
            images=[ImageResult(name=image, status=Status.SUCCESS)],
        )
        path = save_run(repo, recorded)
        os.utime(path, ns=(10**18, 10**18 + len(image)))  # written in this order
    code, output = run(repo, "report", "--json")
    assert code == 0, output
    assert json.loads(output)["images"][0]["name"] == "second"


def test_main_turns_bugs_into_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from buildpilot import cli

    def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "app", broken)
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 3
    assert "internal error: RuntimeError: boom" in capsys.readouterr().err
    assert os.environ.get("PYTHON_ON_WHALES_DEBUG") is None
