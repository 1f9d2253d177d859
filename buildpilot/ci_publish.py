"""After a run: the outputs CI systems read, written where they look for them.

Every run leaves `junit.xml` and `digests.env` beside its report under `.buildpilot/`
(GitLab's `artifacts:reports` read them; anyone may). On GitHub Actions each image's detail
goes in a collapsible group, a failed image gets an error annotation on its Dockerfile
line, and `$GITHUB_STEP_SUMMARY` gets the summary table; on GitLab, collapsible sections.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from buildpilot import ci_output, report
from buildpilot.ci import CiContext
from buildpilot.ci_files import write_ci_files
from buildpilot.config import Project
from buildpilot.console import Terminal
from buildpilot.results import RunResult
from buildpilot.runlog import STATE_DIR


def publish_ci_outputs(
    project: Project, run: RunResult, ci: CiContext, terminal: Terminal, env: Mapping[str, str]
) -> None:
    """Write the JUnit and dotenv files, and on CI print groups, annotations and summaries."""
    write_ci_files(project.root / STATE_DIR, run)
    if ci.system == "github":
        _github(project, run, terminal, env)
    elif ci.system == "gitlab":
        _gitlab(run, terminal)


def _github(project: Project, run: RunResult, terminal: Terminal, env: Mapping[str, str]) -> None:
    for image in run.images:
        terminal.raw(ci_output.github_group_start(f"{image.name}: {image.status.value}"))
        terminal.print(*report.image_detail(image))
        terminal.raw(ci_output.github_group_end())
    top = project.root
    dockerfiles = {name: _relative(project.dockerfile(name), top) for name in project.config.images}
    texts = {
        path: (top / path).read_text(encoding="utf-8")
        for path in dockerfiles.values()
        if (top / path).is_file()
    }
    for line in ci_output.github_annotations(run, dockerfiles, texts=texts):
        terminal.raw(line)
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        with Path(summary).open("a", encoding="utf-8") as handle:
            handle.write(ci_output.github_summary(run))


def _gitlab(run: RunResult, terminal: Terminal) -> None:
    for image in run.images:
        name = ci_output.section_name(f"buildpilot_{image.name}")
        terminal.raw(
            ci_output.gitlab_section_start(
                name, f"{image.name}: {image.status.value}", now=time.time()
            )
        )
        terminal.print(*report.image_detail(image))
        terminal.raw(ci_output.gitlab_section_end(name, now=time.time()))


def _relative(path: Path, top: Path) -> str:
    try:
        return path.resolve().relative_to(top.resolve()).as_posix()
    except ValueError:
        return path.as_posix()
