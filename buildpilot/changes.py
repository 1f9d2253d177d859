"""Pure prediction: which images, and which Dockerfile steps, a set of changed files invalidates.

BuildKit's cache key of a step is its instruction (with the args and env it sees), the key of
the step before it, and the content of what it reads. So per stage the first step whose
instruction, inputs or parent changed is the first miss, and every later step misses too. A
stage that starts FROM another stage, or reads one through `COPY --from`, misses when that
stage does; an image misses from its FROM when an image it is built on misses. Where the
inputs cannot be known before the build (a URL, a git source, an unset variable) the step is
counted as a miss: a prediction may be too cautious, never too hopeful.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from buildpilot.config import Config, ImageConfig, Project, parse_config
from buildpilot.dockerfile import DockerfileModel, Instruction, Source, Stage, parse_dockerfile
from buildpilot.errors import BuildpilotError
from buildpilot.ignore import DOCKERIGNORE, IgnoreMatcher, ignore_file_for, source_reads
from buildpilot.mirrors import mirror_inputs
from buildpilot.prediction import ImagePrediction, Prediction, Reason, StepPrediction, reason_line
from buildpilot.results import PredictedStep, PredictionCheck, StepTiming

__all__ = [  # the records live in prediction.py; the build path imports them from here
    "ImagePrediction",
    "Prediction",
    "Reason",
    "StepPrediction",
    "check_against",
    "image_model",
    "meta_reasons",
    "predict",
    "reason_line",
    "short_instruction",
    "stage_name",
]

ReadAtBase = Callable[[str], str | None]  # repo-relative path -> text at the merge base


@dataclass
class _Sides:
    """The repository now and at the merge base, read lazily."""

    project: Project
    top: Path  # the git top level; changed paths are relative to it
    changed: frozenset[str]
    read_at_base: ReadAtBase
    old_config: Config | None = None
    old_config_error: str | None = None
    _ignores: dict[tuple[Path, Path | None], tuple[IgnoreMatcher, IgnoreMatcher, bool]] = field(
        default_factory=dict
    )
    _rels: dict[Path, str] = field(default_factory=dict)

    def rel(self, path: Path) -> str:
        """`path` relative to the repository top level, `/`-separated."""
        found = self._rels.get(path)
        if found is None:
            found = self._rels[path] = self.project.real_path(path).relative_to(self.top).as_posix()
        return found

    def changed_under(self, directory: Path) -> list[str]:
        """Changed files under `directory`, relative to it."""
        prefix = self.rel(directory)
        if prefix == ".":
            return sorted(self.changed)
        return sorted(f[len(prefix) + 1 :] for f in self.changed if f.startswith(prefix + "/"))

    def ignores(
        self, context: Path, dockerfile: Path | None
    ) -> tuple[IgnoreMatcher, IgnoreMatcher, bool]:
        """The ignore rules now and at the base, and whether they may differ. Named
        contexts (`dockerfile` None) read only their own `.dockerignore`, as BuildKit does.

        The rules at the base are those of the first ignore file a build read then: when any
        file a build could read was added, edited or deleted since, the one that applied at
        the base may be another than the one that applies now, or none.
        """
        key = (context, dockerfile)
        if key not in self._ignores:
            now = IgnoreMatcher.from_file(ignore_file_for(context, dockerfile))
            candidates = [context / DOCKERIGNORE]
            if dockerfile is not None:
                candidates.insert(0, dockerfile.with_name(dockerfile.name + DOCKERIGNORE))
            if any(self._rel_or_none(c) in self.changed for c in candidates):
                old = IgnoreMatcher.from_text(self._text_at_base(candidates) or "")
                self._ignores[key] = (now, old, True)
            else:
                self._ignores[key] = (now, now, False)
        return self._ignores[key]

    def _text_at_base(self, candidates: Sequence[Path]) -> str | None:
        """The text of the first of `candidates` that was a file at the base."""
        for candidate in candidates:
            rel = self._rel_or_none(candidate)
            if rel is not None and rel in self.changed:
                text = self.read_at_base(rel)
            elif candidate.is_file():  # unchanged: as it is now
                text = candidate.read_bytes().decode("utf-8", "surrogateescape")
            else:
                text = None
            if text is not None:
                return text
        return None

    def _rel_or_none(self, path: Path) -> str | None:
        try:
            return self.rel(path)
        except ValueError:  # outside the repository: git reports no change there
            return None


def predict(
    project: Project,
    order: Sequence[str],
    *,
    top: Path,
    since: str,
    base: str,
    changed: Iterable[str],
    read_at_base: ReadAtBase,
) -> Prediction:
    """Forecast every image of `order` (bases first) for the files changed since `base`."""
    sides = _Sides(
        project=project, top=top.resolve(), changed=frozenset(changed), read_at_base=read_at_base
    )
    config_rel = sides.rel(project.path)
    if config_rel in sides.changed:
        text = read_at_base(config_rel)
        try:
            sides.old_config = parse_config(text, project.path) if text is not None else None
            if text is None:
                sides.old_config_error = "the config is new"
        except BuildpilotError as exc:
            sides.old_config_error = (
                f"the config at {since} is invalid: {exc.message.splitlines()[0]}"
            )
    else:
        sides.old_config = project.config
    images: dict[str, ImagePrediction] = {}
    for name in order:
        images[name] = _predict_image(sides, name, images)
    return Prediction(
        since=since, base=base, changed_files=tuple(sorted(sides.changed)), images=images
    )


def _predict_image(
    sides: _Sides, name: str, done: Mapping[str, ImagePrediction]
) -> ImagePrediction:
    project = sides.project
    image = project.image(name)
    dockerfile_rel = sides.rel(project.dockerfile(name))
    model, args = image_model(project, name, dockerfile_rel)
    stages = model.needed_stages(image.target)
    whole = _whole_image_reason(sides, name, image, dockerfile_rel, stages[0] if stages else None)
    old_model = None if whole else _old_model(sides, name, model, args, dockerfile_rel)
    predictor = _StagePredictor(
        sides,
        name=name,
        image=image,
        model=model,
        old_model=old_model,
        dockerfile_rel=dockerfile_rel,
        done=done,
    )
    steps: list[StepPrediction] = []
    reasons: list[Reason] = [whole] if whole else []
    for stage in stages:
        stage_steps, stage_reasons = predictor.stage(stage, forced=whole)
        steps.extend(stage_steps)
        reasons.extend(r for r in stage_reasons if r not in reasons)
    if not reasons:  # every step cached: the image may still differ in its config alone
        reasons = _config_only_reasons(sides, name, stages, old_model, dockerfile_rel)
    return ImagePrediction(
        name=name, affected=bool(reasons), reasons=tuple(reasons), steps=tuple(steps)
    )


def image_model(project: Project, name: str, path: str) -> tuple[DockerfileModel, dict[str, str]]:
    """The Dockerfile of image `name` as its build reads it, named `path` in errors: parsed
    with the image's build args and the mirror args it declares (build args too); and those
    args."""
    image = project.image(name)
    text = project.dockerfile(name).read_text(encoding="utf-8")
    contexts = tuple(image.contexts)
    model = parse_dockerfile(text, path=path, build_args=image.args, named_contexts=contexts)
    args = _effective_args(project, name, model)
    if args != image.args:
        model = parse_dockerfile(text, path=path, build_args=args, named_contexts=contexts)
    return model, args


def _config_only_reasons(
    sides: _Sides,
    name: str,
    stages: Sequence[Stage],
    old_model: DockerfileModel | None,
    dockerfile_rel: str,
) -> list[Reason]:
    """Changes that BuildKit rebuilds no step for but that change the image's config
    (CMD, ENV, LABEL, EXPOSE, USER, … or the config's labels): the image must be made
    again, from cache, so that it carries them."""
    image = sides.project.image(name)
    assert sides.old_config is not None  # noqa: S101 - only called without a whole-image reason
    old = sides.old_config.images[name]
    if old.labels != image.labels:
        first = stages[-1] if stages else None
        return [
            Reason(
                sides.rel(sides.project.path),
                dockerfile_rel,
                first.line if first else 1,
                f"FROM {first.base}" if first else "FROM",
                stage_name(first) if first else "-",
                f"config changed: images.{name}.labels (image config only; every step cached)",
            )
        ]
    return [] if old_model is None else meta_reasons(stages, old_model, dockerfile_rel)


def meta_reasons(
    stages: Sequence[Stage], old_model: DockerfileModel, dockerfile_rel: str
) -> list[Reason]:
    """The first instruction that makes no step but shapes the image's config (CMD, ENV,
    LABEL, …) and differs from `old_model`'s, as a reason; none when all are alike."""
    for stage in stages:
        old_stage = old_model.stage(stage.name) if stage.name else old_model.stage(str(stage.index))
        now_meta = _meta(stage)
        old_texts = [text for _, text in _meta(old_stage)] if old_stage else []
        if [text for _, text in now_meta] != old_texts:
            differs = [
                (line, text)
                for index, (line, text) in enumerate(now_meta)
                if index >= len(old_texts) or old_texts[index] != text
            ]
            line, text = differs[0] if differs else (stage.line, f"FROM {stage.base}")
            return [
                Reason(
                    dockerfile_rel,
                    dockerfile_rel,
                    line,
                    text,
                    stage_name(stage),
                    "image config changed (every step cached)",
                )
            ]
    return []


def _meta(stage: Stage) -> list[tuple[int, str]]:
    """(line, text) of the instructions that make no step but shape the image's config."""
    return [
        (i.line, short_instruction(i.original))
        for i in stage.instructions
        if not i.step and i.cmd not in ("ARG", "ONBUILD")
    ]


def _whole_image_reason(
    sides: _Sides, name: str, image: ImageConfig, dockerfile_rel: str, first: Stage | None
) -> Reason | None:
    """A reason that rebuilds the image from its first step, or None."""
    config_rel = sides.rel(sides.project.path)

    def reason(detail: str) -> Reason:
        stage = stage_name(first) if first else "-"
        line = first.line if first else 1
        instruction = f"FROM {first.base}" if first else "FROM"
        return Reason(config_rel, dockerfile_rel, line, instruction, stage, detail)

    if sides.old_config is None:
        return reason(sides.old_config_error or "the config is new")
    old = sides.old_config.images.get(name)
    if old is None:
        return reason(f"image '{name}' is new in the config")
    for key in ("context", "dockerfile", "platforms"):
        if getattr(old, key) != getattr(image, key):
            return reason(f"config changed: images.{name}.{key}")
    plain_now = {k: v for k, v in image.contexts.items() if k not in image.image_contexts()}
    plain_old = {k: v for k, v in old.contexts.items() if k not in old.image_contexts()}
    if plain_now != plain_old or old.image_contexts().keys() != image.image_contexts().keys():
        return reason(f"config changed: images.{name}.contexts")
    return None


def _effective_args(project: Project, name: str, model: DockerfileModel) -> dict[str, str]:
    """The build args an image's build gets: its own, and the mirrors it declares an ARG for."""
    return {**mirror_inputs(project, name, model).args, **project.image(name).args}


def _old_model(
    sides: _Sides, name: str, model: DockerfileModel, args: Mapping[str, str], dockerfile_rel: str
) -> DockerfileModel | None:
    """The Dockerfile at the base, read with the build args the config gave it then."""
    assert sides.old_config is not None  # noqa: S101 - _whole_image_reason returned None
    old = sides.old_config.images[name]
    old_args = _effective_args(
        Project(path=sides.project.path, config=sides.old_config), name, model
    )
    if dockerfile_rel not in sides.changed and old_args == args:
        return model
    text = sides.read_at_base(dockerfile_rel) if dockerfile_rel in sides.changed else None
    if dockerfile_rel in sides.changed and text is None:
        return None
    try:
        return parse_dockerfile(
            text
            if text is not None
            else (sides.project.dockerfile(name).read_text(encoding="utf-8")),
            path=dockerfile_rel,
            build_args=old_args,
            named_contexts=tuple(old.contexts),
        )
    except BuildpilotError:
        return None  # unreadable then: every step counts as new


class _StagePredictor:
    """Walks the stages of one image, remembering which stages miss."""

    def __init__(
        self,
        sides: _Sides,
        *,
        name: str,
        image: ImageConfig,
        model: DockerfileModel,
        old_model: DockerfileModel | None,
        dockerfile_rel: str,
        done: Mapping[str, ImagePrediction],
    ) -> None:
        self.sides = sides
        self.name = name
        self.image = image
        self.model = model
        self.old_model = old_model
        assert sides.old_config is not None or old_model is None  # noqa: S101
        old_target = sides.old_config.images[name].target if sides.old_config is not None else None
        self.old_built = _built_stages(old_model, old_target)
        self.dockerfile = dockerfile_rel
        self.done = done
        self.stage_reasons: dict[
            int, list[Reason]
        ] = {}  # stage index -> why it misses (empty: cached)
        self.context = sides.project.context_dir(name)
        self.changed_in_context = sides.changed_under(self.context)

    def stage(
        self, stage: Stage, *, forced: Reason | None
    ) -> tuple[list[StepPrediction], list[Reason]]:
        """Predict the steps of `stage`; return them and the reasons for its first miss.

        `forced` is a reason that rebuilds the whole image, from its first step.
        """
        instructions = [i for i in stage.instructions if i.step]
        reasons = [forced] if forced else self._from_reasons(stage)
        miss_at = 0 if reasons else None
        if miss_at is None:
            old_steps = self._old_steps(stage)
            for position, instruction in enumerate(instructions):
                found = self._step_reasons(stage, instruction, old_steps, position)
                if found:
                    reasons, miss_at = found, position
                    break
        self.stage_reasons[stage.index] = reasons
        steps = [
            StepPrediction(
                stage=stage_name(stage),
                line=i.line,
                instruction=short_instruction(i.original),
                cached=miss_at is None or position < miss_at,
            )
            for position, i in enumerate(instructions)
        ]
        return steps, reasons

    def _from_reasons(self, stage: Stage) -> list[Reason]:
        """Reasons the whole stage misses because of what it starts from."""
        here = stage_name(stage)
        instruction = f"FROM {stage.base}"

        def reason(file: str, detail: str) -> Reason:
            return Reason(file, self.dockerfile, stage.line, instruction, here, detail)

        old = self._old_stage(stage)
        if old is None:
            return [reason(self.dockerfile, "new stage, or one the old target did not build")]
        if old.key != stage.key:
            return [reason(self.dockerfile, "FROM changed")]
        if stage.base_kind == "stage" and stage.base_stage is not None:
            parent = self.stage_reasons.get(stage.base_stage)
            if parent:
                return [reason(r.file, f"stage {parent[0].stage} rebuilt") for r in parent[:5]]
        if stage.base_kind == "named":
            return self._image_context_reasons(stage.base, reason)
        return []

    def _image_context_reasons(
        self, context_name: str, reason: Callable[[str, str], Reason]
    ) -> list[Reason]:
        image = self.image.image_contexts().get(context_name)
        if image is None or image not in self.done or not self.done[image].affected:
            return []
        return [reason(r.file, f"image {image} rebuilt") for r in self.done[image].reasons[:5]]

    def _old_stage(self, stage: Stage) -> Stage | None:
        """The stage as the old side built it; None when the old target did not build it."""
        if self.old_model is None:
            return None
        old = (
            stage
            if self.old_model is self.model
            else (
                self.old_model.stage(stage.name)
                if stage.name
                else self.old_model.stage(str(stage.index))
            )
        )
        if old is None or old.index not in self.old_built:
            return None
        return old

    def _old_steps(self, stage: Stage) -> list[Instruction] | None:
        old = self._old_stage(stage)
        return None if old is None else [i for i in old.instructions if i.step]

    def _step_reasons(
        self,
        stage: Stage,
        instruction: Instruction,
        old_steps: list[Instruction] | None,
        position: int,
    ) -> list[Reason]:
        here = stage_name(stage)
        text = short_instruction(instruction.original)

        def reason(file: str, detail: str) -> Reason:
            return Reason(file, self.dockerfile, instruction.line, text, here, detail)

        if old_steps is None or position >= len(old_steps):
            return [reason(self.dockerfile, "new instruction")]
        if old_steps[position].key != instruction.key:
            return [reason(self.dockerfile, "instruction changed")]
        if instruction.unpredictable:
            return [reason(self.dockerfile, f"cannot predict: {instruction.unpredictable}")]
        found: list[Reason] = []
        for source in instruction.sources:
            found.extend(self._source_reasons(source, reason))
        return found

    def _source_reasons(self, source: Source, reason: Callable[[str, str], Reason]) -> list[Reason]:
        if source.kind == "context":
            return self._files_read(
                self.context, self.changed_in_context, source.paths, reason, main=True
            )
        if source.kind == "stage" and source.ref is not None:
            read = self.model.stage(source.ref)
            parent = self.stage_reasons.get(read.index) if read else None
            return [reason(r.file, f"stage {r.stage} rebuilt") for r in (parent or [])[:5]]
        if source.kind == "named" and source.ref is not None:
            return self._named_reasons(source.ref, source.paths, reason)
        if source.kind in ("url", "git"):
            return [reason(source.ref or "-", f"cannot predict: {source.kind} source")]
        return []

    def _named_reasons(
        self, name: str, paths: Sequence[str], reason: Callable[[str, str], Reason]
    ) -> list[Reason]:
        """A named context: another image of the config, a remote ref, or a local directory."""
        value = self.image.contexts.get(name, "")
        if value.startswith("image:"):
            return self._image_context_reasons(name, reason)
        if "://" in value:
            return []
        directory = self.sides.project.real_path(self.sides.project.root / value)
        changed = self.sides.changed_under(directory)
        return self._files_read(directory, changed, paths, reason, main=False)

    def _files_read(
        self,
        directory: Path,
        changed: list[str],
        patterns: Sequence[str],
        reason: Callable[[str, str], Reason],
        *,
        main: bool,
    ) -> list[Reason]:
        dockerfile = self.sides.project.dockerfile(self.name) if main else None
        now, old, differ = self.sides.ignores(directory, dockerfile)
        found = []
        for rel in changed:
            if not any(source_reads(p, rel) for p in patterns):
                continue
            if now.ignored(rel) and old.ignored(rel):
                continue
            file = self.sides.rel(directory / rel)
            found.append(reason(file, "deleted" if not (directory / rel).exists() else "changed"))
        if differ:
            found.extend(self._ignore_flips(directory, patterns, now, old, reason))
        return found

    def _ignore_flips(
        self,
        directory: Path,
        patterns: Sequence[str],
        now: IgnoreMatcher,
        old: IgnoreMatcher,
        reason: Callable[[str, str], Reason],
    ) -> list[Reason]:
        """Unchanged files that the edited ignore file now includes or excludes."""
        found = []
        for path in _files_under(directory):
            rel = path.relative_to(directory).as_posix()
            if now.ignored(rel) != old.ignored(rel) and any(source_reads(p, rel) for p in patterns):
                detail = "now excluded by the ignore file" if now.ignored(rel) else "now included"
                found.append(reason(self.sides.rel(path), detail))
        return found


def _built_stages(model: DockerfileModel | None, target: str | None) -> set[int]:
    """Indexes of the stages a build of `target` ran (none when it could not be built)."""
    if model is None:
        return set()
    try:
        return {stage.index for stage in model.needed_stages(target)}
    except BuildpilotError:
        return set()


def _files_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and ".git" not in p.parts)


def stage_name(stage: Stage) -> str:
    """A stage's name, or `stage-<index>` for an unnamed one."""
    return stage.name or f"stage-{stage.index}"


def short_instruction(text: str, width: int = 120) -> str:
    """An instruction on one line, cut to `width` characters with `…`."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def check_against(
    forecast: ImagePrediction, since: str, steps: Sequence[StepTiming] | None
) -> PredictionCheck:
    """Put the forecast beside BuildKit's cached flags (None: the image was not built).

    BuildKit numbers a stage's vertices from its FROM when that is an image, so within a stage
    the last k vertices are its k RUN/COPY/ADD/WORKDIR steps. A single-stage build carries no
    stage name; its steps are matched to the one predicted stage.
    """
    actual: dict[str, list[bool]] = {}
    for step in steps or ():
        if step.stage is not None:
            actual.setdefault(step.stage, []).append(step.cached)
    predicted_stages = list(dict.fromkeys(s.stage for s in forecast.steps))
    if len(actual) == 1 and len(predicted_stages) == 1:
        actual = {predicted_stages[0]: next(iter(actual.values()))}
    rows: list[PredictedStep] = []
    for stage in predicted_stages:
        mine = [s for s in forecast.steps if s.stage == stage]
        flags = actual.get(stage, [])[-len(mine) :] if steps is not None else []
        aligned: list[bool | None] = [None] * (len(mine) - len(flags)) + list(flags)
        rows.extend(
            PredictedStep(
                stage=s.stage,
                line=s.line,
                instruction=s.instruction,
                predicted_cached=s.cached,
                actual_cached=flag,
            )
            for s, flag in zip(mine, aligned, strict=True)
        )
    return PredictionCheck(
        since=since,
        affected=forecast.affected,
        reasons=[reason_line(r) for r in forecast.reasons],
        steps=rows,
    )
