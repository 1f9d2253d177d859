"""The warm `plan` path: a snapshot written by a full plan, used by the next one only while
it holds, and output byte for byte the full path's."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from buildpilot import plancache, planinputs, warmplan
from buildpilot.cli import app
from tests.conftest import MakeRepo, git, write_tree
from tests.test_changes import CONFIG, FILES

TREE = Path(__file__).resolve().parents[1]


def commit(root: Path, message: str = "change") -> None:
    git(root, "add", "-A")
    git(root, "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qm", message)


def full(*args: str) -> str:
    """`buildpilot plan ARGS` through the full CLI (which writes the snapshot)."""
    result = CliRunner().invoke(app, ["plan", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def warm(*args: str) -> str | None:
    """`buildpilot plan ARGS` through the warm path; None where it hands over."""
    with contextlib.redirect_stdout(io.StringIO()):  # no terminal: the plain table
        return warmplan.run(list(args))


def snapshot_file(root: Path) -> Path:
    return plancache.location((root / "buildpilot.yaml").resolve())


@pytest.fixture(autouse=True)
def plain_output(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS", "CI"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def trusting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written a moment ago are trusted: a test cannot wait out the racy window."""
    monkeypatch.setattr(plancache, "RACY_NS", 0)


@pytest.fixture
def repo(make_repo: MakeRepo, monkeypatch: pytest.MonkeyPatch, trusting: None) -> Path:
    root = make_repo(FILES)
    monkeypatch.chdir(root)
    full("--since", "HEAD")
    assert snapshot_file(root).is_file()
    return root


def same_both_ways(*args: str) -> str:
    """The warm output of ARGS, checked equal to the full path's, table and JSON."""
    outputs = []
    for extra in ((), ("--json",)):
        found = warm(*args, *extra)
        assert found is not None, "the warm path handed over"
        assert found == full(*args, *extra)
        outputs.append(found)
    return outputs[0]


SCENARIOS: dict[str, dict[str, object]] = {
    "docs only": {"README.md": "new docs\n", "docs/guide.md": "x\n"},
    "a service's source": {"services/stt/src/main.py": "print(2)\n"},
    "a shared library": {"libs/common/util.py": "x = 2\n"},
    "the base": {"base/rootfs/etc/os": "v2\n"},
    "an ignored log": {"services/stt/src/debug.log": "noise\n"},
    "a log no ignore file drops": {"services/tts/src/debug.log": "noise\n"},
    "ignored by one ignore file only": {"services/stt/src/x.tmp": "t\n"},
    "a stage the target does not build": {"gateway/docs/index.md": "more\n"},
    "a stage the target builds on": {"gateway/src/app.py": "app2\n"},
    "many at once": {
        "services/tts/src/new.py": "new\n",
        "base/rootfs/etc/motd": "hi\n",
        "gateway/src/app.py": "app3\n",
    },
}


@pytest.mark.parametrize("files", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_warm_output_is_the_full_output(repo: Path, files: dict[str, object]) -> None:
    write_tree(repo, files)
    same_both_ways("--since", "HEAD")
    commit(repo)
    same_both_ways("--since", "HEAD~1")
    same_both_ways("stt", "--since", "HEAD~1", "-c", str(repo / "buildpilot.yaml"))


def test_deleted_renamed_and_untracked(repo: Path) -> None:
    (repo / "libs/common/util.py").rename(repo / "libs/common/helpers.py")
    (repo / "services/tts/src/main.py").unlink()
    (repo / "services/stt/src/extra.py").write_text("untracked\n")
    same_both_ways("--since", "HEAD")
    data = json.loads(full("--since", "HEAD", "--json"))
    assert {"libs/common/util.py", "libs/common/helpers.py"} <= set(data["changed_files"])


def test_a_branch_since_main(repo: Path) -> None:
    git(repo, "checkout", "-qb", "feature")
    write_tree(repo, {"services/tts/src/main.py": "print('v2')\n"})
    commit(repo)
    text = same_both_ways("--since", "main")
    assert "build order: [base] -> [tts]" not in text  # base is reused, not built
    assert "build order: [tts]" in text


def test_named_contexts_urls_and_stage_copies(
    make_repo: MakeRepo, monkeypatch: pytest.MonkeyPatch, trusting: None
) -> None:
    config = json.loads(json.dumps(CONFIG))
    config["images"]["tools"] = {
        "context": "tools",
        "contexts": {"assets": "shared/assets", "base": "image:base", "web": "https://x/y.git"},
    }
    files = {
        **FILES,
        "buildpilot.yaml": config,
        "tools/Dockerfile": (
            "FROM scratch AS fetch\nADD https://example.com/a.bin /a\n"
            "FROM base AS build\nCOPY --from=assets icons /icons\nCOPY --from=web . /web\n"
            "COPY --from=fetch /a /a\nRUN make\n"
            'FROM build\nCMD ["run"]\n'
        ),
        "shared/assets/icons/a.svg": "<svg/>\n",
        "shared/assets/.dockerignore": "*.tmp\n",
    }
    root = make_repo(files)
    monkeypatch.chdir(root)
    full("--since", "HEAD")
    for change in (
        {"README.md": "docs\n"},
        {"shared/assets/icons/b.svg": "<svg/>\n"},
        {"shared/assets/icons/c.tmp": "ignored\n"},
        {"base/rootfs/etc/os": "v3\n"},
    ):
        write_tree(root, change)
        same_both_ways("--since", "HEAD")


def gateway_builds_its_docs() -> dict[str, object]:
    config = json.loads(json.dumps(CONFIG))
    config["images"]["gateway"]["target"] = "docs"
    return {"buildpilot.yaml": config}


EDITS = {
    "a Dockerfile": (
        {
            "services/tts/Dockerfile": "FROM base\nCOPY services/tts/src /app/tts\nCOPY README.md /\n"
        },
        {"README.md": "read now\n"},
        ("tts", "README.md"),
    ),
    "an ignore file": (
        {"services/stt/Dockerfile.dockerignore": "**/__pycache__\n"},
        {"services/stt/src/debug.log": "read now\n"},
        ("stt", "services/stt/src/debug.log"),
    ),
    "the config": (
        gateway_builds_its_docs(),
        {"gateway/docs/index.md": "read now\n"},
        ("gateway", "gateway/docs/index.md"),
    ),
}


@pytest.mark.parametrize(("edit", "change", "expected"), EDITS.values(), ids=EDITS.keys())
def test_an_edited_input_invalidates_the_snapshot(
    repo: Path, edit: dict[str, object], change: dict[str, object], expected: tuple[str, str]
) -> None:
    write_tree(repo, edit)
    commit(repo, "edit an input")  # not among the files changed since HEAD: the snapshot is
    write_tree(repo, change)  # all that knows, and what it says no longer holds
    assert warm("--since", "HEAD", "--json") is None
    data = json.loads(full("--since", "HEAD", "--json"))
    name, file = expected
    [image] = [i for i in data["images"] if i["name"] == name]
    assert image["affected"]
    assert image["reasons"][0]["file"] == file
    same_both_ways("--since", "HEAD")  # written again, and used


def test_a_change_to_a_guarded_file_takes_the_full_path(repo: Path) -> None:
    write_tree(repo, {"services/tts/Dockerfile": "FROM base\nCOPY services/tts/src /srv\n"})
    full("--since", "HEAD")  # the snapshot now holds this Dockerfile...
    assert warm("--since", "HEAD") is None  # ...but the prediction needs it as it was at HEAD
    commit(repo)
    assert warm("--since", "HEAD") is not None


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[: len(raw) // 2],
        lambda raw: raw.replace(b'"tts"', b'"ttx"'),
        lambda raw: b"not a snapshot\n{}",
        lambda raw: b"",
    ],
    ids=["cut short", "edited", "foreign", "empty"],
)
def test_a_corrupt_snapshot_is_ignored_and_written_again(repo: Path, damage: Any) -> None:
    path = snapshot_file(repo)
    path.write_bytes(damage(path.read_bytes()))
    assert warm("--since", "HEAD") is None
    expected = full("--since", "HEAD")
    assert warm("--since", "HEAD") == expected


def test_a_snapshot_is_not_written_from_files_just_changed(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot_file(repo).unlink()
    monkeypatch.setattr(plancache, "RACY_NS", 10**12)  # every file is "just changed"
    full("--since", "HEAD")
    assert not snapshot_file(repo).exists()


def test_the_cache_stays_out_of_git(repo: Path) -> None:
    assert git(repo, "status", "--porcelain") == ""


@pytest.mark.parametrize(
    "args",
    [
        ("--since", "HEAD", "--fingerprints"),
        ("--since", "HEAD", "--help"),
        ("--json",),
        ("--since", "HEAD", "--since", "HEAD"),
        ("--since", "--json"),
        ("--since", "nosuchref"),
        ("nosuchimage", "--since", "HEAD"),
        ("--since", "HEAD", "-c", "missing.yaml"),
    ],
)
def test_anything_unsure_is_handed_over(repo: Path, args: tuple[str, ...]) -> None:
    assert warm(*args) is None


def test_a_terminal_or_forced_colour_is_handed_over(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert warm("--since", "HEAD") is None
    assert warm("--since", "HEAD", "--json") is not None


def test_columns_set_the_width(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "72")
    assert max(len(line) for line in same_both_ways("--since", "HEAD").splitlines()) <= 72


def run_cli(
    root: Path, *args: str, python: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"CI", "FORCE_COLOR", "COLUMNS"}}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TREE), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, *python, "-m", "buildpilot", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_console_entry_takes_the_warm_path_and_reports_config_errors(repo: Path) -> None:
    warm_output = run_cli(repo, "plan", "--since", "HEAD", python=("-X", "importtime"))
    assert warm_output.returncode == 0
    assert warm_output.stdout == full("--since", "HEAD")
    imported = {line.rsplit("|", 1)[-1].strip() for line in warm_output.stderr.splitlines()}
    assert "buildpilot.warmplan" in imported
    assert not {"typer", "pydantic", "rich", "buildpilot.cli"} & imported
    (repo / "buildpilot.yaml").write_text("version: 1\nregistry: r\nimages:\n  a: {contxt: a}\n")
    broken = run_cli(repo, "plan", "--since", "HEAD")
    assert broken.returncode == 2
    assert "buildpilot.yaml:4: images.a.contxt: unknown key; did you mean 'context'?" in (
        broken.stderr
    )
    assert "Traceback" not in broken.stderr


def test_random_changes_to_a_generated_monorepo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trusting: None
) -> None:
    from bench.generate import SIZES, generate

    root = generate(SIZES["20"], tmp_path / "monorepo")
    monkeypatch.chdir(root)
    full("--since", "HEAD")
    rng = random.Random(20)  # noqa: S311 - reproducible changes, no secret
    guarded = {".dockerignore", "buildpilot.yaml"}
    tracked = [f for f in git(root, "ls-files").splitlines() if f.endswith((".sh", ".md", ".txt"))]
    images = json.loads((root / "bench.json").read_text())["images"]
    commits = 0
    for round_ in range(16):
        for path in rng.sample(tracked, rng.randint(1, 4)):
            target = root / path
            action = rng.choice(["edit", "edit", "delete", "add"])
            if action == "edit" and target.exists():
                target.write_text(target.read_text() + f"# {round_}\n")
            elif action == "delete" and target.exists():
                target.unlink()
            else:
                (target.parent / f"new{round_}.sh").write_text("new\n")
        if rng.random() < 0.4:
            commit(root, f"round {round_}")
            commits += 1
        since = rng.choice(["HEAD", *([f"HEAD~{rng.randint(1, commits)}"] if commits else [])])
        selected = rng.sample(images, rng.choice([0, 0, 1, 3]))
        same_both_ways(*selected, "--since", since)
        assert not guarded & set(git(root, "status", "--porcelain").split())


def test_a_context_read_whole_needs_every_changed_file(
    make_repo: MakeRepo, monkeypatch: pytest.MonkeyPatch, trusting: None
) -> None:
    config = {"version": 1, "registry": "localhost:5000/demo", "images": {"app": {}}}
    files = {"buildpilot.yaml": config, "Dockerfile": "FROM scratch\nCOPY . /app\n"}
    root = make_repo({**files, "docs/a.md": "a\n", ".dockerignore": ".buildpilot/\n"})
    monkeypatch.chdir(root)
    full("--since", "HEAD")
    snapshot = plancache.load((root / "buildpilot.yaml").resolve())
    assert snapshot is not None
    assert snapshot["reads"] is None
    write_tree(root, {"docs/a.md": "b\n"})
    assert "docs/a.md -> Dockerfile:2 COPY . /app" in same_both_ways("--since", "HEAD")


@pytest.mark.parametrize(
    "ignore", ["", "*.md\n", ".buildpilot/cache/*\n"], ids=["none", "other files", "files only"]
)
def test_no_snapshot_where_a_build_would_read_it(
    make_repo: MakeRepo, monkeypatch: pytest.MonkeyPatch, trusting: None, ignore: str
) -> None:
    config = {"version": 1, "registry": "localhost:5000/demo", "images": {"app": {}}}
    files = {"buildpilot.yaml": config, "Dockerfile": "FROM scratch\nCOPY . /app\n"}
    root = make_repo({**files, ".dockerignore": ignore})
    monkeypatch.chdir(root)
    full("--since", "HEAD")
    assert not snapshot_file(root).exists()  # it would be part of the next build's context
    assert warm("--since", "HEAD") is None


def test_the_paths_a_table_needs_from_git_are_few_and_cover_everything() -> None:
    paths = {f"services/s{i:03d}/src" for i in range(100)} | {"libs/a/b", "buildpilot.yaml"}
    assert planinputs._pathspecs(paths) == ["buildpilot.yaml", "libs", "services"]
    assert planinputs._pathspecs({"a/b", "a/b/c", "a-b", "a/bc"}) == ["a/b", "a/bc", "a-b"]
    assert planinputs._pathspecs(None) is None


def test_no_snapshot_where_the_two_predictors_disagree(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from buildpilot import warmpredict

    real = warmpredict.predict

    def off_by_one(*args: Any, **kwargs: Any) -> Any:
        found = real(*args, **kwargs)
        return found.__class__(**{**vars(found), "base": "elsewhere"})

    monkeypatch.setattr(warmpredict, "predict", off_by_one)
    write_tree(repo, {"README.md": "x\n"})
    full("--since", "HEAD")
    assert not snapshot_file(repo).exists()
    assert warm("--since", "HEAD") is None


def test_a_config_below_the_top_level(
    make_repo: MakeRepo, monkeypatch: pytest.MonkeyPatch, trusting: None
) -> None:
    root = make_repo({f"deploy/{path}": content for path, content in FILES.items()})
    monkeypatch.chdir(root / "deploy" / "services")  # the config is found in a parent
    full("--since", "HEAD")
    write_tree(root, {"deploy/libs/common/util.py": "x = 5\n", "README.md": "top\n"})
    assert "deploy/libs/common/util.py" in same_both_ways("--since", "HEAD")
