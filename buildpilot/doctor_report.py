"""Rendering of `buildpilot doctor` results: a rich table, JSON, CI annotations.

Nothing here prints, decides an exit code or reads a file; `console.Terminal` prints the
table and the CLI echoes the text formats. GitHub annotations follow the workflow-command
syntax (`::warning file=…,line=…,title=…::message`, escaped as actions/toolkit escapes),
the GitLab format is its Code Quality report (a JSON array of Code Climate issues).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from buildpilot.doctor import DoctorReport, Finding, ImageReport
from buildpilot.doctor_options import OutputFormat, Severity

SEVERITY_STYLES: dict[Severity, str] = {
    Severity.ERROR: "bold red",
    Severity.WARNING: "yellow",
    Severity.INFO: "cyan",
}
GITHUB_LEVELS: dict[Severity, str] = {
    Severity.ERROR: "error",
    Severity.WARNING: "warning",
    Severity.INFO: "notice",
}
GITLAB_SEVERITIES: dict[Severity, str] = {
    Severity.ERROR: "critical",
    Severity.WARNING: "major",
    Severity.INFO: "info",
}


def location(finding: Finding) -> str:
    """`path/Dockerfile:12`, or `:12-14` for an instruction over several lines."""
    lines = (
        str(finding.line)
        if finding.end_line == finding.line
        else f"{finding.line}-{finding.end_line}"
    )
    return f"{finding.file}:{lines}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def summary_line(report: DoctorReport) -> str:
    """One line: images checked, findings by severity, how many fail the run."""
    images = _plural(len(report.images), "image")
    findings = report.findings()
    if not findings:
        return f"{images} checked: no findings."
    counts = Counter(finding.severity for finding in findings)
    parts = [
        _plural(counts[severity], severity.value)
        for severity in (Severity.ERROR, Severity.WARNING, Severity.INFO)
        if counts[severity]
    ]
    failing = len(report.failing())
    verdict = f"{failing} at or above the threshold" if failing else "none at the threshold"
    return f"{images} checked: {_plural(len(findings), 'finding')} ({', '.join(parts)}); {verdict}."


# --- table ----------------------------------------------------------------------------------


def table_view(report: DoctorReport) -> list[RenderableType]:
    """A table per image with findings, then the summary line."""
    parts: list[RenderableType] = [_image_table(image) for image in report.images if image.findings]
    parts.append(Text(summary_line(report)))
    return parts


def _image_table(image: ImageReport) -> Table:
    table = Table(
        title=f"{image.image} ({image.dockerfile}; fails at {image.threshold.value})",
        title_justify="left",
        show_lines=True,
    )
    table.add_column("where", no_wrap=True)
    table.add_column("rule", no_wrap=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("finding")
    for finding in image.findings:
        where = location(finding).rsplit("/", 1)[-1]
        cell = Group(
            Text(finding.message),
            Text(f"why: {finding.why}", style="dim"),
            Text(f"fix: {finding.fix}", style="green"),
        )
        table.add_row(
            where,
            finding.rule,
            Text(finding.severity.value, style=SEVERITY_STYLES[finding.severity]),
            cell,
        )
    return table


# --- JSON -----------------------------------------------------------------------------------


def finding_dict(finding: Finding) -> dict[str, Any]:
    """A finding as plain JSON data."""
    return {
        "image": finding.image,
        "file": finding.file,
        "line": finding.line,
        "end_line": finding.end_line,
        "rule": finding.rule,
        "severity": finding.severity.value,
        "title": finding.title,
        "message": finding.message,
        "why": finding.why,
        "fix": finding.fix,
    }


def doctor_json(report: DoctorReport) -> str:
    """The whole report as JSON: images, their findings and thresholds, and a summary."""
    findings = report.findings()
    counts = Counter(finding.severity.value for finding in findings)
    data = {
        "version": 1,
        "release": report.release,
        "images": [
            {
                "image": image.image,
                "dockerfile": image.dockerfile,
                "threshold": image.threshold.value,
                "suppressed": image.suppressed,
                "findings": [finding_dict(finding) for finding in image.findings],
            }
            for image in report.images
        ],
        "summary": {
            "findings": len(findings),
            **{severity.value: counts[severity.value] for severity in Severity},
            "failing": len(report.failing()),
        },
    }
    return json.dumps(data, indent=2)


# --- GitHub workflow commands -----------------------------------------------------------------


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotations(report: DoctorReport) -> str:
    """One `::error|warning|notice file=…,line=…,endLine=…,title=BP00x::…` line per finding."""
    lines: list[str] = []
    for finding in report.findings():
        properties = {
            "file": finding.file,
            "line": str(finding.line),
            "endLine": str(finding.end_line),
            "title": f"{finding.rule} {finding.title} ({finding.image})",
        }
        props = ",".join(f"{key}={_escape_property(value)}" for key, value in properties.items())
        message = f"{finding.message}\n{finding.why}\nFix: {finding.fix}"
        level = GITHUB_LEVELS[finding.severity]
        lines.append(f"::{level} {props}::{_escape_data(message)}")
    return "\n".join(lines)


# --- GitLab Code Quality ----------------------------------------------------------------------


def gitlab_code_quality(report: DoctorReport) -> str:
    """GitLab's Code Quality report: a JSON array of issues with stable fingerprints.

    A fingerprint hashes image, file, rule and message, not the line, so an edit above a
    finding does not make it new; repeats of the same finding are numbered.
    """
    issues: list[dict[str, Any]] = []
    seen: Counter[str] = Counter()
    for finding in report.findings():
        identity = "\0".join((finding.image, finding.file, finding.rule, finding.message))
        seen[identity] += 1
        digest = hashlib.sha256(f"{identity}\0{seen[identity]}".encode()).hexdigest()
        issues.append(
            {
                "description": f"{finding.rule}: {finding.message}. {finding.why} "
                f"Fix: {finding.fix}",
                "check_name": finding.rule,
                "fingerprint": digest[:32],
                "severity": GITLAB_SEVERITIES[finding.severity],
                "location": {
                    "path": finding.file,
                    "lines": {"begin": finding.line, "end": finding.end_line},
                },
            }
        )
    return json.dumps(issues, indent=2)


def render_text(report: DoctorReport, output: OutputFormat) -> str:
    """The report in a text format (everything but the table)."""
    renderers = {
        OutputFormat.JSON: doctor_json,
        OutputFormat.GITHUB: github_annotations,
        OutputFormat.GITLAB: gitlab_code_quality,
    }
    if output not in renderers:
        raise ValueError(f"{output.value} is not a text format")
    return renderers[output](report)
