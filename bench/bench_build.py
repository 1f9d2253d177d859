"""Warm-build benchmark: `buildpilot build` against `docker buildx bake`, side by side.

Both build the same images of a config with the same cache refs, secrets and tags, with
everything already cached (the figure that dominates a developer's day: the no-op or
near-no-op rebuild). Rounds alternate which tool goes first. Prints, and writes under
bench/results/: wall time of each tool (median, min-max), the ratio, and buildpilot's own
CPU time per image (its process only, apart from the buildx processes it drives).

    python bench/bench_build.py [--config buildpilot.yaml] [--rounds 7]
"""

from __future__ import annotations

import argparse
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

from buildpilot.config import load_config
from buildpilot.plan import make_plan
from buildpilot.workflow import BuildSettings, resolve

HERE = Path(__file__).resolve().parent


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
    """Cores, memory and engine versions of this machine."""
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
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(pages / 2**30, 1),
        "python": platform.python_version(),
        "docker_engine": docker,
        "buildx": " ".join(buildx.split()[:2]),
    }


def summary(values: list[float]) -> dict[str, float]:
    """Median and range of a sample."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("buildpilot.yaml"))
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    project = load_config(args.config.resolve())
    options = resolve(project, BuildSettings(), os.environ).options
    plan = make_plan(project, [], options)
    images = len(plan.order)
    config = str(project.path)

    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        bake_file = write_bake_file(plan, Path(tmp) / "docker-bake.json")
        cpu_file = Path(tmp) / "cpu"
        buildpilot = [
            sys.executable,
            str(HERE / "cpu_wrapper.py"),
            str(cpu_file),
            "build",
            "--config",
            config,
        ]
        bake = ["docker", "buildx", "bake", "--file", str(bake_file), "--progress=rawjson"]
        print(f"warming caches: {images} images of {config}", flush=True)
        timed(buildpilot, cwd=project.root)
        timed(bake, cwd=project.root)

        walls: dict[str, list[float]] = {"buildpilot": [], "bake": []}
        cpu_per_image: list[float] = []
        for round_ in range(args.rounds):
            order = ["buildpilot", "bake"] if round_ % 2 == 0 else ["bake", "buildpilot"]
            for tool in order:
                walls[tool].append(
                    timed(buildpilot if tool == "buildpilot" else bake, cwd=project.root)
                )
                if tool == "buildpilot":
                    cpu_per_image.append(float(cpu_file.read_text()) / images)

    result = {
        "benchmark": "warm build, everything cached",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python bench/bench_build.py --config "
        + str(args.config)
        + f" --rounds {args.rounds}",
        "machine": machine(),
        "images": images,
        "rounds": args.rounds,
        "wall_seconds": {tool: summary(values) for tool, values in walls.items()},
        "ratio_buildpilot_to_bake": statistics.median(walls["buildpilot"])
        / statistics.median(walls["bake"]),
        "buildpilot_cpu_ms_per_image": summary([v * 1000 for v in cpu_per_image]),
        "floors": {"ratio_buildpilot_to_bake": 1.2, "buildpilot_cpu_ms_per_image": 150},
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
    ratio = result["ratio_buildpilot_to_bake"]
    lines = [
        f"Warm build of {result['images']} images, everything cached, {result['rounds']} rounds "
        f"({m['cores']} cores, {m['memory_gib']} GiB, Docker {m['docker_engine']}, {m['buildx']})",
        "",
        "| tool | wall median | min-max |",
        "|---|---|---|",
    ]
    for tool, label in (("buildpilot", "buildpilot build"), ("bake", "docker buildx bake")):
        s = walls[tool]
        lines.append(f"| {label} | {s['median']:.2f} s | {s['min']:.2f}-{s['max']:.2f} s |")
    lines += [
        "",
        f"- buildpilot / bake: **{ratio:.2f}x** (floor: at most 1.2x)",
        f"- buildpilot's own CPU per image: **{cpu['median']:.0f} ms** median "
        f"({cpu['min']:.0f}-{cpu['max']:.0f} ms; floor: at most 150 ms)",
        "",
        f"Command: `{result['command']}`",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
