"""Generate a monorepo to benchmark on: a committed git repository with a buildpilot.yaml.

From a size description it writes shared busybox bases (the first one FROM scratch, the
others FROM it), services on them (half with their own context folder, half at the repo
root copying the `libs/<x>/` they need), an independent multi-stage image, and `docs/` and
`tests/` that no image reads. Every image has a step whose time and output size are set by
the description, so results do not depend on the network:

    RUN --mount=type=cache,target=/cache,id=<image> sh -c 'sleep S; dd if=/dev/zero
        of=/cache/deps.bin bs=1M count=K; cp /cache/deps.bin /app/deps.bin'

Sizes: `20` (20 images, built by bench/run.py), `200` (200 images and 50,000 files, for
planning only: never built) and `example` (the bundled example: the root buildpilot.yaml
and examples/speech, copied as they are into a fresh repository so that the benchmark can
commit changes without touching this checkout).

    python bench/generate.py --size 20 --dest /tmp/bench-20 [--sleep 2 --mb 4]

`bench.json` at the top of the generated repository names the files the change scenarios
edit (`service_change`, `base_change`).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
TOP = HERE.parent
BUSYBOX = Path("/bin/busybox")
MANIFEST = "bench.json"
REGISTRY_HOST = "localhost:5000"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}
# Generated next to buildpilot.yaml by bench/run.py (one registry namespace each), never read.
IGNORED = [".buildpilot/", "buildpilot.*.yaml"]


@dataclass(frozen=True)
class Description:
    """What to generate."""

    name: str
    images: int  # bases + services + 1 independent multi-stage image
    bases: int = 2
    libs: int = 4
    files: int = 0  # total files to reach by filling docs/ and tests/; 0: a few of each
    modules: int = 3  # source files per service beside its main.sh
    lib_files: int = 5
    sleep: float = 1.0  # seconds of each image's cache-mount step
    mb: int = 4  # MiB that step writes and copies into the image
    build_sleep: float = 0.5  # seconds of the step after a service's sources
    buildable: bool = True

    @property
    def services(self) -> int:
        """Services: every image that is neither a base nor the multi-stage image."""
        return self.images - self.bases - 1


SIZES = {
    "20": Description(name="20", images=20),
    "200": Description(
        name="200",
        images=200,
        bases=3,
        libs=20,
        files=50_000,
        modules=9,
        lib_files=50,
        buildable=False,
    ),
}
SIZE_NAMES = ["example", *SIZES]


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` with a fixed identity; return stdout."""
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **GIT_ENV},
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    """Commit everything; return the new HEAD."""
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def _write(path: Path, text: str, *, mode: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    if mode is not None:
        path.chmod(mode)


def _busybox(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(BUSYBOX, directory / "busybox")
    (directory / "busybox").chmod(0o755)


def _slow_step(name: str, target: str, d: Description) -> str:
    """The cache-mount step: sleeps, writes `mb` MiB to the cache, copies it into the image."""
    return (
        f"RUN --mount=type=cache,target=/cache,id={name} sh -c "
        f"'sleep {d.sleep:g}; dd if=/dev/zero of=/cache/deps.bin bs=1M count={d.mb} "
        f"2>/dev/null; mkdir -p {target}; cp /cache/deps.bin {target}/deps.bin'\n"
    )


BUSYBOX_STAGE = """\
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
"""


def _base(repo: Path, name: str, index: int, d: Description) -> dict[str, Any]:
    folder = repo / "bases" / name
    if index == 0:
        _busybox(folder)
        head = f"# {name}: the shared busybox base.\nFROM scratch\n{BUSYBOX_STAGE}"
        entry: dict[str, Any] = {"context": f"bases/{name}"}
    else:
        head = f"# {name}: a shared base built on base.\nFROM base\n"
        entry = {"context": f"bases/{name}", "contexts": {"base": "image:base"}}
    _write(folder / "etc" / "release", f"{name}\nrev=0\n")
    dockerfile = head + f"COPY etc/ /etc/bench/{name}/\n" + _slow_step(name, f"/opt/{name}", d)
    _write(folder / "Dockerfile", dockerfile)
    return entry


def _multi(repo: Path, d: Description) -> dict[str, Any]:
    folder = repo / "tools" / "multi"
    _busybox(folder)
    _write(folder / "src" / "main.sh", "#!/bin/sh\necho multi\n")
    _write(folder / "src" / "lib.sh", 'say() { echo "$@"; }\n')
    _write(
        folder / "Dockerfile",
        "# multi: independent of the bases; the runtime stage ships only the artefacts.\n"
        f"FROM scratch AS tools\n{BUSYBOX_STAGE}\n"
        "FROM tools AS builder\nWORKDIR /src\nCOPY src/ ./\n"
        + _slow_step("multi", "/out", d)
        + "RUN cat /src/*.sh > /out/multi.sh\n\n"
        "FROM tools AS runtime\nCOPY --from=builder /out/ /app/\n"
        'CMD ["/bin/sh", "/app/multi.sh"]\n',
    )
    return {"context": "tools/multi", "target": "runtime"}


def _service(
    repo: Path, name: str, index: int, *, bases: list[str], libs: list[str], d: Description
) -> dict[str, Any]:
    at_root = index % 2 == 1
    base = bases[index % len(bases)]
    folder = repo / "services" / name
    _write(folder / "requirements.txt", f"# {name}\nlibfoo==1.{index}\n")
    _write(folder / "src" / "main.sh", f"#!/bin/sh\n# {name}\nREV=0\necho {name}\n", mode=0o755)
    for m in range(d.modules):
        _write(folder / "src" / f"mod{m}.sh", f"{name}_mod{m}() {{ echo {m}; }}\n")
    prefix = f"services/{name}/" if at_root else ""
    used = [libs[index % len(libs)], libs[(index * 7 + 3) % len(libs)]] if at_root else []
    lines = [
        f"# {name}: a service on {base}"
        + (f", built from the repo root with {', '.join(dict.fromkeys(used))}" if used else "")
        + ".",
        "FROM base",
        "WORKDIR /app",
        f"COPY {prefix}requirements.txt ./",
        _slow_step(name, "/app", d).rstrip("\n"),
        *[f"COPY libs/{lib}/ ./libs/{lib}/" for lib in dict.fromkeys(used)],
        f"COPY {prefix}src/ ./src/",
        f"RUN sh -c 'sleep {d.build_sleep:g}; cat src/*.sh > /app/build.out'",
        'CMD ["/bin/sh", "/app/src/main.sh"]',
    ]
    _write(folder / "Dockerfile", "\n".join(lines) + "\n")
    entry: dict[str, Any] = (
        {"context": ".", "dockerfile": f"services/{name}/Dockerfile"}
        if at_root
        else {"context": f"services/{name}"}
    )
    entry["contexts"] = {"base": f"image:{base}"}
    return entry


def _fill(repo: Path, d: Description) -> None:
    """docs/ and tests/ (read by no image), up to `files` files in the repository."""
    have = sum(len(files) for _, _, files in os.walk(repo))
    wanted = max(d.files - have, 20) if d.files else 20
    for n in range(wanted):
        top = "docs" if n % 2 == 0 else "tests"
        folder = repo / top / f"part{n // 200:03d}"
        if n % 200 < 2:
            folder.mkdir(parents=True, exist_ok=True)
        suffix = "md" if top == "docs" else "sh"
        (folder / f"f{n:05d}.{suffix}").write_text(f"{top} {n}\n", encoding="utf-8")


def _yaml(registry: str, entries: dict[str, dict[str, Any]], d: Description) -> str:
    lines = [
        f"# Generated by bench/generate.py (size {d.name}): {d.bases} busybox bases, "
        f"{d.services} services, one independent multi-stage image.",
        "version: 1",
        f"registry: {registry}",
        "default_branch: main",
        "cache:",
        "  mode: max",
        "  ignore_error: true",
        "images:",
    ]
    for name, entry in entries.items():
        lines.append(f"  {name}:")
        for key, value in entry.items():
            lines.append(f"    {key}: {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def generate(d: Description, dest: Path, *, registry: str | None = None) -> Path:
    """Write and commit the repository described by `d` at `dest` (replaced if present)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    registry = registry or f"{REGISTRY_HOST}/bench-{secrets.token_hex(3)}"
    width = len(str(d.services))
    bases = ["base", *[f"base{i}" for i in range(1, d.bases)]]
    libs = [f"lib{i:02d}" for i in range(d.libs)]
    for lib in libs:
        for f in range(d.lib_files):
            _write(dest / "libs" / lib / f"part{f}.sh", f"{lib}_{f}() {{ echo {f}; }}\n")
    entries = {name: _base(dest, name, i, d) for i, name in enumerate(bases)}
    entries["multi"] = _multi(dest, d)
    services = [f"svc{i + 1:0{width}d}" for i in range(d.services)]
    for i, name in enumerate(services):
        entries[name] = _service(dest, name, i, bases=bases, libs=libs, d=d)
    _write(dest / "README.md", f"# bench monorepo ({d.name})\n\nGenerated by bench/generate.py.\n")
    _write(dest / ".gitignore", "\n".join(IGNORED) + "\n")
    _write(
        dest / ".dockerignore",
        "# The root context (services built from the top): only services/ and libs/ matter.\n"
        + "\n".join([".git", *IGNORED, "docs/", "tests/", "bases/", "tools/", MANIFEST])
        + "\n",
    )
    _write(dest / "buildpilot.yaml", _yaml(registry, entries, d))
    service = services[1] if len(services) > 1 else services[0]  # one built from the root
    manifest = {
        "size": d.name,
        "description": asdict(d),
        "registry": registry,
        "images": list(entries),
        "service_change": {"image": service, "file": f"services/{service}/src/main.sh"},
        "base_change": {"image": "base", "file": "bases/base/etc/release"},
    }
    _write(dest / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    _fill(dest, d)
    git(dest, "init", "-q", "-b", "main")
    commit_all(dest, f"bench monorepo, size {d.name}")
    return dest


EXAMPLE_FILES = ["buildpilot.yaml", "examples/speech"]
EXAMPLE_MANIFEST = {
    "size": "example",
    "service_change": {"image": "stt", "file": "examples/speech/services/stt/stt/transcribe.py"},
    "base_change": {"image": "base", "file": "examples/speech/images/base/Dockerfile"},
}


def copy_example(dest: Path) -> Path:
    """The bundled example (root buildpilot.yaml and examples/speech as committed) in a fresh
    repository of its own, so the change scenarios can commit without touching this one."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    listed = subprocess.run(
        ["git", "-C", str(TOP), "ls-files", "-z", "--", *EXAMPLE_FILES],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for rel in filter(None, listed.split("\0")):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(TOP / rel, target)
    config = (dest / "buildpilot.yaml").read_text(encoding="utf-8")
    registry = next(
        line.split(":", 1)[1].split("#")[0].strip()
        for line in config.splitlines()
        if line.startswith("registry:")
    )
    _write(dest / ".gitignore", "\n".join(IGNORED) + "\n")
    images = list(yaml.safe_load(config)["images"])
    manifest = {**EXAMPLE_MANIFEST, "registry": registry, "images": images}
    _write(dest / MANIFEST, json.dumps(manifest, indent=2))
    git(dest, "init", "-q", "-b", "main")
    commit_all(dest, "the bundled example")
    return dest


def make(size: str, dest: Path, *, sleep: float | None = None, mb: int | None = None) -> Path:
    """The repository of `size` at `dest`: generated, or the bundled example copied."""
    if size == "example":
        return copy_example(dest)
    d = SIZES[size]
    if sleep is not None:
        d = replace(d, sleep=sleep)
    if mb is not None:
        d = replace(d, mb=mb)
    return generate(d, dest)


def manifest(repo: Path) -> dict[str, Any]:
    """The generated repository's bench.json."""
    data: dict[str, Any] = json.loads((repo / MANIFEST).read_text(encoding="utf-8"))
    return data


def bump(repo: Path, which: str, rev: str) -> str:
    """Commit a change of `which` ("service_change" or "base_change") that no earlier
    revision had; return the new HEAD. Python and Dockerfiles get a marker line, other
    files a `rev=` / `REV=` line rewritten."""
    rel = manifest(repo)[which]["file"]
    path = repo / rel
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.name == "Dockerfile":
        marker, line = "ENV BENCH_REV=", f"ENV BENCH_REV={rev}"
    elif path.suffix == ".py":
        marker, line = "# bench-rev:", f"# bench-rev: {rev}"
    else:
        marker = "REV=" if any(x.startswith("REV=") for x in lines) else "rev="
        line = f"{marker}{rev}"
    kept = [x for x in lines if not x.startswith(marker)]
    path.write_text("\n".join([*kept, line]) + "\n", encoding="utf-8")
    return commit_all(repo, f"bench: {which} {rev}")


def main() -> None:
    """Generate one repository."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=SIZE_NAMES, default="20")
    parser.add_argument("--dest", type=Path, required=True)
    parser.add_argument("--sleep", type=float, help="seconds of each image's cache-mount step")
    parser.add_argument("--mb", type=int, help="MiB that step writes")
    args = parser.parse_args()
    repo = make(args.size, args.dest.resolve(), sleep=args.sleep, mb=args.mb)
    files = git(repo, "ls-files").count("\n") + 1
    print(f"{repo}: size {args.size}, {files} files, HEAD {git(repo, 'rev-parse', 'HEAD')}")


if __name__ == "__main__":
    main()
