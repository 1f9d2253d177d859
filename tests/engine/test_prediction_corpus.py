"""`buildpilot plan --since REF --json` against BuildKit itself: the prediction corpus.

Each scenario copies the monorepo of `tests/data/corpus/monorepo` into a temporary git
repository, with a nonce layer in the shared base so that no step can be cached from
another scenario (or from an earlier run of this file), and then:

1. BEFORE: commits, and builds every image with plain `docker buildx build` (bases first,
   a dependent gets its base as `--build-context name=docker-image://<repo>:sha256-<hex>`,
   local engine cache only);
2. applies the scenario's change (committed, staged, unstaged or untracked);
3. AFTER: builds every image again the same way and reads, from BuildKit's rawjson stream,
   which Dockerfile steps were cached. That is the truth: an image is affected iff one of
   its Dockerfile steps was not cached;
4. runs `python -m buildpilot plan --since <BEFORE sha> --json` and checks that its
   affected set is exactly BuildKit's, and that no step BuildKit rebuilt was predicted
   cached (steps matched per stage, the last k BuildKit steps against buildpilot's k).

Leaf images only fill the build cache (`--output type=cacheonly`); bases are loaded
untagged and tagged `sha256-<hex>`, and those tags are removed when the scenario ends.
A scenario whose cache another process pruned meanwhile (`docker buildx prune` in another
test) is detected by re-checking its base and run again with a new nonce.

The scenarios run concurrently (`BUILDPILOT_CORPUS_JOBS` at a time, default 3) in one
module fixture; each scenario's two tests then read its outcome. `test_truth[<scenario>]`
checks that BuildKit rebuilt what the scenario claims to exercise (so the corpus cannot
pass vacuously, e.g. with a broken nonce); `test_plan[<scenario>]` checks buildpilot
against BuildKit, whatever the scenario claims.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from buildpilot.progress import ProgressTracker
from buildpilot.rawjson import RawJsonStream
from tests.conftest import BUSYBOX, git, write_tree
from tests.engine.conftest import REGISTRY

CORPUS = Path(__file__).parents[1] / "data" / "corpus" / "monorepo"
PROJECT_ROOT = Path(__file__).parents[2]
JOBS = int(os.environ.get("BUILDPILOT_CORPUS_JOBS", "3"))  # scenarios at a time
IMAGE_PREFIX = "image:"
ATTEMPTS = 3  # a scenario whose build cache another process pruned is run again

Mode = Literal["commit", "staged", "unstaged", "untracked"]

# The whole corpus runs in the first test's setup: more than pytest-timeout's default.
pytestmark = pytest.mark.timeout(1800)


# --------------------------------------------------------------------------- fixture repo


def base_config(registry: str) -> dict[str, Any]:
    """The buildpilot.yaml of the corpus monorepo, as a dict."""
    return {
        "version": 1,
        "registry": registry,
        "images": {
            "base": {"context": "images/base"},
            "api": {
                "context": ".",
                "dockerfile": "services/api/Dockerfile",
                "contexts": {"base": "image:base"},
                "args": {"API_ENV": "prod"},
            },
            "worker": {
                "context": ".",
                "dockerfile": "services/worker/Dockerfile",
                "contexts": {"base": "image:base"},
                "args": {"WORKER_THREADS": "2"},
            },
            "gateway": {
                "context": "services/gateway",
                "contexts": {"base": "image:base"},
                "target": "runtime",
            },
            "web": {"context": "services/web", "contexts": {"base": "image:base"}},
            "admin": {"context": "services/admin", "contexts": {"api": "image:api"}},
        },
    }


class Fixture:
    """One scenario's monorepo: real git on branch main, its own nonce and image names."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nonce = secrets.token_hex(8)
        self.registry = f"{REGISTRY}/corpus-{self.nonce}"
        self.config = base_config(self.registry)
        self.refs: set[str] = set()  # the local tags of its loaded images
        shutil.copytree(CORPUS, root, ignore=shutil.ignore_patterns("__pycache__"))
        base = root / "images/base"
        dockerfile = base / "Dockerfile"
        text = dockerfile.read_text(encoding="utf-8")
        assert "@NONCE@" in text, f"{dockerfile} has lost its nonce placeholder"
        dockerfile.write_text(text.replace("@NONCE@", self.nonce), encoding="utf-8")
        shutil.copyfile(BUSYBOX, base / "busybox")
        (base / "busybox").chmod(0o755)
        (root / ".gitignore").write_text(".buildpilot/\n", encoding="utf-8")
        self.write_config()
        git(root, "init", "-q", "-b", "main")

    # -- changes

    def path(self, rel: str) -> Path:
        return self.root / rel

    def write(self, rel: str, text: str) -> None:
        write_tree(self.root, {rel: text})

    def append(self, rel: str, text: str) -> None:
        with self.path(rel).open("a", encoding="utf-8") as out:
            out.write(text)

    def replace(self, rel: str, old: str, new: str) -> None:
        text = self.path(rel).read_text(encoding="utf-8")
        assert old in text, f"{rel} has no {old!r}: the scenario no longer fits the corpus"
        self.path(rel).write_text(text.replace(old, new, 1), encoding="utf-8")

    def delete(self, rel: str) -> None:
        self.path(rel).unlink()

    def rename(self, rel: str, new: str) -> None:
        self.path(rel).rename(self.path(new))

    def chmod(self, rel: str, mode: int) -> None:
        self.path(rel).chmod(mode)

    def image(self, name: str) -> dict[str, Any]:
        images: dict[str, dict[str, Any]] = self.config["images"]
        return images[name]

    def write_config(self) -> None:
        write_tree(self.root, {"buildpilot.yaml": self.config})

    # -- git

    def commit(self, message: str) -> str:
        git(self.root, "add", "-A")
        git(
            self.root,
            "-c",
            "user.email=t@example.com",
            "-c",
            "user.name=t",
            "commit",
            "-qm",
            message,
        )
        return git(self.root, "rev-parse", "HEAD")

    def record(self, mode: Mode, message: str) -> None:
        """Leave the change as the scenario says: committed, staged, or on disk only."""
        if mode == "commit":
            self.commit(message)
        elif mode == "staged":
            git(self.root, "add", "-A")


# --------------------------------------------------------------------------- truth


@dataclass(frozen=True)
class Step:
    """One Dockerfile step of a build, as BuildKit reported it."""

    stage: str
    index: int
    instruction: str
    cached: bool

    def show(self) -> str:
        return f"[{self.stage} {self.index}] {self.instruction} cached={str(self.cached).lower()}"


@dataclass(frozen=True)
class Build:
    """One image's build: its Dockerfile steps, and for a base its local `sha256-` tag."""

    image: str
    ref: str | None
    steps: tuple[Step, ...]

    @property
    def affected(self) -> bool:
        return any(not step.cached for step in self.steps)

    def by_stage(self) -> dict[str, list[Step]]:
        grouped: dict[str, list[Step]] = {}
        for step in self.steps:
            grouped.setdefault(step.stage, []).append(step)
        return {name: sorted(steps, key=lambda s: s.index) for name, steps in grouped.items()}


def dependencies(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """image -> the images it is built FROM (its `image:` named contexts)."""
    return {
        name: [
            value.removeprefix(IMAGE_PREFIX)
            for value in (image.get("contexts") or {}).values()
            if value.startswith(IMAGE_PREFIX)
        ]
        for name, image in config["images"].items()
    }


def waves(config: Mapping[str, Any]) -> list[list[str]]:
    """Images in build order: each wave depends only on earlier waves."""
    deps = dependencies(config)
    done: set[str] = set()
    ordered: list[list[str]] = []
    while len(done) < len(deps):
        wave = [name for name, needs in deps.items() if name not in done and set(needs) <= done]
        assert wave, f"dependency cycle in {deps}"
        ordered.append(wave)
        done.update(wave)
    return ordered


def build_argv(
    root: Path, image: Mapping[str, Any], pinned: Mapping[str, str], output: Sequence[str]
) -> list[str]:
    """The plain `docker buildx build` of one image (what buildpilot would run, minus cache)."""
    context = root / image.get("context", ".")
    argv = ["docker", "buildx", "build", "--progress=rawjson", "--provenance=false", *output]
    argv += ["--file", str(context / image.get("dockerfile", "Dockerfile"))]
    if image.get("target"):
        argv += ["--target", image["target"]]
    for key, value in (image.get("args") or {}).items():
        argv += ["--build-arg", f"{key}={value}"]
    for key, value in (image.get("contexts") or {}).items():
        if value.startswith(IMAGE_PREFIX):
            ref = f"docker-image://{pinned[value.removeprefix(IMAGE_PREFIX)]}"
        else:
            ref = value if "://" in value else str(root / value)
        argv += ["--build-context", f"{key}={ref}"]
    return [*argv, str(context)]


def steps_of(stderr: str) -> tuple[Step, ...]:
    """The Dockerfile steps of a rawjson stream, with BuildKit's `cached` flags."""
    stream, tracker = RawJsonStream(), ProgressTracker()
    for line in stderr.splitlines():
        for event in stream.feed(line):
            tracker.feed(event)
    stream.close()
    # Concurrent builds sharing a step (the base's busybox layers) can each show it twice,
    # under two vertex digests: one step, rebuilt if either vertex was.
    steps: dict[tuple[str, int, str], bool] = {}
    for s in tracker.timeline().steps:
        if s.stage is not None:
            key = (s.stage, s.index or 0, s.instruction or "")
            steps[key] = steps.get(key, True) and s.cached
    return tuple(Step(*key, cached=cached) for key, cached in steps.items())


def build_image(fixture: Fixture, name: str, pinned: Mapping[str, str], *, load: bool) -> Build:
    """Build one image and read its steps. A base (`load`) goes to the local image store,
    where its dependents find it by a digest tag; other images only fill the build cache."""
    with tempfile.TemporaryDirectory(prefix="corpus-") as tmp:
        metadata = Path(tmp) / "metadata.json"
        output = ["--load"] if load else ["--output", "type=cacheonly"]
        argv = build_argv(fixture.root, fixture.image(name), pinned, output)
        done = subprocess.run(
            [*argv, "--metadata-file", str(metadata)],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if done.returncode != 0:
            tail = "\n".join(text_lines(done.stderr)[-15:])
            raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}):\n{tail}")
        digest = json.loads(metadata.read_text(encoding="utf-8")).get("containerimage.digest")
    if load:
        assert digest, f"{' '.join(argv)} wrote no containerimage.digest"
        ref = f"{fixture.registry}/{name}:{digest.replace(':', '-')}"
        subprocess.run(["docker", "tag", digest, ref], check=True, capture_output=True)
        fixture.refs.add(ref)
        digest = ref
    return Build(image=name, ref=digest, steps=steps_of(done.stderr))


def text_lines(stderr: str) -> list[str]:
    """The plain-text lines of a rawjson stream (BuildKit's error and excerpt)."""
    stream = RawJsonStream()
    for line in stderr.splitlines():
        stream.feed(line)
    stream.close()
    return stream.text_lines


def build_all(fixture: Fixture, pool: ThreadPoolExecutor) -> dict[str, Build]:
    """Every image of the fixture's config, bases first; independent images in parallel."""
    bases = {base for needs in dependencies(fixture.config).values() for base in needs}
    builds: dict[str, Build] = {}
    for wave in waves(fixture.config):
        pinned = {name: build.ref for name, build in builds.items() if build.ref}
        jobs = [pool.submit(build_image, fixture, n, pinned, load=n in bases) for n in wave]
        builds.update((job.result().image, job.result()) for job in jobs)
    return builds


# --------------------------------------------------------------------------- prediction


def run_plan(fixture: Fixture, since: str) -> tuple[dict[str, Any] | None, str]:
    """`buildpilot plan --since <since> --json` as a process: (its JSON, or None; problem)."""
    command = [
        sys.executable,
        "-m",
        "buildpilot",
        "plan",
        "--since",
        since,
        "--json",
        "--config",
        str(fixture.root / "buildpilot.yaml"),
    ]
    pythonpath = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        command,
        cwd=fixture.root,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "PYTHONPATH": pythonpath},
    )
    where = f"`{' '.join(command[1:])}` (cwd {fixture.root})"
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-2000:]
        return None, f"{where} exited {done.returncode}:\n{output}"
    try:
        data = json.loads(done.stdout)
    except ValueError as exc:
        return None, f"{where} printed no JSON ({exc}):\n{done.stdout[-2000:]}"
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        return None, f"{where} printed JSON without an `images` list:\n{done.stdout[-2000:]}"
    return data, ""


@dataclass(frozen=True)
class Predicted:
    """One step of buildpilot's prediction."""

    stage: str
    line: object
    instruction: str
    cached: bool

    def show(self) -> str:
        state = "cached" if self.cached else "rebuilt"
        return f"line {self.line}: {self.instruction} -> predicted {state}"


def predicted_steps(image: Mapping[str, Any]) -> dict[str, list[Predicted]]:
    grouped: dict[str, list[Predicted]] = {}
    for step in image.get("steps") or []:
        predicted = Predicted(
            stage=str(step.get("stage")),
            line=step.get("line"),
            instruction=str(step.get("instruction", "")),
            cached=bool(step.get("cached")),
        )
        grouped.setdefault(predicted.stage, []).append(predicted)
    return grouped


def keyword(instruction: str) -> str:
    return instruction.split(maxsplit=1)[0].upper() if instruction.strip() else ""


def compare_steps(build: Build, image: Mapping[str, Any]) -> list[str]:
    """Unsafe predictions (BuildKit rebuilt, buildpilot said cached) and misalignments."""
    problems: list[str] = []
    predicted = predicted_steps(image)
    for stage, built in build.by_stage().items():
        real = [s for s in built if keyword(s.instruction) != "FROM"]  # FROM <image> is step 1
        if stage not in predicted and all(s.cached for s in real):
            # BuildKit reports vertices it shares with a concurrent build under that build's
            # stage name; cached, they can hide no unsafe prediction. A stage BuildKit rebuilt
            # that buildpilot does not list still fails below.
            continue
        guess = predicted.pop(stage, [])
        if len(real) != len(guess):
            problems.append(
                f"MISALIGNED stage {stage}: BuildKit built {len(real)} steps, "
                f"buildpilot lists {len(guess)}"
            )
        k = min(len(real), len(guess))
        problems += [
            f"UNSAFE {step.show()}: buildpilot predicts no such step"
            for step in real[: len(real) - k]
            if not step.cached
        ]
        for step, guessed in zip(real[len(real) - k :], guess[len(guess) - k :], strict=True):
            if keyword(step.instruction) != keyword(guessed.instruction):
                problems.append(f"MISALIGNED {step.show()} <-> {guessed.show()}")
            elif not step.cached and guessed.cached:
                problems.append(f"UNSAFE {step.show()} <-> {guessed.show()}")
    problems += [
        f"MISALIGNED stage {stage}: buildpilot lists it, BuildKit did not build it"
        for stage in predicted
    ]
    return problems


def compare(truth: Mapping[str, Build], plan: Mapping[str, Any]) -> list[str]:
    """Everything on which buildpilot's plan and BuildKit disagree; empty when they agree."""
    images = {str(i.get("name")): i for i in plan["images"] if isinstance(i, dict)}
    problems = [f"image {name}: missing from the plan" for name in truth if name not in images]
    problems += [
        f"image {name}: in the plan, not in the config" for name in images.keys() - truth.keys()
    ]
    real = {name for name, build in truth.items() if build.affected}
    guess = {name for name, image in images.items() if image.get("affected")}
    if real != guess:
        problems.append(
            f"affected: buildpilot {sorted(guess)} != BuildKit {sorted(real)}"
            f" (missed {sorted(real - guess)}, extra {sorted(guess - real)})"
        )
    for name, build in truth.items():
        if name in images:
            problems += [f"image {name}: {p}" for p in compare_steps(build, images[name])]
    return problems


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    """A change, how it is left in git, and which images it is meant to affect."""

    name: str
    change: Callable[[Fixture], None]
    affects: frozenset[str]
    mode: Mode = "commit"
    doc: str = ""


SCENARIOS: list[Scenario] = []


def scenario(
    name: str, affects: Sequence[str], mode: Mode = "commit"
) -> Callable[[Callable[[Fixture], None]], Scenario]:
    """Register the decorated change as a scenario; its docstring says what it exercises."""

    def wrap(change: Callable[[Fixture], None]) -> Scenario:
        case = Scenario(
            name, change, frozenset(affects), mode, " ".join((change.__doc__ or "").split())
        )
        SCENARIOS.append(case)
        return case

    return wrap


@scenario("docs_edit", [])
def _docs_edit(f: Fixture) -> None:
    """README and docs/ edits: no image reads them."""
    f.append("README.md", "\nMore words.\n")
    f.write("docs/guide.md", "# Guide\n\nRun `make up`, then `make test`.\n")


@scenario("tests_edit", [])
def _tests_edit(f: Fixture) -> None:
    """tests/ is in the root context but excluded by every ignore file and never copied."""
    f.append("tests/smoke_api.py", "TIMEOUT = 5\n")


@scenario("service_code_edit", ["api", "admin"])
def _service_code_edit(f: Fixture) -> None:
    """A file of api's own folder: api from `COPY services/api/`, and admin FROM api."""
    f.append("services/api/app.py", "DEBUG = False\n")


@scenario("shared_lib_edit", ["api", "worker", "admin"])
def _shared_lib_edit(f: Fixture) -> None:
    """libs/common is copied by api and worker only."""
    f.append("libs/common/util.py", "\n\ndef whisper(text: str) -> str:\n    return text.lower()\n")


@scenario("base_context_edit", ["base", "api", "worker", "gateway", "web", "admin"])
def _base_context_edit(f: Fixture) -> None:
    """A file the base copies: the base and every image built on it."""
    f.write("images/base/etc/motd", "welcome to shop, v2\n")


@scenario("requirements_edit", ["api", "admin"])
def _requirements_edit(f: Fixture) -> None:
    """requirements.txt is copied before the code: the miss starts at that COPY."""
    f.append("services/api/requirements.txt", "pydantic==2.6.0\n")


@scenario("ignored_by_own_ignore_file", ["worker"])
def _ignored_by_own_ignore_file(f: Fixture) -> None:
    """libs/common/testdata is excluded by api's Dockerfile.dockerignore, not by the root one."""
    f.write("libs/common/testdata/sample.json", '{"sample": 2}\n')


@scenario("unignore_in_root_dockerignore", ["worker"])
def _unignore_in_root_dockerignore(f: Fixture) -> None:
    """Markdown enters worker's `COPY services/worker/`; api has its own ignore file."""
    f.replace(".dockerignore", "**/*.md\n", "")


@scenario("unignore_in_own_ignore_file", ["api", "admin"])
def _unignore_in_own_ignore_file(f: Fixture) -> None:
    """api's ignore file stops excluding libs/common/testdata, which `COPY libs/common/` reads."""
    f.replace("services/api/Dockerfile.dockerignore", "libs/common/testdata/\n", "")


@scenario("ignore_edit_without_effect", [])
def _ignore_edit_without_effect(f: Fixture) -> None:
    """A new pattern that matches no file any COPY reads."""
    f.append(".dockerignore", "*.tmp\n")
    f.append("services/web/.dockerignore", "*.swp\n")


@scenario("unread_context_files", [])
def _unread_context_files(f: Fixture) -> None:
    """Files in a build context that no COPY/ADD/mount reads."""
    f.append("Makefile", "down:\n\tdocker compose down\n")
    f.append("services/web/notes.md", "Ship the new banner.\n")
    f.write("services/admin/TODO", "audit log\n")


@scenario("dockerfile_comment_only", [])
def _dockerfile_comment_only(f: Fixture) -> None:
    """Comments and blank lines in Dockerfiles that no COPY reads change no step."""
    f.replace(
        "services/gateway/Dockerfile",
        "FROM base AS runtime\n",
        "# shipped\n\nFROM base AS runtime\n",
    )
    f.append("services/web/Dockerfile", "# end of file\n")


@scenario("dockerfile_comment_in_copied_dir", ["worker"])
def _dockerfile_comment_in_copied_dir(f: Fixture) -> None:
    """A comment in worker's Dockerfile, which its own `COPY services/worker/ ./` copies."""
    f.replace("services/worker/Dockerfile", "FROM base\n", "# runtime stage\nFROM base\n")


@scenario("dockerfile_middle_edit", ["api", "admin"])
def _dockerfile_middle_edit(f: Fixture) -> None:
    """An instruction edited mid-file: the miss starts at that line."""
    f.replace("services/api/Dockerfile", "sort requirements.txt", "sort -u requirements.txt")


@scenario("unneeded_new_stage", [])
def _unneeded_new_stage(f: Fixture) -> None:
    """A new stage that the target (runtime) does not need."""
    f.append("services/gateway/Dockerfile", "\nFROM base AS lint\nRUN echo lint > /lint.txt\n")


@scenario("unneeded_stage_input", [])
def _unneeded_stage_input(f: Fixture) -> None:
    """debug.cfg is read only by the debug stage, which target runtime does not need."""
    f.write("services/gateway/debug.cfg", 'log_level = "trace"\n')


@scenario("copy_from_stage_input", ["gateway"])
def _copy_from_stage_input(f: Fixture) -> None:
    """A file of the compile stage, which runtime reads with COPY --from=compile."""
    f.append("services/gateway/src/routes.go", "\nfunc health() {}\n")


@scenario("delete_copied_file", ["api", "admin"])
def _delete_copied_file(f: Fixture) -> None:
    """A file under `COPY services/api/` is deleted."""
    f.delete("services/api/handlers.py")


@scenario("rename_copied_file", ["worker"])
def _rename_copied_file(f: Fixture) -> None:
    """A file under `COPY services/worker/` is renamed."""
    f.rename("services/worker/jobs.py", "services/worker/tasks.py")


@scenario("chmod_copied_file", ["worker"])
def _chmod_copied_file(f: Fixture) -> None:
    """Only the mode of a copied file changes (git tracks the executable bit)."""
    f.chmod("services/worker/main.py", 0o755)


@scenario("untracked_file_in_copied_dir", ["web"], mode="untracked")
def _untracked_file_in_copied_dir(f: Fixture) -> None:
    """A new, untracked file under web's `COPY static/`."""
    f.write("services/web/static/new.css", "h1 { color: red; }\n")


@scenario("ignored_files_on_disk", [], mode="unstaged")
def _ignored_files_on_disk(f: Fixture) -> None:
    """Unstaged and untracked files under COPY'd folders that the ignore files drop: a
    README (`**/*.md`) and a new file under services/api/local/ (api's own ignore file)."""
    f.append("services/worker/README.md", "\nSee docs/.\n")
    f.write("services/api/local/dev.env", "API_ENV=dev\n")


@scenario("staged_edit", ["worker"], mode="staged")
def _staged_edit(f: Fixture) -> None:
    """A staged, uncommitted edit."""
    f.append("services/worker/jobs.py", "RETRIES = 3\n")


@scenario("unstaged_edit", ["gateway"], mode="unstaged")
def _unstaged_edit(f: Fixture) -> None:
    """An unstaged edit of a file only gateway's runtime stage copies."""
    f.append("services/gateway/config.yaml", "timeout: 30s\n")


@scenario("args_change", ["worker"])
def _args_change(f: Fixture) -> None:
    """buildpilot.yaml gives worker another build arg: the miss starts at a RUN after ARG."""
    f.image("worker")["args"] = {"WORKER_THREADS": "8"}
    f.write_config()


@scenario("target_change", ["gateway"])
def _target_change(f: Fixture) -> None:
    """gateway now ships the debug stage."""
    f.image("gateway")["target"] = "debug"
    f.write_config()


@scenario("bind_mount_source_edit", ["worker"])
def _bind_mount_source_edit(f: Fixture) -> None:
    """db/schema.sql is read only by worker's `RUN --mount=type=bind,source=db/schema.sql`."""
    f.append("db/schema.sql", "CREATE INDEX jobs_id ON jobs (id);\n")


@scenario("glob_copy_new_file", ["web"])
def _glob_copy_new_file(f: Fixture) -> None:
    """A new services/web/faq.txt matches web's `COPY *.txt ./`."""
    f.write("services/web/faq.txt", "Questions.\n")


@scenario("glob_copy_new_ignored_file", [])
def _glob_copy_new_ignored_file(f: Fixture) -> None:
    """A new .draft.txt matches `COPY *.txt` but web's .dockerignore drops it."""
    f.write("services/web/faq.draft.txt", "Questions (draft).\n")


@scenario("env_edit", ["web"])
def _env_edit(f: Fixture) -> None:
    """An ENV edit: no step of its own, the next RUN misses."""
    f.replace("services/web/Dockerfile", "RENDER_MODE=plain", "RENDER_MODE=fancy")


@scenario("two_independent_images", ["web", "gateway"])
def _two_independent_images(f: Fixture) -> None:
    """One commit changing two images that do not depend on each other."""
    f.append("services/web/static/site.css", "h1 { font-weight: bold; }\n")
    f.append("services/gateway/go.sum", "golang.org/x/text v0.14.0 h1:ghi=\n")


@scenario("other_images_context_dir", ["gateway"])
def _other_images_context_dir(f: Fixture) -> None:
    """gateway's own folder is inside api's and worker's context (.), but they never read it."""
    f.write("services/gateway/config.yaml", 'listen: ":8080"\nupstreams: [api, web]\n')


@scenario("dependent_of_dependent", ["admin"])
def _dependent_of_dependent(f: Fixture) -> None:
    """admin's own file: admin only, not the api it is built FROM."""
    f.write("services/admin/admin.txt", "admin console v2\n")


@scenario("edit_and_revert", [])
def _edit_and_revert(f: Fixture) -> None:
    """A commit that changes a copied file and one that restores it: no net change."""
    original = f.path("services/web/index.txt").read_text(encoding="utf-8")
    f.write("services/web/index.txt", "Temporary banner.\n")
    f.commit("banner")
    f.write("services/web/index.txt", original)


# --------------------------------------------------------------------------- running


@dataclass
class Outcome:
    """What one scenario produced."""

    scenario: Scenario
    before: dict[str, Build] = field(default_factory=dict)
    after: dict[str, Build] = field(default_factory=dict)
    plan: dict[str, Any] | None = None
    plan_problem: str = ""
    error: str = ""
    attempt: int = 1  # > 1 when another process pruned BuildKit's cache during an attempt

    def truth(self, names: Iterable[str] | None = None) -> str:
        """BuildKit's AFTER steps of these images (default all), stage by stage."""
        lines = []
        for name in names or self.after:
            build = self.after[name]
            lines.append(f"  {name}: {'AFFECTED' if build.affected else 'all cached'}")
            for steps in build.by_stage().values():
                lines += [f"    {step.show()}" for step in steps]
        return "\n".join(lines)

    def prediction(self, names: Iterable[str]) -> str:
        """buildpilot's prediction for these images."""
        if self.plan is None:
            return "  (no plan)"
        lines = [f"  changed_files: {self.plan.get('changed_files')}"]
        wanted = set(names)
        for image in self.plan["images"]:
            if image.get("name") not in wanted:
                continue
            lines.append(
                f"  {image.get('name')}: {'AFFECTED' if image.get('affected') else 'cached'}"
            )
            lines += [f"    reason: {reason}" for reason in image.get("reasons") or []]
            for stage, steps in predicted_steps(image).items():
                lines += [f"    [{stage}] {step.show()}" for step in steps]
        return "\n".join(lines)


def build_canary(fixture: Fixture) -> bool:
    """Build the scenario's canary, a one-COPY image no image store holds; True if cached.

    `docker buildx prune` (which other engine tests run) drops it, while the cache of an
    image loaded in the image store may survive: built before BEFORE and again after AFTER,
    an uncached canary says the scenario's cache was emptied while it ran."""
    canary = fixture.root.with_name(f"{fixture.root.name}-canary")
    write_tree(
        canary, {"Dockerfile": "FROM scratch\nCOPY canary /canary\n", "canary": fixture.nonce}
    )
    argv = ["docker", "buildx", "build", "--progress=rawjson", "--provenance=false"]
    done = subprocess.run(
        [*argv, "--output", "type=cacheonly", str(canary)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    steps = steps_of(done.stderr)
    return bool(steps) and all(step.cached for step in steps)


def cache_survived(fixture: Fixture, after: Mapping[str, Build]) -> bool:
    """False when something emptied BuildKit's cache while the scenario ran: the nonce layer,
    built BEFORE and never changed, must be cached AFTER, and so must the canary."""
    nonce = [s for s in after["base"].steps if fixture.nonce in s.instruction]
    return bool(nonce) and all(step.cached for step in nonce) and build_canary(fixture)


def run_scenario(case: Scenario, root: Path, pool: ThreadPoolExecutor) -> Outcome:
    """BEFORE, change, AFTER, plan; again with a new nonce if the cache was pruned meanwhile."""
    outcome = Outcome(case)
    for attempt in range(1, ATTEMPTS + 1):
        outcome = Outcome(case, attempt=attempt)
        fixture = Fixture(root / f"attempt-{attempt}")
        try:
            since = fixture.commit("before")
            build_canary(fixture)
            outcome.before = build_all(fixture, pool)
            case.change(fixture)
            fixture.record(case.mode, case.name)
            outcome.after = build_all(fixture, pool)
            if not cache_survived(fixture, outcome.after):
                outcome.error = f"BuildKit's cache was pruned during all {attempt} attempts"
                continue
            outcome.plan, outcome.plan_problem = run_plan(fixture, since)
        except Exception:  # noqa: BLE001 - reported by the scenario's own tests
            outcome.error = traceback.format_exc()
        finally:
            remove_images(fixture.refs)
        return outcome
    return outcome


def remove_images(refs: Iterable[str]) -> None:
    """Best effort: drop the scenario's loaded images (BuildKit's cache stays)."""
    if refs:
        subprocess.run(
            ["docker", "image", "rm", "--force", *refs], capture_output=True, check=False
        )


def selected_scenarios(request: pytest.FixtureRequest) -> list[Scenario]:
    """The scenarios whose tests this session runs (after -k and friends)."""
    names: set[str] = set()
    for item in request.session.items:
        if isinstance(item, pytest.Function) and item.module is request.module:
            case = item.callspec.params.get("case") if hasattr(item, "callspec") else None
            if isinstance(case, Scenario):
                names.add(case.name)
    return [case for case in SCENARIOS if case.name in names]


@pytest.fixture(scope="module")
def corpus(
    engine: None, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Outcome]:
    cases = selected_scenarios(request)
    roots = {case.name: tmp_path_factory.mktemp(case.name) for case in cases}
    lock = threading.Lock()
    outcomes: dict[str, Outcome] = {}
    with ThreadPoolExecutor(max_workers=2 * JOBS) as builds, ThreadPoolExecutor(JOBS) as runs:

        def run(case: Scenario) -> None:
            outcome = run_scenario(case, roots[case.name], builds)
            with lock:
                outcomes[case.name] = outcome

        list(runs.map(run, cases))
    return outcomes


def headline(outcome: Outcome) -> str:
    case = outcome.scenario
    again = f", attempt {outcome.attempt}" if outcome.attempt > 1 else ""
    return f"scenario {case.name} ({case.mode}{again}): {case.doc}"


def checked(corpus: Mapping[str, Outcome], case: Scenario) -> Outcome:
    outcome = corpus[case.name]
    if outcome.error:
        pytest.fail(f"{headline(outcome)}\nthe scenario did not run:\n{outcome.error}")
    return outcome


@pytest.mark.parametrize("case", SCENARIOS, ids=[case.name for case in SCENARIOS])
def test_truth(corpus: Mapping[str, Outcome], case: Scenario) -> None:
    """BuildKit rebuilt what the scenario says it exercises (the corpus is not vacuous)."""
    outcome = checked(corpus, case)
    cold = sorted(name for name, build in outcome.before.items() if not build.affected)
    assert not cold, (
        f"{headline(outcome)}\nBEFORE: {cold} had no step to build: the nonce did not isolate "
        "this scenario from other builds"
    )
    real = {name for name, build in outcome.after.items() if build.affected}
    assert real == case.affects, (
        f"{headline(outcome)}\nBuildKit rebuilt {sorted(real)}, the scenario claims "
        f"{sorted(case.affects)}: fix the scenario, not buildpilot.\nBuildKit AFTER:\n"
        f"{outcome.truth()}"
    )


@pytest.mark.parametrize("case", SCENARIOS, ids=[case.name for case in SCENARIOS])
def test_plan(corpus: Mapping[str, Outcome], case: Scenario) -> None:
    """`buildpilot plan --json` predicts exactly BuildKit's affected images, and safely."""
    outcome = checked(corpus, case)
    if outcome.plan is None:
        pytest.fail(f"{headline(outcome)}\n{outcome.plan_problem}")
    problems = compare(outcome.after, outcome.plan)
    # Show both sides of every image that is named in a problem (all of them if none is).
    names = [name for name in outcome.after if any(f"image {name}:" in p for p in problems)]
    if any(p.startswith("affected:") for p in problems):
        real = {n for n, b in outcome.after.items() if b.affected}
        guess = {str(i.get("name")) for i in outcome.plan["images"] if i.get("affected")}
        names += [n for n in outcome.after if n in real ^ guess and n not in names]
    assert not problems, (
        f"{headline(outcome)}\n"
        + "\n".join(f"- {p}" for p in problems)
        + f"\nBuildKit AFTER:\n{outcome.truth(names)}"
        + f"\nbuildpilot plan:\n{outcome.prediction(names)}"
    )
