"""The change predictor on small git repositories, through `buildpilot plan --json`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from buildpilot.cli import app
from tests.conftest import MakeRepo, git, write_tree

CONFIG = {
    "version": 1,
    "registry": "localhost:5000/demo",
    "images": {
        "base": {"context": "base"},
        "stt": {
            "context": ".",
            "dockerfile": "services/stt/Dockerfile",
            "contexts": {"base": "image:base"},
        },
        "tts": {
            "context": ".",
            "dockerfile": "services/tts/Dockerfile",
            "contexts": {"base": "image:base"},
        },
        "gateway": {"context": "gateway", "target": "runtime"},
    },
}
FILES: dict[str, object] = {
    "buildpilot.yaml": CONFIG,
    "README.md": "docs\n",
    "docs/guide.md": "guide\n",
    "base/Dockerfile": "FROM scratch\nCOPY rootfs/ /\nRUN true\n",
    "base/rootfs/etc/os": "v1\n",
    "services/stt/Dockerfile": (
        "FROM base\n"
        "COPY services/stt/requirements.txt /tmp/\n"
        "RUN pip install -r /tmp/requirements.txt\n"
        "COPY libs/common /app/common\n"
        "COPY services/stt/src /app/stt\n"
    ),
    "services/stt/requirements.txt": "six\n",
    "services/stt/src/main.py": "print('stt')\n",
    "services/stt/Dockerfile.dockerignore": "**/*.log\n**/__pycache__\n",
    "services/tts/Dockerfile": "FROM base\nCOPY services/tts/src /app/tts\n",
    "services/tts/src/main.py": "print('tts')\n",
    "libs/common/util.py": "x = 1\n",
    "gateway/Dockerfile": (
        "FROM scratch AS build\nCOPY src /src\nRUN build\n"
        "FROM scratch AS docs\nCOPY docs /docs\n"
        "FROM scratch AS runtime\nCOPY --from=build /out /app\n"
    ),
    "gateway/src/app.py": "app\n",
    "gateway/docs/index.md": "gateway docs\n",
    ".dockerignore": "**/*.tmp\n",
}


def plan(root: Path, since: str = "HEAD") -> dict[str, Any]:
    result = CliRunner().invoke(
        app, ["plan", "--since", since, "--json", "--config", str(root / "buildpilot.yaml")]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def affected(data: dict[str, Any]) -> set[str]:
    return {image["name"] for image in data["images"] if image["affected"]}


def image(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(i for i in data["images"] if i["name"] == name)


def first_miss(data: dict[str, Any], name: str) -> dict[str, tuple[int, str]]:
    return {
        stage: (s["line"], s["instruction"])
        for stage, s in image(data, name)["first_misses"].items()
    }


@pytest.fixture
def repo(make_repo: MakeRepo) -> Path:
    return make_repo(FILES)


def commit(root: Path) -> None:
    git(root, "add", "-A")
    git(root, "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qm", "change")


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"README.md": "new docs\n"}, set()),
        ({"docs/guide.md": "x\n"}, set()),
        ({"services/stt/src/main.py": "print(2)\n"}, {"stt"}),
        ({"libs/common/util.py": "x = 2\n"}, {"stt"}),
        ({"base/rootfs/etc/os": "v2\n"}, {"base", "stt", "tts"}),
        ({"services/stt/src/debug.log": "noise\n"}, set()),  # ignored by stt's own ignore file
        (
            {"services/tts/src/debug.log": "noise\n"},
            {"tts"},
        ),  # tts reads .dockerignore: not ignored
        # stt's own ignore file replaces the root .dockerignore, which alone lists *.tmp
        ({"services/stt/src/x.tmp": "t\n"}, {"stt"}),
        ({"services/tts/src/x.tmp": "t\n"}, set()),
        (
            {"gateway/docs/index.md": "more\n"},
            set(),
        ),  # only a stage the target does not build reads it
        ({"gateway/src/app.py": "app2\n"}, {"gateway"}),
        ({"services/stt/Dockerfile": str(FILES["services/stt/Dockerfile"]) + "# comment\n"}, set()),
    ],
)
def test_affected_images(repo: Path, files: dict[str, object], expected: set[str]) -> None:
    write_tree(repo, files)
    assert affected(plan(repo)) == expected


def test_first_miss_and_reason_chain(repo: Path) -> None:
    write_tree(repo, {"services/stt/requirements.txt": "six\nidna\n"})
    data = plan(repo)
    assert first_miss(data, "stt") == {"stage-0": (2, "COPY services/stt/requirements.txt /tmp/")}
    [reason] = image(data, "stt")["reasons"]
    assert reason == {
        "file": "services/stt/requirements.txt",
        "dockerfile": "services/stt/Dockerfile",
        "line": 2,
        "instruction": "COPY services/stt/requirements.txt /tmp/",
        "stage": "stage-0",
        "detail": "changed",
    }
    steps = [(s["line"], s["cached"]) for s in image(data, "stt")["steps"]]
    assert steps == [(2, False), (3, False), (4, False), (5, False)]


def test_base_change_reaches_dependents_from_their_from(repo: Path) -> None:
    write_tree(repo, {"base/rootfs/etc/os": "v2\n"})
    data = plan(repo)
    [reason] = image(data, "tts")["reasons"]
    assert reason["file"] == "base/rootfs/etc/os"
    assert reason["line"] == 1
    assert reason["instruction"] == "FROM base"
    assert reason["detail"] == "image base rebuilt"
    assert data["order"] == [["base"], ["stt", "tts"]]


def test_dockerfile_edit_misses_from_the_edited_line(repo: Path) -> None:
    text = str(FILES["services/stt/Dockerfile"]).replace(
        "COPY libs/common /app/common", "COPY libs/common /opt/common"
    )
    write_tree(repo, {"services/stt/Dockerfile": text})
    data = plan(repo)
    assert first_miss(data, "stt") == {"stage-0": (4, "COPY libs/common /opt/common")}
    assert image(data, "stt")["reasons"][0]["detail"] == "instruction changed"


def test_config_args_change_affects_that_image(repo: Path) -> None:
    config = json.loads(json.dumps(CONFIG))
    config["images"]["tts"]["args"] = {"MODEL": "large"}
    write_tree(repo, {"services/tts/Dockerfile": "FROM base\nARG MODEL=small\nRUN echo $MODEL\n"})
    commit(repo)
    write_tree(repo, {"buildpilot.yaml": config})
    data = plan(repo)
    assert affected(data) == {"tts"}
    assert first_miss(data, "tts") == {"stage-0": (3, "RUN echo $MODEL")}


def test_config_context_change_rebuilds_the_image(repo: Path) -> None:
    config = json.loads(json.dumps(CONFIG))
    config["images"]["gateway"]["platforms"] = ["linux/amd64"]
    write_tree(repo, {"buildpilot.yaml": config})
    data = plan(repo)
    assert affected(data) == {"gateway"}
    assert (
        image(data, "gateway")["reasons"][0]["detail"] == "config changed: images.gateway.platforms"
    )


def test_deleted_renamed_and_untracked_files(repo: Path) -> None:
    (repo / "libs/common/util.py").rename(repo / "libs/common/helpers.py")
    assert affected(plan(repo)) == {"stt"}
    git(repo, "checkout", "--", ".")
    (repo / "libs/common/helpers.py").unlink()
    (repo / "services/tts/src/new.py").write_text("new\n")
    assert affected(plan(repo)) == {"tts"}


def test_committed_changes_since_a_ref(repo: Path) -> None:
    git(repo, "checkout", "-qb", "feature")
    write_tree(repo, {"services/tts/src/main.py": "print('v2')\n"})
    commit(repo)
    assert affected(plan(repo, "main")) == {"tts"}
    assert plan(repo, "main")["changed_files"] == ["services/tts/src/main.py"]


def test_editing_the_ignore_file_to_include_an_existing_file(repo: Path) -> None:
    write_tree(repo, {"services/stt/src/keep.log": "needed\n"})
    commit(repo)
    write_tree(repo, {"services/stt/Dockerfile.dockerignore": "**/__pycache__\n"})
    data = plan(repo)
    assert "stt" in affected(data)
    assert any(
        r["file"] == "services/stt/src/keep.log" and r["detail"] == "now included"
        for r in image(data, "stt")["reasons"]
    )


def test_add_url_cannot_be_predicted(repo: Path) -> None:
    write_tree(
        repo, {"services/tts/Dockerfile": "FROM base\nADD https://example.com/model.bin /m\n"}
    )
    commit(repo)
    write_tree(repo, {"README.md": "only docs\n"})
    data = plan(repo)
    assert affected(data) == {"tts"}
    assert image(data, "tts")["reasons"][0]["detail"].startswith("cannot predict")


def test_unknown_ref_says_how_to_fetch(repo: Path) -> None:
    result = CliRunner().invoke(
        app, ["plan", "--since", "origin/nope", "--config", str(repo / "buildpilot.yaml")]
    )
    assert result.exit_code == 2
    assert "has no commit origin/nope" in result.output
    assert "git fetch" in result.output


def test_shallow_clone_missing_ref(repo: Path, tmp_path: Path) -> None:
    write_tree(repo, {"README.md": "2\n"})
    commit(repo)
    write_tree(repo, {"README.md": "3\n"})
    commit(repo)
    clone = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth=1", f"file://{repo}", str(clone)], check=True)
    first = git(repo, "rev-list", "--max-parents=0", "HEAD")
    result = CliRunner().invoke(
        app, ["plan", "--since", first, "--config", str(clone / "buildpilot.yaml")]
    )
    assert result.exit_code == 2
    assert "this shallow clone has no commit" in result.output
    assert "--deepen" in result.output


def test_explain_prints_the_chain(repo: Path) -> None:
    write_tree(repo, {"libs/common/util.py": "x = 3\n"})
    result = CliRunner().invoke(
        app, ["explain", "stt", "--since", "HEAD", "--config", str(repo / "buildpilot.yaml")]
    )
    assert result.exit_code == 0, result.output
    assert (
        "libs/common/util.py -> services/stt/Dockerfile:4 COPY libs/common /app/common [stage-0]: changed"
        in " ".join(result.output.split())
    )
    assert "fingerprint: " in result.output


def test_fingerprint_follows_content_not_history(repo: Path) -> None:
    def prints() -> dict[str, str]:
        result = CliRunner().invoke(
            app, ["plan", "--json", "--fingerprints", "--config", str(repo / "buildpilot.yaml")]
        )
        return {i["name"]: i["fingerprint"] for i in json.loads(result.output)["images"]}

    before = prints()
    write_tree(repo, {"README.md": "docs only\n"})
    commit(repo)
    assert prints() == before  # a new commit that no image reads
    write_tree(repo, {"libs/common/util.py": "x = 9\n"})  # dirty, not committed
    after = prints()
    assert after["stt"] != before["stt"]
    assert after["tts"] == before["tts"]
    write_tree(repo, {"base/rootfs/etc/os": "v9\n"})
    assert prints()["tts"] != before["tts"]  # a base's fingerprint reaches its dependents
    assert yaml.safe_load((repo / "buildpilot.yaml").read_text())["version"] == 1


def test_a_config_only_change_rebuilds_the_image_from_cache(repo: Path) -> None:
    text = str(FILES["services/tts/Dockerfile"]) + 'CMD ["python", "-m", "tts"]\n'
    write_tree(repo, {"services/tts/Dockerfile": text})
    commit(repo)
    write_tree(repo, {"services/tts/Dockerfile": text.replace('"tts"]', '"tts", "--fast"]')})
    data = plan(repo)
    assert affected(data) == {"tts"}
    tts = image(data, "tts")
    assert all(step["cached"] for step in tts["steps"])  # BuildKit reruns nothing
    assert tts["reasons"][0]["detail"] == "image config changed (every step cached)"
    assert tts["reasons"][0]["line"] == 3


def test_a_mirror_change_affects_the_images_that_declare_its_arg(repo: Path) -> None:
    config = json.loads(json.dumps(CONFIG))
    config["mirrors"] = {"pip_index_url": "https://mirror-a.example/simple"}
    write_tree(
        repo,
        {
            "buildpilot.yaml": config,
            "services/tts/Dockerfile": "FROM base\nARG PIP_INDEX_URL\nRUN pip install -i $PIP_INDEX_URL x\n",
        },
    )
    commit(repo)
    config["mirrors"] = {"pip_index_url": "https://mirror-b.example/simple"}
    write_tree(repo, {"buildpilot.yaml": config})
    data = plan(repo)
    assert affected(data) == {"tts"}  # stt declares no PIP_INDEX_URL
    assert first_miss(data, "tts") == {"stage-0": (3, "RUN pip install -i $PIP_INDEX_URL x")}


def test_deleting_an_ignore_file_includes_what_it_left_out(repo: Path) -> None:
    write_tree(repo, {"services/tts/src/cache.tmp": "t\n"})
    commit(repo)
    (repo / ".dockerignore").unlink()
    data = plan(repo)
    assert affected(data) == {"tts"}  # stt has an ignore file of its own
    assert [(r["file"], r["detail"]) for r in image(data, "tts")["reasons"]] == [
        ("services/tts/src/cache.tmp", "now included")
    ]


def test_an_ignore_file_of_its_own_with_the_same_rules_changes_nothing(repo: Path) -> None:
    write_tree(repo, {"services/tts/src/cache.tmp": "t\n"})
    commit(repo)
    write_tree(repo, {"services/tts/Dockerfile.dockerignore": "**/*.tmp\n"})
    assert affected(plan(repo)) == set()
    write_tree(repo, {"services/tts/Dockerfile.dockerignore": "**/*.log\n"})
    assert affected(plan(repo)) == {"tts"}
