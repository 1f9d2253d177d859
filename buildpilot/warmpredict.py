"""The forecast of `changes.predict`, made from a planning snapshot (`planinputs.py`).

Only for a change that leaves the config, every Dockerfile and every ignore file as they
are (no snapshot guard among the changed files): each image's old and new side are then the
same, so the only question per step is the one `changes` asks last, whether a changed file
that the step reads, or a stage or image it builds on, misses. The snapshot holds the rest,
worked out by the full path's own code. Each function here names the `changes` code it
follows; `planinputs.remember` writes no snapshot on which the two disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from buildpilot.prediction import ImagePrediction, Prediction, Reason, StepPrediction

ReasonFor = Callable[[str, str], Reason]  # (file, detail) -> the reason of one step or stage


def predict(
    snapshot: Mapping[str, Any],
    order: Sequence[str],
    *,
    since: str,
    base: str,
    changed: frozenset[str],
) -> Prediction:
    """Forecast every image of `order` (bases first) for the files changed since `base`."""
    images: dict[str, ImagePrediction] = {}
    top = Path(snapshot["top"])
    under = _ChangedUnder(changed)
    for name in order:
        images[name] = _Image(snapshot["images"][name], top, under, images).predict(name)
    return Prediction(since=since, base=base, changed_files=tuple(sorted(changed)), images=images)


class _Image:
    """changes._predict_image and _StagePredictor, with the old side equal to the new."""

    def __init__(
        self,
        image: Mapping[str, Any],
        top: Path,
        changed_under: _ChangedUnder,
        done: Mapping[str, ImagePrediction],
    ) -> None:
        self.image = image
        self.top = top
        self.changed_under = changed_under
        self.done = done
        self.dockerfile: str = image["dockerfile"]
        self.stage_reasons: dict[int, list[Reason]] = {}

    def predict(self, name: str) -> ImagePrediction:
        steps: list[StepPrediction] = []
        reasons: list[Reason] = []
        for stage in self.image["stages"]:
            stage_steps, stage_reasons = self._stage(stage)
            steps.extend(stage_steps)
            reasons.extend(r for r in stage_reasons if r not in reasons)
        if not reasons:  # every step cached: the config-only difference, worked out before
            reasons = [Reason(**reason) for reason in self.image["config_only"]]
        return ImagePrediction(
            name=name, affected=bool(reasons), reasons=tuple(reasons), steps=tuple(steps)
        )

    def _stage(self, stage: Mapping[str, Any]) -> tuple[list[StepPrediction], list[Reason]]:
        """_StagePredictor.stage."""
        here: str = stage["name"]
        reasons = self._from_reasons(stage)
        miss_at = 0 if reasons else None
        if miss_at is None:
            for position, step in enumerate(stage["steps"]):
                found = self._step_reasons(here, step)
                if found:
                    reasons, miss_at = found, position
                    break
        self.stage_reasons[stage["index"]] = reasons
        steps = [
            StepPrediction(
                stage=here,
                line=step["line"],
                instruction=step["text"],
                cached=miss_at is None or position < miss_at,
            )
            for position, step in enumerate(stage["steps"])
        ]
        return steps, reasons

    def _from_reasons(self, stage: Mapping[str, Any]) -> list[Reason]:
        """_StagePredictor._from_reasons: the FROM is the same on both sides."""

        def reason(file: str, detail: str) -> Reason:
            return Reason(
                file, self.dockerfile, stage["line"], stage["from"], stage["name"], detail
            )

        parent = self.stage_reasons.get(stage["parent"]) if stage["parent"] is not None else None
        if parent:
            return [reason(r.file, f"stage {parent[0].stage} rebuilt") for r in parent[:5]]
        if stage["named"]:
            return self._image_reasons(stage["image"], reason)
        return []

    def _step_reasons(self, here: str, step: Mapping[str, Any]) -> list[Reason]:
        """_StagePredictor._step_reasons: the instruction is the same on both sides."""

        def reason(file: str, detail: str) -> Reason:
            return Reason(file, self.dockerfile, step["line"], step["text"], here, detail)

        if step["unpredictable"]:
            return [reason(self.dockerfile, f"cannot predict: {step['unpredictable']}")]
        found: list[Reason] = []
        for source in step["sources"]:
            found.extend(self._source_reasons(source, reason))
        return found

    def _source_reasons(self, source: Mapping[str, Any], reason: ReasonFor) -> list[Reason]:
        """_StagePredictor._source_reasons and _named_reasons."""
        kind = source["kind"]
        if kind == "context":
            return self._files_read(self.image["context"], source["paths"], self.image, reason)
        if kind == "stage":
            parent = self.stage_reasons.get(source["stage"]) or []
            return [reason(r.file, f"stage {r.stage} rebuilt") for r in parent[:5]]
        if kind == "image":
            return self._image_reasons(source["image"], reason)
        if kind == "dir":
            return self._files_read(source["dir"], source["paths"], source, reason)
        return [reason(source["file"], source["detail"])]  # a remote source

    def _image_reasons(self, image: str | None, reason: ReasonFor) -> list[Reason]:
        """_StagePredictor._image_context_reasons."""
        if image is None or image not in self.done or not self.done[image].affected:
            return []
        return [reason(r.file, f"image {image} rebuilt") for r in self.done[image].reasons[:5]]

    def _files_read(
        self,
        directory: str,
        patterns: Sequence[str],
        ignore: Mapping[str, Any],
        reason: ReasonFor,
    ) -> list[Reason]:
        """_StagePredictor._files_read, with the ignore file the same on both sides."""
        changed = self.changed_under(directory)
        if not changed:
            return []
        from buildpilot.ignore import IgnoreMatcher, source_reads  # noqa: PLC0415 - when needed

        matcher = IgnoreMatcher.from_text(ignore["ignore"]) if ignore["ignore"] else None
        found = []
        for rel in changed:
            if not any(source_reads(p, rel) for p in patterns):
                continue
            if matcher is not None and matcher.ignored(rel):
                continue
            path = self.top / directory / rel
            file = path.resolve().relative_to(self.top).as_posix()
            found.append(reason(file, "deleted" if not path.exists() else "changed"))
        return found


class _ChangedUnder:
    """_Sides.changed_under: changed files under a directory (top-relative), relative to it;
    each directory's list made once."""

    def __init__(self, changed: frozenset[str]) -> None:
        self.changed = changed
        self.found: dict[str, list[str]] = {}

    def __call__(self, directory: str) -> list[str]:
        found = self.found.get(directory)
        if found is None:
            prefix = directory + "/"
            found = self.found[directory] = (
                sorted(self.changed)
                if directory == "."
                else sorted(f[len(prefix) :] for f in self.changed if f.startswith(prefix))
            )
        return found
