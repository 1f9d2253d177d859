"""CI runs simulated by their environment variables, against the real engine and registry."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from buildpilot.status import Status
from tests.engine.conftest import Repo, config, registry_tags

GITHUB = {"GITHUB_ACTIONS": "true", "GITHUB_SHA": "0" * 40}


def two_images(repo: Repo, namespace: str, **top: object) -> None:
    repo.write(
        {
            "svc/Dockerfile": "FROM base\nCOPY a.txt /a\n",
            "svc/a.txt": "a\n",
            "buildpilot.yaml": config(
                namespace,
                {
                    "base": {"context": "base"},
                    "svc": {"context": "svc", "contexts": {"base": "image:base"}},
                },
                **top,
            ),
        }
    )
    repo.commit()


def event_file(tmp_path: Path, payload: dict[str, object]) -> str:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(payload))
    return str(path)


def test_github_push_writes_its_branch_and_a_pull_request_only_reads(
    repo: Repo, namespace: str, tmp_path: Path
) -> None:
    two_images(repo, namespace)
    push = {
        **GITHUB,
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_REF_NAME": "main",
        "GITHUB_REF_TYPE": "branch",
        "GITHUB_EVENT_PATH": event_file(tmp_path, {"repository": {"default_branch": "main"}}),
    }
    code, output = repo.buildpilot("build", env=push)
    assert code == 0, output
    assert registry_tags(f"{namespace}/cache/svc") == ["main"]

    pull = {
        **GITHUB,
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_REF_NAME": "7/merge",
        "GITHUB_HEAD_REF": "feature/x",
        "GITHUB_BASE_REF": "main",
        "GITHUB_EVENT_PATH": event_file(
            tmp_path,
            {
                "repository": {"default_branch": "main"},
                "pull_request": {"number": 7, "head": {"repo": {"fork": True}}},
            },
        ),
    }
    code, output = repo.buildpilot("build", "--json", "--no-skip-existing", env=pull)
    assert code == 0, output
    assert registry_tags(f"{namespace}/cache/svc") == ["main"]  # the pull request wrote nothing
    run = json.loads(output[output.index("{\n") :])
    svc = next(i for i in run["images"] if i["name"] == "svc")
    assert not any(a.startswith("--cache-to") for a in svc["command"])
    assert f"type=registry,ref={namespace}/cache/svc:feature-x" in svc["command"]
    assert f"type=registry,ref={namespace}/cache/svc:main" in svc["command"]
    # ...yet it read main's cache: every step cached
    steps = [s for s in svc["timeline"]["steps"] if s["stage"]]
    assert steps
    assert all(s["cached"] for s in steps)


def test_gitlab_merge_request_reads_target_then_default(repo: Repo, namespace: str) -> None:
    two_images(repo, namespace)
    assert repo.buildpilot("build", "--branch", "develop")[0] == 0
    env = {
        "GITLAB_CI": "true",
        "CI_PIPELINE_SOURCE": "merge_request_event",
        "CI_COMMIT_REF_NAME": "topic",
        "CI_MERGE_REQUEST_IID": "12",
        "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "topic",
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "develop",
        "CI_DEFAULT_BRANCH": "main",
        "CI_MERGE_REQUEST_PROJECT_ID": "1",
        "CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "1",
        "CI_COMMIT_SHA": "1" * 40,
    }
    code, output = repo.buildpilot("build", "svc", "--json", "--no-skip-existing", env=env)
    assert code == 0, output
    run = json.loads(output[output.index("{\n") :])
    svc = next(i for i in run["images"] if i["name"] == "svc")
    reads = [svc["command"][i + 1] for i, a in enumerate(svc["command"]) if a == "--cache-from"]
    assert reads == [
        f"type=registry,ref={namespace}/cache/svc:topic",
        f"type=registry,ref={namespace}/cache/svc:develop",
        f"type=registry,ref={namespace}/cache/svc:main",
    ]
    assert registry_tags(f"{namespace}/cache/svc") == ["develop"]
    assert "\x1b[0Ksection_start:" in output
    assert "section_end:" in output


def test_failed_cache_export_warns_and_the_build_stands(repo: Repo, namespace: str) -> None:
    two_images(
        repo, namespace, cache={"repository": "127.0.0.1:5999/cache/{name}"}
    )  # nothing listens
    code, output = repo.buildpilot("build")
    assert code == 0, output
    run = repo.last_run()
    assert {i.name: i.status for i in run.images} == {"base": Status.SUCCESS, "svc": Status.SUCCESS}
    for image in run.images:
        assert image.timeline.cache_export_failed
        assert (
            f"{image.name}: cache export to 127.0.0.1:5999/cache/{image.name}:main failed"
            in " ".join(output.split())
        )


def test_ci_files_junit_dotenv_and_github_summary(
    repo: Repo, namespace: str, tmp_path: Path
) -> None:
    repo.write(
        {
            "broken/Dockerfile": "FROM base\nRUN echo 'model not found' >&2 && exit 1\n",
            "buildpilot.yaml": config(
                namespace,
                {
                    "base": {"context": "base"},
                    "broken": {"context": "broken", "contexts": {"base": "image:base"}},
                },
            ),
        }
    )
    repo.commit()
    summary = tmp_path / "summary.md"
    env = {
        **GITHUB,
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_REF_NAME": "main",
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    code, output = repo.buildpilot("build", env=env)
    assert code == 1
    assert "::group::base: success" in output
    assert "::endgroup::" in output
    assert "::error file=broken/Dockerfile,line=2" in output
    suite = ET.parse(repo.root / ".buildpilot/junit.xml").getroot()  # noqa: S314 - our own file
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {"base", "broken"}
    failure = cases["broken"].find("failure")
    assert failure is not None
    assert "model not found" in (failure.text or "")
    dotenv = (repo.root / ".buildpilot/digests.env").read_text()
    assert dotenv.startswith("BUILDPILOT_DIGEST_BASE=sha256:")
    text = summary.read_text()
    assert "| `base` | ✅ success |" in text
    assert "| `broken` | ❌ failed |" in text
