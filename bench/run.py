"""buildpilot against `docker buildx bake` and plain `docker buildx build`, side by side.

One command runs every scenario on a generated monorepo (bench/generate.py) and its peers
(bench/peers.py: the equivalent bake file and a sequential plain-buildx script, with the
same images, tags and per-image registry cache refs), several rounds each, and writes
bench/results/latest.md and latest.json:

- cold: empty engine build cache (`docker buildx prune -af`) and an empty registry (a fresh
  namespace per tool and round); CI's command (`--push`);
- ci-noop, ci-service, ci-base: a fresh runner (engine cache pruned, no local images) with
  a warm registry cache; nothing changed / one service's source changed / the base changed;
- local-noop, local-service: a developer's machine, engine cache warm, `--load`; nothing
  changed / one service's source changed, beside plain buildx building just that image;
- plan: `buildpilot plan --since HEAD~1` against `git diff --name-only HEAD~1` on the
  200-image repository (50,000 files, one changed in the last commit).

    python bench/run.py [--size 20|example] [--rounds 3] [--scenarios cold,ci,local,plan]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench_build import byte_compile, machine, summary
from generate import REGISTRY_HOST, SIZE_NAMES, SIZES, bump, git, make, manifest
from peers import MARKER, plain_commands, write_peers

from buildpilot.progress import ProgressTracker
from buildpilot.rawjson import RawJsonStream
from buildpilot.request import Output
from buildpilot.runlog import runs_dir
from buildpilot.runs import load_run
from buildpilot.status import Status

HERE = Path(__file__).resolve().parent
TOOLS = ("buildpilot", "bake", "plain")
LABELS = {
    "buildpilot": "buildpilot build",
    "bake": "docker buildx bake",
    "plain": "plain docker buildx build",
    "plain-one": "plain buildx, just that image",
    "git-diff": "git diff --name-only HEAD~1",
    "buildpilot-plan": "buildpilot plan --since HEAD~1",
}
GROUPS = {
    "cold": ["cold"],
    "ci": ["ci-noop", "ci-service", "ci-base"],
    "local": ["local-noop", "local-service"],
    "plan": ["plan"],
}
SCENARIOS = [name for names in GROUPS.values() for name in names]
TITLES = {
    "cold": "Cold: empty engine build cache, empty registry cache",
    "ci-noop": "CI warm, nothing changed: fresh runner (engine cache pruned), registry cache warm",
    "ci-service": "CI warm, one service's source changed: fresh runner, registry cache warm",
    "ci-base": "CI warm, the base changed: fresh runner, registry cache warm",
    "local-noop": "Local warm, nothing changed: engine cache warm",
    "local-service": "Local warm, one service's source changed: engine cache warm",
    "plan": "Planning only: what one file changed in the last commit rebuilds",
}


def log(message: str) -> None:
    """Progress on stderr; the results go to stdout."""
    print(f"{datetime.now().strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def buildpilot_cmd() -> list[str]:
    """The buildpilot console script of this interpreter (no shell shim in between)."""
    script = Path(sys.executable).parent / "buildpilot"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "buildpilot"]


class ToolError(Exception):
    """A measured command failed (a second time: `Bench.retried`): the run stops and writes
    what it has."""


def last_error(output: str) -> str:
    """The error line of a failed command's output (buildx ends with `ERROR: …`)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("ERROR", "error"))]
    return ((errors or lines or ["no output"])[-1])[:300]


def run(command: Sequence[str], *, cwd: Path, keep: Path | None = None) -> tuple[float, str, str]:
    """(wall seconds, stdout, stderr) of `command`, both kept in the file `keep`; raises
    ToolError with its output if it fails. It runs in a session of its own, so that a
    signal meant for it (or a group kill aimed at its children) does not end this script."""
    start = time.perf_counter()
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, check=False, start_new_session=True
    )
    elapsed = time.perf_counter() - start
    if keep is not None:
        keep.parent.mkdir(parents=True, exist_ok=True)
        keep.write_text(
            f"$ {shlex.join(command)}\n# {elapsed:.2f} s, exit {done.returncode}\n"
            f"{done.stdout}\n# stderr\n{done.stderr}",
            encoding="utf-8",
        )
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-4000:]
        raise ToolError(f"{shlex.join(command)} failed ({done.returncode}) in {cwd}:\n{output}")
    return elapsed, done.stdout, done.stderr


# --------------------------------------------------------------------------- steps


def _strip_target(event: dict[str, Any], targets: Iterable[str]) -> None:
    """bake names a vertex `[<target> stage 2/4] …`: drop the target so it parses as a step."""
    names = set(targets)
    for vertex in event.get("vertexes") or []:
        name = vertex.get("name") if isinstance(vertex, dict) else None
        if isinstance(name, str) and name.startswith("["):
            head, sep, rest = name[1:].partition(" ")
            if sep and head in names:
                vertex["name"] = "[" + rest


def count_steps(stderr: str, targets: Iterable[str] = ()) -> tuple[int, int, int]:
    """(builds, Dockerfile steps, cached steps) in rawjson progress; the plain script marks
    each of its builds with a MARKER line, and each build is counted apart."""
    segments: list[list[str]] = [[]]
    for line in stderr.splitlines():
        if line.startswith(MARKER):
            segments.append([])
        else:
            segments[-1].append(line)
    builds = steps = cached = 0
    for lines in segments:
        stream, tracker = RawJsonStream(), ProgressTracker()
        seen = False
        for line in lines:
            for event in stream.feed(line):
                seen = True
                _strip_target(event, targets)
                for step in tracker.feed(event):
                    steps += 1
                    cached += step.cached
        builds += seen
    return builds, steps, cached


# --------------------------------------------------------------------------- engine


def docker(*args: str) -> str:
    """Run a docker command that must succeed; return stdout."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def drop_engine_cache() -> None:
    """Empty BuildKit's cache, cache mounts included: a fresh runner.

    Images that earlier runs left in the local store stay: deleting them costs the
    containerd image store about a second per tag, more than most runs measured here. No
    tool reads them: with --push buildpilot looks fingerprints up in the registry, and a
    build's cache comes only from BuildKit's cache (pruned) and the registry.
    """
    start = time.perf_counter()
    docker("buildx", "prune", "-af")
    log(f"    (engine build cache pruned in {time.perf_counter() - start:.1f} s)")


def drop_local_images(prefix: str) -> None:
    """Remove every local image tagged under `prefix` (this run's namespaces only)."""
    start = time.perf_counter()
    listing = docker("image", "ls", "--no-trunc", "--format", "{{.ID}} {{.Repository}}")
    ids = sorted(
        {
            image
            for image, _, repository in (line.partition(" ") for line in listing.splitlines())
            if repository.startswith(prefix)
        }
    )
    chunks = [ids[i : i + 10] for i in range(0, len(ids), 10)]

    def remove(chunk: list[str]) -> None:
        subprocess.run(["docker", "image", "rm", "-f", *chunk], capture_output=True, check=False)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(remove, chunks))
    log(f"removed {len(ids)} local images under {prefix} in {time.perf_counter() - start:.0f} s")


# --------------------------------------------------------------------------- tools


@dataclass
class Measure:
    """One timed run of one tool."""

    wall: float
    built: int  # images built (not reused, not skipped)
    steps: int  # Dockerfile steps BuildKit reported
    cached: int  # of which cached
    reused: int = 0  # buildpilot: images reused by fingerprint

    @property
    def executed(self) -> int:
        """Steps BuildKit ran."""
        return self.steps - self.cached


@dataclass
class Bench:
    """Runs the tools on one repository, each in registry namespaces of its own."""

    repo: Path
    root: str  # registry root of this run, e.g. localhost:5000/bench-1a2b3c
    work: Path
    jobs: int | None = None
    commands: dict[str, str] = field(default_factory=dict)
    warm: dict[str, str] = field(default_factory=dict)  # tool -> a namespace it filled
    retries: list[str] = field(default_factory=list)  # runs that failed once, and why

    def namespace(self, tool: str, slot: str) -> str:
        """The registry of `tool` in `slot`: its images and caches, apart from the others."""
        return f"{self.root}/{tool}-{slot}"

    def retried(self, label: str, once: Callable[[str], Measure]) -> Measure:
        """`once("")`; if its command fails, `once("-retry")` (which sets its state up
        again), noted in the results. BuildKit itself now and then fails a build ("failed
        to get edge: inconsistent graph state", "parent snapshot … does not exist"); one
        such failure should not cost the whole run. A second failure stops it."""
        try:
            return once("")
        except ToolError as exc:
            why = last_error(str(exc))
            log(f"  {label} failed ({why}): once more")
            self.retries.append(f"{label}: {why}")
            return once("-retry")

    def warm_namespace(self, tool: str) -> str:
        """The namespace the warm scenarios use: the last cold round's, else a new one."""
        return self.warm.get(tool) or self.namespace(tool, "warm")

    def config(self, namespace: str) -> Path:
        """buildpilot.yaml with its registry set to `namespace` (git-ignored, next to it)."""
        slug = re.sub(r"[^a-z0-9-]+", "-", namespace.rsplit("/", 1)[1])
        path = self.repo / f"buildpilot.{slug}.yaml"
        text = (self.repo / "buildpilot.yaml").read_text(encoding="utf-8")
        text = re.sub(r"(?m)^registry:.*$", f"registry: {namespace}", text)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")  # unchanged, as in a working copy
        return path

    def log_file(self, label: str) -> Path:
        """Where the output of the run `label` is kept."""
        return self.work / "logs" / f"{label}.log"

    def measure(self, tool: str, namespace: str, output: Output, label: str) -> Measure:
        """Run `tool` once over every image, into `namespace`; keep its output."""
        config = self.config(namespace)
        keep = self.log_file(label)
        if tool == "buildpilot":
            return self._buildpilot(config, output, keep)
        bake, script, plan = write_peers(config, self.work / "peers" / config.stem, output)
        if tool == "bake":
            command = ["docker", "buildx", "bake", "--file", str(bake), "--progress=rawjson"]
            self.commands.setdefault(
                f"bake-{output}",
                "docker buildx bake --file docker-bake.json  # output: "
                + ("type=registry" if output == "push" else "type=docker"),
            )
            wall, _, stderr = run(command, cwd=self.repo, keep=keep)
            _, steps, cached = count_steps(stderr, plan.order)
            return Measure(wall, len(plan.order), steps, cached)
        self.commands.setdefault(f"plain-{output}", f"sh build-plain.sh  # each --{output}")
        wall, _, stderr = run(["sh", str(script)], cwd=self.repo, keep=keep)
        builds, steps, cached = count_steps(stderr)
        return Measure(wall, builds, steps, cached)

    def measure_one(self, image: str, namespace: str, output: Output, label: str) -> Measure:
        """Plain buildx building just `image` (its bases already there)."""
        config = self.config(namespace)
        _, _, plan = write_peers(config, self.work / "peers" / config.stem, output)
        command = plain_commands(plan)[image]
        self.commands.setdefault(f"plain-one-{output}", f"docker buildx build … --{output} {image}")
        wall, _, stderr = run(command, cwd=self.repo, keep=self.log_file(label))
        _, steps, cached = count_steps(stderr)
        return Measure(wall, 1, steps, cached)

    def _buildpilot(self, config: Path, output: Output, keep: Path) -> Measure:
        flags = ["--push"] if output == "push" else []
        flags += ["--jobs", str(self.jobs)] if self.jobs else []
        self.commands.setdefault(
            f"buildpilot-{output}", shlex.join(["buildpilot", "build", *flags])
        )
        before = set(runs_dir(self.repo).glob("*.json")) if runs_dir(self.repo).is_dir() else set()
        command = [*buildpilot_cmd(), "build", "--config", str(config), *flags]
        wall, _, _ = run(command, cwd=self.repo, keep=keep)
        new = sorted(set(runs_dir(self.repo).glob("*.json")) - before)
        if len(new) != 1:
            sys.exit(f"expected one new run under {runs_dir(self.repo)}, found {len(new)}")
        record = load_run(self.repo, str(new[0]))
        built = [i for i in record.images if i.status is Status.SUCCESS]
        reused = [i for i in record.images if (i.reason or "").startswith("reused")]
        return Measure(
            wall,
            len(built),
            sum(i.steps_total for i in record.images),
            sum(i.steps_cached for i in record.images),
            reused=len(reused),
        )


# --------------------------------------------------------------------------- scenarios

Rounds = dict[str, list[Measure]]


def rotated(tools: Sequence[str], round_: int) -> list[str]:
    """`tools`, starting with a different one each round."""
    shift = round_ % len(tools)
    return [*tools[shift:], *tools[:shift]]


def cold(bench: Bench, rounds: int) -> Rounds:
    """Empty engine cache and an empty registry namespace per tool and round."""
    result: Rounds = {tool: [] for tool in TOOLS}
    for round_ in range(rounds):
        for tool in rotated(TOOLS, round_):
            label = f"cold-r{round_ + 1}-{tool}"
            m = bench.retried(label, partial(_cold_once, bench, tool, f"cold{round_}", label))
            log(f"  cold round {round_ + 1}: {tool} {m.wall:.1f} s")
            result[tool].append(m)
    return result


def _cold_once(bench: Bench, tool: str, slot: str, label: str, attempt: str) -> Measure:
    drop_engine_cache()
    namespace = bench.namespace(tool, slot + attempt)
    bench.warm[tool] = namespace  # the last round's: the CI scenarios start there, warm
    return bench.measure(tool, namespace, "push", label + attempt)


def warm_up(bench: Bench, output: Output) -> None:
    """Fill each tool's namespace (and, for --load, the local store)."""
    for tool in TOOLS:
        m = bench.measure(tool, bench.warm_namespace(tool), output, f"warm-up-{output}-{tool}")
        log(f"  warm-up ({output}): {tool} {m.wall:.1f} s")


@dataclass(frozen=True)
class WarmRun:
    """How each run of a warm scenario is set up and timed."""

    name: str  # the scenario
    output: Output
    change: str | None  # commit this change (a revision of each run's own)
    before: Callable[[], None]  # then this
    one: str | None  # the image plain-one builds

    def measure(self, bench: Bench, tool: str, round_: int, label: str, attempt: str) -> Measure:
        """Set the run up, then time `tool` in its warm namespace."""
        if self.change:  # the run's namespace in it: no earlier bench run built this source
            run = bench.root.rsplit("/", 1)[-1]
            bump(bench.repo, self.change, f"{run}-{tool}-{self.name}-{round_}{attempt}")
        self.before()
        if tool == "plain-one":
            assert self.one is not None  # noqa: S101 - tools has plain-one only then
            plain = bench.warm_namespace("plain")
            return bench.measure_one(self.one, plain, self.output, label + attempt)
        return bench.measure(tool, bench.warm_namespace(tool), self.output, label + attempt)


def repeated(
    bench: Bench,
    name: str,
    rounds: int,
    output: Output,
    *,
    change: str | None,
    before: Callable[[], None] = lambda: None,
    one: str | None = None,
) -> Rounds:
    """Each round, each tool: commit `change` (a revision of its own, so no tool reuses
    another's work), then `before`, then time the tool in its warm namespace."""
    setup = WarmRun(name, output, change, before, one)
    tools = [*TOOLS, *(["plain-one"] if one else [])]
    result: Rounds = {tool: [] for tool in tools}
    for round_ in range(rounds):
        for tool in rotated(tools, round_):
            label = f"{name}-r{round_ + 1}-{tool}"
            m = bench.retried(label, partial(setup.measure, bench, tool, round_, label))
            log(f"  {name} round {round_ + 1}: {tool} {m.wall:.1f} s ({m.built} built)")
            result[tool].append(m)
    return result


def planning(work: Path, runs: int, size: str) -> tuple[dict[str, list[float]], int, int]:
    """Wall times of `buildpilot plan --since HEAD~1` and `git diff --name-only HEAD~1`."""
    repo = work / f"plan-{size}"
    log(f"generating the {size}-image repository for planning: {repo}")
    make(size, repo)
    bump(repo, "service_change", "plan")
    files = git(repo, "ls-files").count("\n") + 1
    commands = {
        "buildpilot-plan": [*buildpilot_cmd(), "plan", "--since", "HEAD~1"],
        "git-diff": ["git", "diff", "--name-only", "HEAD~1"],
    }
    for command in commands.values():
        run(command, cwd=repo)  # warm the page cache
    times: dict[str, list[float]] = {key: [] for key in commands}
    for round_ in range(runs):
        for key in rotated(list(commands), round_):
            times[key].append(run(commands[key], cwd=repo)[0])
    return times, len(manifest(repo)["images"]), files


# --------------------------------------------------------------------------- report


def _stats(values: list[float]) -> dict[str, float]:
    return summary(values) if values else {"median": float("nan"), "min": 0.0, "max": 0.0}


def scenario_data(name: str, rounds: Rounds, commands: dict[str, str]) -> dict[str, Any]:
    """A scenario's figures per tool and the ratios."""
    output = "load" if name.startswith("local") else "push"
    tools: dict[str, Any] = {}
    for tool, measures in rounds.items():
        key = f"{tool}-{output}"
        tools[tool] = {
            "command": commands.get(key, ""),
            "wall": _stats([m.wall for m in measures]),
            "images_built": statistics.median([m.built for m in measures]),
            "images_reused": statistics.median([m.reused for m in measures]),
            "steps": statistics.median([m.steps for m in measures]),
            "steps_executed": statistics.median([m.executed for m in measures]),
            "steps_cached": statistics.median([m.cached for m in measures]),
            "rounds": [asdict(m) for m in measures],
        }
    bp = tools["buildpilot"]["wall"]["median"]
    ratios = {
        f"buildpilot/{tool}": bp / tools[tool]["wall"]["median"]
        for tool in tools
        if tool != "buildpilot"
    }
    return {"id": name, "title": TITLES[name], "tools": tools, "ratios": ratios}


def floors(data: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The floor checks, for the scenarios that ran."""
    checks: list[dict[str, Any]] = []

    def ratio(scenario: str, tool: str) -> float | None:
        found = data.get(scenario)
        return None if found is None else found["ratios"].get(f"buildpilot/{tool}")

    def add(name: str, value: float | None, limit: float, unit: str = "x") -> None:
        checks.append(
            {
                "floor": name,
                "value": value,
                "limit": limit,
                "unit": unit,
                "result": "n/a" if value is None else ("PASS" if value <= limit else "MISS"),
            }
        )

    add("CI warm, nothing changed: buildpilot / bake", ratio("ci-noop", "bake"), 0.1)
    add("CI warm, one service changed: buildpilot / bake", ratio("ci-service", "bake"), 0.5)
    add(
        "local warm, one service changed: buildpilot / plain buildx of that image",
        ratio("local-service", "plain-one"),
        1.1,
    )
    add("cold: buildpilot / bake", ratio("cold", "bake"), 1.0)
    plan = data.get("plan")
    add("planning: buildpilot plan / git diff", ratio("plan", "git-diff"), 3.0)
    seconds = plan["tools"]["buildpilot"]["wall"]["median"] if plan else None
    add("planning: buildpilot plan wall time", seconds, 1.0, " s")
    return checks


def _seconds(s: dict[str, float]) -> tuple[str, str]:
    return f"{s['median']:.2f} s", f"{s['min']:.2f}-{s['max']:.2f} s"


def render(result: dict[str, Any]) -> str:
    """Every scenario as a markdown table, then the floors."""
    m = result["machine"]
    builds = any(s["id"] != "plan" for s in result["scenarios"])
    how = (
        f" {result['rounds']} round(s) per build scenario, tools in rotating order. Wall time: "
        "median (min-max). Steps: Dockerfile steps BuildKit ran / took from cache (median)."
        if builds
        else " Wall time: median (min-max)."
    )
    lines = [
        f"# buildpilot vs docker buildx bake vs plain buildx ({result['size_title']})",
        "",
        f"{result['date']}; {m['cores']} cores, {m['memory_gib']} GiB, Docker "
        f"{m['docker_engine']}, {m['buildx']}, Python {m['python']}; images in the local store at "
        f"the start: {m['store_images']}.{how} Whole run: "
        f"{result['duration_seconds'] / 60:.0f} min.",
        "",
    ]
    if result.get("interrupted"):
        why = "a command failed (see latest.json)" if result.get("failure") else "interrupted"
        lines += [f"**Stopped early** ({why}): only the scenarios that finished are shown.", ""]
    if result.get("retries"):
        lines += ["Failed once and run again:", ""]
        lines += [f"- {retry}" for retry in result["retries"]] + [""]
    for scenario in result["scenarios"]:
        lines += [f"## {scenario['id']}: {scenario['title']}", ""]
        if scenario["id"] == "plan":
            lines += [
                f"{scenario['images']} images, {scenario['files']} files, "
                f"{scenario['runs']} runs of each command.",
                "",
                "| command | wall median | min-max |",
                "|---|---|---|",
            ]
            for tool, figures in scenario["tools"].items():
                label = LABELS["buildpilot-plan" if tool == "buildpilot" else tool]
                median, spread = _seconds(figures["wall"])
                lines.append(f"| `{label}` | {median} | {spread} |")
        else:
            lines += [
                "| tool | command | wall median | min-max | images built (reused) "
                "| steps run / cached |",
                "|---|---|---|---|---|---|",
            ]
            for tool, f in scenario["tools"].items():
                median, spread = _seconds(f["wall"])
                reused = f" ({f['images_reused']:g})" if tool == "buildpilot" else ""
                lines.append(
                    f"| {LABELS[tool]} | `{f['command']}` | {median} | {spread} | "
                    f"{f['images_built']:g}{reused} | "
                    f"{f['steps_executed']:g} / {f['steps_cached']:g} |"
                )
        ratios = ", ".join(f"{k}: **{v:.2f}x**" for k, v in scenario["ratios"].items())
        lines += ["", f"Ratios (wall medians): {ratios}", ""]
    lines += ["## Floors", ""]
    for check in result["floors"]:
        value = "-" if check["value"] is None else f"{check['value']:.3g}{check['unit']}"
        lines.append(
            f"- {check['result']}: {check['floor']} = {value} (floor: at most "
            f"{check['limit']:g}{check['unit']})"
        )
    lines += ["", f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def selected(spec: str) -> list[str]:
    """Scenario ids from a comma list of ids and groups."""
    names: list[str] = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        if item in GROUPS:
            names += GROUPS[item]
        elif item in SCENARIOS:
            names.append(item)
        else:
            sys.exit(f"unknown scenario {item!r}; choose from {', '.join([*GROUPS, *SCENARIOS])}")
    return [name for name in SCENARIOS if name in names]


def preflight(registry_host: str) -> None:
    """The engine, buildx and the registry answer."""
    docker("buildx", "inspect")
    done = subprocess.run(
        ["curl", "-sf", f"http://{registry_host}/v2/"], capture_output=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"no registry answers on http://{registry_host}/v2/ (bash ci/engine-up.sh)")


def build_scenarios(
    args: argparse.Namespace, names: list[str], data: dict[str, Any], retries: list[str]
) -> int:
    """Run the build scenarios of `names` into `data` as each finishes, noting in `retries`
    the runs that failed once; return the image count."""
    preflight(args.registry)
    repo = args.workdir / f"repo-{args.size}"
    log(f"generating size {args.size} at {repo}; registry namespaces under {args.root}/")
    make(args.size, repo, sleep=args.sleep, mb=args.mb)
    bench = Bench(repo=repo, root=args.root, work=args.workdir, jobs=args.jobs, retries=retries)
    service = manifest(repo)["service_change"]["image"]
    try:
        if "cold" in names:
            log("scenario cold")
            data["cold"] = scenario_data("cold", cold(bench, args.rounds), bench.commands)
        ci = [n for n in names if n.startswith("ci-")]
        if ci and not bench.warm:
            log("CI scenarios: warming each tool's registry namespace")
            drop_engine_cache()
            warm_up(bench, "push")
        changes = {"ci-noop": None, "ci-service": "service_change", "ci-base": "base_change"}
        for name in ci:
            log(f"scenario {name}")
            measured = repeated(
                bench, name, args.rounds, "push", change=changes[name], before=drop_engine_cache
            )
            data[name] = scenario_data(name, measured, bench.commands)
        local = [n for n in names if n.startswith("local-")]
        if local:
            log("local scenarios: warming the engine cache and the local store")
            warm_up(bench, "load")
        for name in local:
            log(f"scenario {name}")
            is_service = name == "local-service"
            measured = repeated(
                bench,
                name,
                args.rounds,
                "load",
                change="service_change" if is_service else None,
                one=service if is_service else None,
            )
            data[name] = scenario_data(name, measured, bench.commands)
    finally:
        if args.remove_images:
            drop_local_images(args.root + "/")
        else:
            log(
                "this run's images stay in the local store; remove them with: docker image ls "
                f"--format '{{{{.ID}}}} {{{{.Repository}}}}' | awk '$2 ~ \"^{args.root}/\" "
                "{print $1}' | sort -u | xargs -r docker image rm -f"
            )
    return len(manifest(repo)["images"])


def plan_scenario(args: argparse.Namespace) -> dict[str, Any]:
    """The planning scenario's figures."""
    log(f"scenario plan ({args.plan_runs} runs each)")
    times, images, files = planning(args.workdir, args.plan_runs, args.plan_size)
    tools = {
        "buildpilot": {
            "wall": _stats(times["buildpilot-plan"]),
            "samples": times["buildpilot-plan"],
        },
        "git-diff": {"wall": _stats(times["git-diff"]), "samples": times["git-diff"]},
    }
    ratio = tools["buildpilot"]["wall"]["median"] / tools["git-diff"]["wall"]["median"]
    return {
        "id": "plan",
        "title": TITLES["plan"],
        "images": images,
        "files": files,
        "runs": args.plan_runs,
        "tools": tools,
        "ratios": {"buildpilot/git-diff": ratio},
    }


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=[s for s in SIZE_NAMES if s != "200"], default="20")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each build scenario")
    parser.add_argument(
        "--scenarios",
        default="cold,ci,local,plan",
        help=f"comma list of groups ({', '.join(GROUPS)}) or ids ({', '.join(SCENARIOS)})",
    )
    parser.add_argument("--plan-size", choices=list(SIZES), default="200")
    parser.add_argument("--plan-runs", type=int, default=10)
    parser.add_argument("--sleep", type=float, help="seconds of each image's cache-mount step")
    parser.add_argument("--mb", type=int, help="MiB that step writes into each image")
    parser.add_argument("--jobs", type=int, help="buildpilot --jobs (default: its own)")
    parser.add_argument("--registry", default=REGISTRY_HOST, help="registry host:port")
    parser.add_argument(
        "--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "buildpilot-bench"
    )
    parser.add_argument(
        "--remove-images",
        action="store_true",
        help="delete this run's images from the local store at the end (slow: ~1 s per image)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results", help="results directory")
    args = parser.parse_args()
    args.workdir = args.workdir.resolve()
    args.root = f"{args.registry}/bench-{secrets.token_hex(3)}"
    return args


def main() -> None:
    """Run the chosen scenarios and write bench/results/latest.{md,json}; an interrupt
    (Ctrl-C, SIGTERM) still writes the scenarios finished so far."""
    args = parse_args()
    names = selected(args.scenarios)
    started = time.perf_counter()
    args.workdir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.workdir / "logs", ignore_errors=True)
    signal.signal(signal.SIGTERM, _terminate)
    byte_compile()
    facts = machine()  # before any build adds images to the local store
    data: dict[str, Any] = {}
    images, interrupted, failure = 0, False, None
    retries: list[str] = []
    builds = [n for n in names if n != "plan"]
    try:
        if builds:
            images = build_scenarios(args, names, data, retries)
        if "plan" in names:
            data["plan"] = plan_scenario(args)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: writing the scenarios finished so far")
    except ToolError as exc:
        interrupted, failure = True, str(exc)
        log(f"{failure}\nstopped: writing the scenarios finished so far")
    size_title = (
        "the bundled example" if args.size == "example" else f"{args.size} generated images"
    )
    result = {
        "benchmark": "buildpilot vs docker buildx bake vs plain docker buildx build",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "bench/run.py", *sys.argv[1:]]),
        "machine": facts,
        "size": args.size,
        "size_title": size_title if builds else f"planning on {args.plan_size} images",
        "images": images,
        "rounds": args.rounds,
        "registry_root": args.root,
        "interrupted": interrupted,
        "failure": failure,
        "retries": retries,
        "duration_seconds": round(time.perf_counter() - started, 1),
        "scenarios": [data[name] for name in SCENARIOS if name in data],
    }
    result["floors"] = floors(data)
    markdown = render(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (args.out / "latest.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    log(f"done in {result['duration_seconds']:.0f} s; wrote {args.out}/latest.md and latest.json")
    if interrupted:
        sys.exit(1 if failure else 130)


if __name__ == "__main__":
    main()
