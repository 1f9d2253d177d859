"""The command line: options -> core calls -> rendering -> exit code. No decisions live here."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from buildpilot import __version__
from buildpilot.doctor_options import OutputFormat, Severity
from buildpilot.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, BuildpilotError, GitError
from buildpilot.request import DEFAULT_JOBS
from buildpilot.size import TOP

if TYPE_CHECKING:
    from buildpilot.config import Project
    from buildpilot.console import Terminal

# Each command imports what it runs, so that `plan` does not pay for doctor, size or release.

# "\b" keeps click from re-wrapping the table.
EXIT_CODES = """\b
Exit codes:
  0    success, or nothing to do
  1    a build failed
  2    usage or config error
  3    internal error
  130  interrupted"""

app = typer.Typer(
    name="buildpilot",
    help="Build the Docker images of a repository with BuildKit: bases first, in parallel, "
    "with registry caches, and a record of where the time went.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold credentials
    rich_markup_mode=None,
)

SinceOption = Annotated[
    str | None,
    typer.Option(help="Only what changed since this git ref (merge base with HEAD)."),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file. Default: buildpilot.yaml here or in a parent.",
        dir_okay=False,
    ),
]


@contextmanager
def _user_errors(terminal: Terminal) -> Iterator[None]:
    """Turn buildpilot's errors into one clear message and their exit code."""
    try:
        yield
    except BuildpilotError as exc:
        terminal.error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        terminal.error("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _project(config: Path | None) -> Project:
    from buildpilot.config import find_config, load_config

    return load_config(config if config is not None else find_config(Path.cwd()))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"buildpilot {__version__}")
        raise typer.Exit


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """buildpilot."""


@app.command()
def build(
    images: Annotated[
        list[str] | None, typer.Argument(help="Images to build (default: all).")
    ] = None,
    config: ConfigOption = None,
    push: Annotated[
        bool, typer.Option("--push", help="Push images instead of loading them.")
    ] = False,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, help="Parallel builds.")
    ] = DEFAULT_JOBS,
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", help="Start no new build after a failure.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print every buildx command in order; build nothing.")
    ] = False,
    builder: Annotated[str | None, typer.Option(help="buildx builder (default: config).")] = None,
    branch: Annotated[
        str | None, typer.Option(help="Branch for cache refs (default: git).")
    ] = None,
    default_branch: Annotated[
        str | None, typer.Option(help="Default branch, read as a cache fallback.")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Build every step anew.")] = False,
    no_cache_write: Annotated[
        bool, typer.Option("--no-cache-write", help="Read registry caches but export none.")
    ] = False,
    since: SinceOption = None,
    skip_existing: Annotated[
        bool,
        typer.Option(
            "--skip-existing/--no-skip-existing",
            help="Reuse an image whose input fingerprint already has one (fp-… tag) instead of "
            "building it; --no-skip-existing (or --no-cache) puts every image through BuildKit.",
        ),
    ] = True,
    target_branch: Annotated[
        str | None,
        typer.Option(help="A pull request's target branch, read as a cache (default: CI)."),
    ] = None,
    size: Annotated[
        bool,
        typer.Option(
            "--size", help="Measure every built image (those with a size_budget always are)."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
) -> None:
    """Build images and the images they depend on, bases first, independent ones in parallel."""
    from buildpilot import report, reuseinputs
    from buildpilot.backend import DockerBackend
    from buildpilot.ci_publish import publish_ci_outputs
    from buildpilot.console import Terminal
    from buildpilot.results import exit_code
    from buildpilot.workflow import BuildSettings, dry_run_lines, prepare_run, run_build

    terminal = Terminal()
    read_since = time.time_ns()
    with _user_errors(terminal):
        project = _project(config)
        settings = BuildSettings(
            images=images or [],
            output="push" if push else "load",
            jobs=jobs,
            fail_fast=fail_fast,
            builder=builder,
            branch=branch,
            default_branch=default_branch,
            no_cache=no_cache,
            write_cache=not no_cache_write,
            since=since,
            skip_existing=skip_existing and not no_cache,
            target_branch=target_branch,
            size=size,
        )
        context, prepared = prepare_run(project, settings, os.environ)
        options = context.options
        if dry_run:
            for line in [f"# cache: {context.ci.why}", *dry_run_lines(prepared)]:
                terminal.info(line)
            raise typer.Exit(0)
        terminal.info(f"cache: {context.ci.why}")
        run = run_build(
            project,
            prepared,
            settings,
            backend=DockerBackend(),
            terminal=terminal,
            git=context.git,
            branch=options.branch,
        )
        publish_ci_outputs(project, run, context.ci, terminal, os.environ)
        if settings.skip_existing:  # for the next such run, when it only reuses (warmbuild)
            reuseinputs.remember(project, prepared.plan, options, read_since=read_since)
        if as_json:
            typer.echo(report.run_json(run))
        else:
            terminal.show(partial(report.plain_summary, run), report.summary_table(run))
        raise typer.Exit(exit_code(run))


@app.command()
def release(
    images: Annotated[list[str] | None, typer.Argument(help="Images (default: all).")] = None,
    config: ConfigOption = None,
    version: Annotated[
        str | None, typer.Option(help="Release version (default: the git tag on HEAD).")
    ] = None,
    since: SinceOption = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, help="Parallel builds.")
    ] = DEFAULT_JOBS,
    builder: Annotated[str | None, typer.Option(help="buildx builder (default: config).")] = None,
    branch: Annotated[str | None, typer.Option(help="Branch (default: git).")] = None,
    default_branch: Annotated[str | None, typer.Option(help="Default branch.")] = None,
    size: Annotated[
        bool,
        typer.Option(
            "--size", help="Measure every built image (those with a size_budget always are)."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Release every image or none: build the affected ones and reuse the rest, all under no
    release tag, then tag them all once every image has succeeded."""
    from buildpilot import report
    from buildpilot.backend import DockerBackend
    from buildpilot.ci_publish import publish_ci_outputs
    from buildpilot.console import Terminal
    from buildpilot.release import release_version, run_release
    from buildpilot.results import exit_code
    from buildpilot.workflow import BuildSettings, prepare_run

    terminal = Terminal()
    with _user_errors(terminal):
        project = _project(config)
        settings = BuildSettings(
            images=images or [],
            output="push",
            jobs=jobs,
            builder=builder,
            branch=branch,
            default_branch=default_branch,
            since=since,
            skip_existing=True,
            size=size,
        )
        context, prepared = prepare_run(project, settings, os.environ)
        options = context.options
        outcome = run_release(
            project,
            prepared,
            settings,
            backend=DockerBackend(),
            terminal=terminal,
            git=context.git,
            version=release_version(project.root, version or context.ci.tag),
            branch=options.branch,
            default_branch=options.default_branch,
        )
        publish_ci_outputs(project, outcome.run, context.ci, terminal, os.environ)
        terminal.print(report.summary_table(outcome.run))
        if outcome.manifest is None:
            terminal.error(
                "release not tagged: no release tag was written anywhere, because "
                + "; ".join(outcome.failed)
            )
            raise typer.Exit(exit_code(outcome.run) or 1)
        if as_json:
            typer.echo(outcome.manifest.to_json())
        else:
            terminal.print(report.release_table(outcome.manifest))


@app.command("plan")
def plan_command(
    images: Annotated[list[str] | None, typer.Argument(help="Images (default: all).")] = None,
    config: ConfigOption = None,
    since: SinceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    with_fingerprints: Annotated[
        bool, typer.Option("--fingerprints", help="Include each image's input fingerprint.")
    ] = False,
) -> None:
    """Show what a build would do: affected images in build order, with reasons and the
    first step of each stage that will run again."""
    import time

    from buildpilot import planreport, report
    from buildpilot.console import Terminal
    from buildpilot.planinputs import remember
    from buildpilot.workflow import make_forecast

    started = time.time_ns()  # files changed after this are not trusted to a snapshot
    terminal = Terminal()
    with _user_errors(terminal):
        project = _project(config)
        forecast = make_forecast(project, images or [], since=since, fingerprints=with_fingerprints)
        data = planreport.plan_data(forecast)
        if as_json:
            typer.echo(planreport.plan_json(data))
        else:
            terminal.show(partial(planreport.plan_text, data), *report.plan_view(data))
        remember(project, forecast, read_since=started)  # for the next, warm, `plan`


@app.command()
def explain(
    image: Annotated[str, typer.Argument(help="The image to explain.")],
    config: ConfigOption = None,
    since: SinceOption = None,
) -> None:
    """Print the full chain for one image: file -> Dockerfile:line instruction -> stage."""
    from buildpilot import report
    from buildpilot.console import Terminal
    from buildpilot.workflow import make_forecast

    terminal = Terminal()
    with _user_errors(terminal):
        project = _project(config)
        forecast = make_forecast(project, [image], since=since, fingerprints=True)
        terminal.print(*report.explain_view(forecast, image))


@app.command()
def validate(config: ConfigOption = None) -> None:
    """Check a config: keys, types, image references, cycles, contexts and Dockerfiles."""
    from buildpilot.console import Terminal

    terminal = Terminal()
    with _user_errors(terminal):
        project = _project(config)
        names = ", ".join(project.config.images)
        terminal.info(f"{project.path}: valid ({len(project.config.images)} images: {names})")


@app.command("doctor")
def doctor_command(
    images: Annotated[list[str] | None, typer.Argument(help="Images (default: all).")] = None,
    config: ConfigOption = None,
    output: Annotated[
        OutputFormat,
        typer.Option(
            "--format", help="A table, JSON, GitHub annotations or GitLab Code Quality JSON."
        ),
    ] = OutputFormat.TABLE,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    severity: Annotated[
        Severity | None,
        typer.Option(help="Exit 1 on a finding at or above this (default: doctor.severity)."),
    ] = None,
    release: Annotated[
        bool, typer.Option("--release", help="Also require base images pinned by digest.")
    ] = False,
) -> None:
    """Check each image's Dockerfile and context for what costs build time or image size;
    exit 1 when a finding is at or above the severity threshold."""
    from buildpilot.console import Terminal
    from buildpilot.doctor import exit_code as doctor_exit_code
    from buildpilot.doctor import run_doctor
    from buildpilot.doctor_report import render_text, table_view

    terminal = Terminal()
    with _user_errors(terminal):
        project = _project(config)
        result = run_doctor(project, images or [], release=release, severity=severity)
        output = OutputFormat.JSON if as_json else output
        if output is OutputFormat.TABLE:
            terminal.print(*table_view(result))
        else:
            typer.echo(render_text(result, output))
        raise typer.Exit(doctor_exit_code(result))


@app.command("size")
def size_command(
    images: Annotated[list[str] | None, typer.Argument(help="Images (default: all).")] = None,
    config: ConfigOption = None,
    ref: Annotated[
        str | None, typer.Option(help="Measure this image ref instead (one IMAGE at most).")
    ] = None,
    run: Annotated[
        str | None, typer.Option(help="The run whose images to measure (default: latest).")
    ] = None,
    against: Annotated[
        str | None,
        typer.Option(help="Compare with a run (id or prefix) or a release version."),
    ] = None,
    top: Annotated[
        int, typer.Option(min=1, help="Directories, packages and files kept per layer.")
    ] = TOP,
    as_json: Annotated[bool, typer.Option("--json", help="Print the reports as JSON.")] = False,
) -> None:
    """Show what each layer of the built images weighs, the Dockerfile line that made it,
    the largest directories and Python packages in it, and what grew; exit 1 when an image
    is over a size budget that fails."""
    from buildpilot.backend import DockerBackend
    from buildpilot.console import Terminal
    from buildpilot.size import exit_code as size_exit_code
    from buildpilot.size_report import sizes_json, sizes_view
    from buildpilot.sizing import size_images

    terminal = Terminal()
    with _user_errors(terminal):
        project = _project(config)
        sizes = size_images(
            project,
            images or [],
            backend=DockerBackend(),
            ref=ref,
            run=run,
            against=against,
            top=top,
        )
        if as_json:
            typer.echo(sizes_json(sizes))
        else:
            terminal.print(*sizes_view(sizes))
        raise typer.Exit(size_exit_code(sizes))


@app.command()
def schema() -> None:
    """Print the JSON Schema of buildpilot.yaml (for editors)."""
    import json

    from buildpilot.config import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


@app.command("report")
def report_command(
    run: Annotated[str | None, typer.Argument(help="Run id or prefix (default: latest).")] = None,
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
) -> None:
    """Show a recorded run again: every image, stage and step, hit or miss."""
    from buildpilot import report
    from buildpilot.console import Terminal
    from buildpilot.runs import load_run

    terminal = Terminal()
    with _user_errors(terminal):
        project = _project(config)
        recorded = load_run(project.root, run)
        if as_json:
            typer.echo(report.run_json(recorded))
        else:
            terminal.print(*report.run_report(recorded))


ci_app = typer.Typer(
    name="ci",
    help="Print a ready CI configuration for the config: checkout with history, buildx, "
    "registry login, cache-mount directories, `build --since … --push`, the run record.",
    no_args_is_help=True,
)
app.add_typer(ci_app)

PythonOption = Annotated[str, typer.Option(help="Python version the CI job runs buildpilot on.")]
PackageOption = Annotated[
    str, typer.Option(help="What pip installs: `buildpilot`, a pinned version, or `.`.")
]


def _repo_root(project: Project) -> Path | None:
    """The top level of the repository that holds the config (None outside git)."""
    from buildpilot.git import toplevel

    try:
        return toplevel(project.root)
    except GitError:
        return None


@ci_app.command("github")
def ci_github(
    config: ConfigOption = None,
    python: PythonOption = "3.11",
    package: PackageOption = "buildpilot",
) -> None:
    """Print a GitHub Actions workflow.

    Save it as .github/workflows/buildpilot.yml.
    """
    from buildpilot import templates
    from buildpilot.console import Terminal

    terminal = Terminal()
    with _user_errors(terminal):
        project = _project(config)
        text = templates.github_workflow(
            project, python=python, package=package, repo_root=_repo_root(project)
        )
        typer.echo(text, nl=False)


@ci_app.command("gitlab")
def ci_gitlab(
    config: ConfigOption = None,
    python: PythonOption = "3.11",
    package: PackageOption = "buildpilot",
) -> None:
    """Print a GitLab CI job, with JUnit and dotenv reports.

    Save it as .gitlab-ci.yml, or include it from there.
    """
    from buildpilot import templates
    from buildpilot.console import Terminal

    terminal = Terminal()
    with _user_errors(terminal):
        project = _project(config)
        text = templates.gitlab_job(
            project, python=python, package=package, repo_root=_repo_root(project)
        )
        typer.echo(text, nl=False)


def main() -> None:
    """Console entry point: the last guard against tracebacks."""
    try:
        app()
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - any bug ends as a one-line internal error
        from buildpilot.console import Terminal

        Terminal().error(
            f"internal error: {type(exc).__name__}: {exc}\n"
            "This is a bug in buildpilot; please report it with the command you ran."
        )
        sys.exit(EXIT_INTERNAL)
