"""Two `buildpilot build` runs in one repository at once: both finish, and what they leave
under .buildpilot/ is whole: both runs, a valid history, readable CI files."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from buildpilot.results import RunResult
from buildpilot.status import Status
from tests.faults.conftest import Repo, buildpilot, history_lines, start

pytestmark = pytest.mark.engine


def test_two_builds_at_once_both_finish_and_both_are_recorded(repo: Repo, namespace: str) -> None:
    repo.write(
        {
            "app/Dockerfile": "FROM base\nARG WHO\nRUN sleep 2 && echo $WHO > /who\n",
            "buildpilot.yaml": {
                "version": 1,
                "registry": namespace,
                "images": {
                    "base": {"context": "base"},
                    "app": {"context": "app", "contexts": {"base": "image:base"}},
                    "other": {
                        "context": "app",
                        "contexts": {"base": "image:base"},
                        "args": {"WHO": "other"},
                    },
                },
            },
        }
    )
    repo.commit()
    config = repo.root / "buildpilot.yaml"
    processes = [start(config, "build", "--jobs", "2"), start(config, "build", "app", "--push")]
    outputs = [process.communicate(timeout=180) for process in processes]
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stdout + stderr
        assert "Traceback" not in stdout + stderr
    lines = history_lines(repo.root)
    assert len(lines) == 2
    assert len({line["id"] for line in lines}) == 2
    runs = [
        RunResult.model_validate_json(
            (repo.root / ".buildpilot/runs" / f"{line['id']}.json").read_text(encoding="utf-8")
        )
        for line in lines
    ]
    assert sorted(len(run.images) for run in runs) == [2, 3]
    assert all(image.status is Status.SUCCESS for run in runs for image in run.images)
    for line in lines:
        shown = buildpilot(config, "report", str(line["id"]), "--json")
        assert shown.code == 0, shown.output
        assert json.loads(shown.stdout)["id"] == line["id"]
    suites = ET.parse(repo.root / ".buildpilot/junit.xml").getroot()  # noqa: S314 - our own file
    assert list(suites.iter("testcase"))
    for row in (repo.root / ".buildpilot/digests.env").read_text(encoding="utf-8").splitlines():
        assert row.count("=") == 1, row
