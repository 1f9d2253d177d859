"""Package mirrors and the host's CA bundle, handed only to the builds that ask for them.

The `mirrors:` section of the config names site-specific things a Dockerfile should not:
pip's index, apt's mirror, npm's registry, the CA bundle of a TLS-intercepting proxy. An
image gets a mirror as a build arg only when its Dockerfile declares that ARG (globally or
in a stage its target builds), and the CA bundle as the secret `ca_bundle` only when a RUN
of those stages mounts it. Images that do not ask get nothing, so their cache keys do not
change when a mirror does.
"""

from __future__ import annotations

import json
import posixpath
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from buildpilot.config import Mirrors, Project
from buildpilot.dockerfile import DockerfileModel, Instruction

CA_BUNDLE_ID = "ca_bundle"
# Mirrors field -> the build arg it becomes.
MIRROR_ARGS: Mapping[str, str] = {
    "pip_index_url": "PIP_INDEX_URL",
    "pip_extra_index_url": "PIP_EXTRA_INDEX_URL",
    "apt_mirror": "APT_MIRROR",
    "npm_registry": "NPM_CONFIG_REGISTRY",
}


@dataclass(frozen=True)
class MirrorInputs:
    """What one image gets from `mirrors:`: build args, and buildx `--secret` values."""

    args: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    secret_ids: tuple[str, ...] = ()


NONE = MirrorInputs()


def configured(mirrors: Mirrors) -> bool:
    """Whether any mirror or the CA bundle is set."""
    return any(value is not None for value in mirrors.model_dump().values())


def mirror_inputs(
    project: Project, name: str, model: DockerfileModel | None = None
) -> MirrorInputs:
    """The mirror build args and the CA bundle secret image `name` asks for.

    The image's own `args` and `secrets` win: a mirror arg or the secret it already sets is
    left out. `model` is the image's parsed Dockerfile, when the caller has one.
    """
    mirrors = project.config.mirrors
    if not configured(mirrors):
        return NONE
    image = project.image(name)
    if model is None:
        model = project.dockerfile_model(name)
    args, secret_ids = requested(model, image.target)
    given = {
        MIRROR_ARGS[key]: value
        for key, value in mirrors.model_dump().items()
        if key in MIRROR_ARGS and value is not None
    }
    chosen = {arg: value for arg, value in given.items() if arg in args and arg not in image.args}
    wants_bundle = (
        mirrors.ca_bundle is not None
        and CA_BUNDLE_ID in secret_ids
        and all(s.id != CA_BUNDLE_ID for s in image.secrets)
    )
    if not wants_bundle:
        return MirrorInputs(args=chosen)
    path = (project.root / (mirrors.ca_bundle or "")).resolve()
    return MirrorInputs(
        args=chosen, secrets=(f"id={CA_BUNDLE_ID},src={path}",), secret_ids=(CA_BUNDLE_ID,)
    )


def requested(model: DockerfileModel, target: str | None) -> tuple[set[str], set[str]]:
    """The ARGs a build of `target` declares (global, and in the stages it builds) and the
    ids of the secrets its RUN instructions mount."""
    args = set(model.global_args)
    secrets: set[str] = set()
    for stage in model.needed_stages(target):
        for instruction in stage.instructions:
            if instruction.cmd == "ARG":
                args.update(_arg_names(instruction.original))
            elif instruction.cmd == "RUN":
                secrets.update(_secret_ids(instruction))
    return args, secrets


def _arg_names(original: str) -> list[str]:
    """`ARG A B=1 "C=x y"` -> A, B, C."""
    try:
        words = shlex.split(original)
    except ValueError:
        words = original.split()
    return [word.split("=", 1)[0] for word in words[1:]]


def _secret_ids(instruction: Instruction) -> list[str]:
    """Ids of the RUN's secret mounts; without `id`, BuildKit uses the target's base name."""
    try:
        mounts = json.loads(instruction.key).get("mounts", [])
    except (ValueError, AttributeError):
        return []
    return [
        str(m.get("id") or posixpath.basename(str(m.get("target", ""))))
        for m in mounts
        if isinstance(m, dict) and str(m.get("type", "")).lower() == "secret"
    ]
