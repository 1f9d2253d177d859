"""Warm-build benchmark: `buildpilot build` against `docker buildx bake`, side by side.

All build the same images of a config with the same cache refs, secrets and tags, with
everything already cached (the figure that dominates a developer's day: the no-op or
near-no-op rebuild). buildpilot runs twice per round: `build`, which reuses each image whose
input fingerprint already has one in the local store, and `build --no-skip-existing`, which
puts every image through BuildKit as bake does. Rounds rotate which tool goes first.
Prints, and writes under bench/results/: wall time of each (median, min-max), the ratios to
bake, and buildpilot's own CPU time per image (its process only, apart from the buildx
processes it drives).

    python bench/bench_build.py [--config buildpilot.yaml] [--rounds 7]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bakefile import write_bake_file

import buildpilot
from buildpilot.config import load_config
from buildpilot.plan import make_plan
from buildpilot.workflow import BuildSettings, resolve

HERE = Path(__file__).resolve().parent
BUILDPILOT = {"buildpilot": [], "buildpilot-forced": ["--no-skip-existing"]}  # tool -> flags
LABELS = {
    "buildpilot": "buildpilot build",
    "buildpilot-forced": "buildpilot build --no-skip-existing",
    "bake": "docker buildx bake",
}


def timed(command: list[str], *, cwd: Path) -> float:
    """Wall seconds of `command`; fails loudly if it fails."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-3000:]
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{output}")
    return elapsed


def machine() -> dict[str, object]:
    """Cores, memory and engine versions of this machine, and how many image references the
    engine's local store holds: image lookups and removals walk that store, so every tool's
    local figures move with it."""
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    docker = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    buildx = subprocess.run(
        ["docker", "buildx", "version"], capture_output=True, text=True, check=False
    ).stdout
    images = subprocess.run(
        ["docker", "image", "ls", "--quiet"], capture_output=True, text=True, check=False
    ).stdout.split()
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(pages / 2**30, 1),
        "python": platform.python_version(),
        "docker_engine": docker,
        "buildx": " ".join(buildx.split()[:2]),
        "store_images": len(images),
    }


def byte_compile() -> None:
    """Write the bytecode of buildpilot's modules beside them, as installing a package does
    (pip compiles every module). Where Python may not write bytecode itself (an editable
    install under PYTHONDONTWRITEBYTECODE), each timed command would otherwise compile every
    module it loads from source first: about 0.1 s of CPU on every run, which no installed
    copy pays."""
    compileall.compile_dir(Path(buildpilot.__file__).parent, quiet=1)


def summary(values: list[float]) -> dict[str, float]:
    """Median and range of a sample."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("buildpilot.yaml"))
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    byte_compile()
    facts = machine()  # before any build adds images to the local store

    project = load_config(args.config.resolve())
    options = resolve(project, BuildSettings(), os.environ).options
    plan = make_plan(project, [], options)
    images = len(plan.order)
    config = str(project.path)

    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        bake_file = write_bake_file(plan, Path(tmp) / "docker-bake.json")
        cpu_files = {tool: Path(tmp) / f"cpu-{tool}" for tool in BUILDPILOT}
        commands = {
            tool: [
                sys.executable,
                str(HERE / "cpu_wrapper.py"),
                str(cpu_files[tool]),
                "build",
                "--config",
                config,
                *flags,
            ]
            for tool, flags in BUILDPILOT.items()
        }
        commands["bake"] = [
            "docker",
            "buildx",
            "bake",
            "--file",
            str(bake_file),
            "--progress=rawjson",
        ]
        print(f"warming caches: {images} images of {config}", flush=True)
        for command in commands.values():
            timed(command, cwd=project.root)
        time.sleep(2.1)  # files written in the last 2 s keep the reuse snapshot from being made
        timed(commands["buildpilot"], cwd=project.root)  # makes it

        walls: dict[str, list[float]] = {tool: [] for tool in commands}
        cpu_per_image: dict[str, list[float]] = {tool: [] for tool in BUILDPILOT}
        tools = list(commands)
        for round_ in range(args.rounds):
            shift = round_ % len(tools)
            for tool in tools[shift:] + tools[:shift]:
                walls[tool].append(timed(commands[tool], cwd=project.root))
                if tool in cpu_files:
                    cpu_per_image[tool].append(float(cpu_files[tool].read_text()) / images)

    result = {
        "benchmark": "warm build, everything cached",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python bench/bench_build.py --config "
        + str(args.config)
        + f" --rounds {args.rounds}",
        "machine": facts,
        "images": images,
        "rounds": args.rounds,
        "wall_seconds": {tool: summary(values) for tool, values in walls.items()},
        "ratio_to_bake": {
            tool: statistics.median(walls[tool]) / statistics.median(walls["bake"])
            for tool in BUILDPILOT
        },
        "buildpilot_cpu_ms_per_image": {
            tool: summary([v * 1000 for v in values]) for tool, values in cpu_per_image.items()
        },
        "floors": {"ratio_to_bake": 1.2, "buildpilot_cpu_ms_per_image": 150},
    }
    markdown = render(result)
    print(markdown)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "build-warm.json").write_text(
        json.dumps(result, indent=2) + "\n", encoding="utf-8"
    )
    (HERE / "results" / "build-warm.md").write_text(markdown, encoding="utf-8")


def render(result: dict[str, Any]) -> str:
    """The result as a markdown table."""
    walls, cpu, m = result["wall_seconds"], result["buildpilot_cpu_ms_per_image"], result["machine"]
    lines = [
        f"Warm build of {result['images']} images, everything cached, {result['rounds']} rounds "
        f"({m['cores']} cores, {m['memory_gib']} GiB, Docker {m['docker_engine']}, {m['buildx']}, "
        f"images in the local store at the start: {m['store_images']})",
        "",
        "| tool | wall median | min-max | / bake | own CPU per image |",
        "|---|---|---|---|---|",
    ]
    for tool, label in LABELS.items():
        s = walls[tool]
        ratio = f"{result['ratio_to_bake'][tool]:.2f}x" if tool in BUILDPILOT else ""
        own = f"{cpu[tool]['median']:.0f} ms" if tool in BUILDPILOT else ""
        lines.append(
            f"| {label} | {s['median']:.2f} s | {s['min']:.2f}-{s['max']:.2f} s | {ratio} | {own} |"
        )
    lines += [
        "",
        "Floors: at most 1.2x bake's wall time; at most 150 ms of buildpilot's own CPU per image.",
        "`build` reuses the images whose input fingerprint is already in the local store and runs",
        "no build; `build --no-skip-existing` puts every image through BuildKit, as bake does.",
        "",
        f"Command: `{result['command']}`",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
