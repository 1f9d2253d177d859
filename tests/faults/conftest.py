"""The faults tier: bad input, registry and engine faults, interrupts, concurrent runs and
secrets, each through buildpilot as a real process.

Every test here is one input tried (test_bad_input.py) or one fault injected (the others);
the session ends with a line counting them and how many ended as specified.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.engine.conftest import (  # fixtures shared with the engine tier
    Repo,
    _store_as_found,
    engine,
    namespace,
    repo,
)

INPUT_MODULES = {"test_bad_input.py"}


@dataclass
class _Tally:
    inputs: int = 0
    faults: int = 0
    as_specified: int = 0


_TALLY = _Tally()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    module, _, name = report.nodeid.partition("::")
    if not module.startswith("tests/faults/") or name.startswith("test_code_"):
        return  # test_code_*: a static check of the code, neither an input nor a fault
    if report.when == "setup" and report.failed:  # tried, and did not end as specified
        _count(module, name)
    elif report.when == "call":
        _count(module, name)
        _TALLY.as_specified += int(report.passed)


def _count(module: str, name: str) -> None:
    if module.rsplit("/", 1)[-1] in INPUT_MODULES or "_accepted_" in name:
        _TALLY.inputs += 1
    else:
        _TALLY.faults += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _TALLY.inputs or _TALLY.faults:
        terminalreporter.write_line(
            f"faults: {_TALLY.inputs} inputs tried, {_TALLY.faults} faults injected, "
            f"{_TALLY.as_specified} ended as specified"
        )


@dataclass(frozen=True)
class Done:
    """A finished buildpilot process."""

    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a buildpilot process: ours, without CI markers, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"CI", "GITHUB_ACTIONS", "GITLAB_CI", "GITHUB_STEP_SUMMARY"}
    }
    tree = str(Path(__file__).resolve().parents[2])  # this checkout's buildpilot, not another
    pythonpath = os.pathsep.join(filter(None, [tree, env.get("PYTHONPATH")]))
    return {**env, "NO_COLOR": "1", "COLUMNS": "200", "PYTHONPATH": pythonpath, **(extra or {})}


def buildpilot(
    config: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 180,
    cwd: Path | None = None,
) -> Done:
    """Run `python -m buildpilot ARGS --config CONFIG` to the end."""
    done = subprocess.run(
        [sys.executable, "-m", "buildpilot", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        env=cli_env(env),
        timeout=timeout,
        cwd=cwd or config.parent,
        check=False,
    )
    return Done(done.returncode, done.stdout, done.stderr)


def start(config: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `python -m buildpilot ARGS --config CONFIG`, stdout and stderr apart."""
    return subprocess.Popen(
        [sys.executable, "-m", "buildpilot", *args, "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(env),
        cwd=config.parent,
    )


def history_lines(root: Path) -> list[dict[str, object]]:
    """Every line of .buildpilot/history.jsonl, each parsed (a bad line fails the test)."""
    text = (root / ".buildpilot/history.jsonl").read_text(encoding="utf-8")
    assert text.endswith("\n"), "the history's last line is cut"
    return [json.loads(line) for line in text.splitlines()]


def assert_one_message(done: Done) -> None:
    """One `error:` message, no traceback."""
    assert "Traceback" not in done.output, done.output
    assert sum(line.startswith("error:") for line in done.stderr.splitlines()) == 1, done.output


__all__ = [
    "Done",
    "Repo",
    "_store_as_found",
    "assert_one_message",
    "buildpilot",
    "cli_env",
    "engine",
    "history_lines",
    "namespace",
    "repo",
    "start",
]
