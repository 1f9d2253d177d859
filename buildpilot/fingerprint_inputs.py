"""What goes into an image's fingerprint from the config and its Dockerfile (`fingerprint.py`
adds the files): the spec the full path hashes at once and the warm path keeps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from buildpilot.config import Project
from buildpilot.dockerfile import DockerfileModel
from buildpilot.fingerprint import VERSION, FileIndex, Fingerprint, ReadSpec, Spec, compute
from buildpilot.mirrors import mirror_inputs


def context_dirs(project: Project, order: Sequence[str]) -> list[Path]:
    """Every local directory the images of `order` read: contexts and local named contexts."""
    dirs = []
    for name in order:
        dirs.append(project.context_dir(name))
        for value in project.image(name).contexts.values():
            if not value.startswith("image:") and "://" not in value:
                dirs.append((project.root / value).resolve())
    return dirs


def fingerprints(
    project: Project, order: Sequence[str], index: FileIndex
) -> dict[str, Fingerprint]:
    """The fingerprint of every image of `order` (bases first)."""
    result: dict[str, Fingerprint] = {}
    for name in order:
        result[name] = compute(spec(project, name), index, result)
    return result


def spec(project: Project, name: str) -> Spec:
    """Everything image `name`'s fingerprint covers but the content of the files it reads."""
    image = project.image(name)
    model = project.dockerfile_model(name)
    dependencies = image.dependencies()
    instructions, reads, unknown = _inputs(model, image.target)
    if unknown:
        return Spec(dependencies=dependencies, unknown=unknown, payload={}, reads=[])
    dockerfile = str(project.dockerfile(name))
    read_specs = []
    for context_name, patterns in reads.items():
        directory = _directory(project, name, context_name)
        if directory is not None:
            read_specs.append(
                ReadSpec(
                    context=context_name,
                    directory=str(directory),
                    patterns=sorted(patterns),
                    dockerfile=dockerfile if context_name == "" else None,
                )
            )
    mirrors = mirror_inputs(project, name, model)  # build args like any other
    payload = {
        "version": VERSION,
        "instructions": instructions,
        "args": dict(sorted({**mirrors.args, **image.args}.items())),
        "target": image.target,
        "platforms": image.platforms,
        "labels": dict(sorted(image.labels.items())),
        "contexts": dict(sorted(image.contexts.items())),
        "secrets": sorted([*(s.id for s in image.secrets), *mirrors.secret_ids]),
        "ssh": sorted(s.split("=", 1)[0] for s in image.ssh),
        "attestations": project.config.attestations,
    }
    return Spec(dependencies=dependencies, unknown=None, payload=payload, reads=read_specs)


def _inputs(
    model: DockerfileModel, target: str | None
) -> tuple[list[str], dict[str, set[str]], str | None]:
    """Instruction texts, the paths read per context ("" = the build context), and why not."""
    instructions: list[str] = []
    reads: dict[str, set[str]] = {}
    for stage in model.needed_stages(target):
        instructions.append(stage.key)
        for instruction in stage.instructions:
            instructions.append(instruction.key or " ".join(instruction.original.split()))
            if instruction.unpredictable:
                return [], {}, instruction.unpredictable
            for source in instruction.sources:
                if source.kind == "context":
                    reads.setdefault("", set()).update(source.paths)
                elif source.kind == "named" and source.ref is not None:
                    reads.setdefault(source.ref, set()).update(source.paths)
                elif source.kind in ("url", "git"):
                    return [], {}, f"{instruction.cmd} {source.ref}: a remote source"
    return instructions, reads, None


def _directory(project: Project, name: str, context_name: str) -> Path | None:
    """The local directory behind a context name; None for image and remote contexts."""
    if context_name == "":
        return project.context_dir(name)
    value = project.image(name).contexts.get(context_name, "")
    if value.startswith("image:") or "://" in value or not value:
        return None  # an image context is covered by that image's fingerprint
    return (project.root / value).resolve()
