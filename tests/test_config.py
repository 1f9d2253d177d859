from __future__ import annotations

import json
from pathlib import Path

import pytest

from buildpilot.config import find_config, json_schema, load_config
from buildpilot.errors import ConfigError
from tests.conftest import write_tree

VALID = """\
version: 1
registry: localhost:5000/speech
cache:
  mode: max
images:
  base:
    context: images/base
  stt:
    context: .
    dockerfile: services/stt/Dockerfile
    contexts:
      base: image:base
    args: {PYTHON_VERSION: "3.11"}
    target: runtime
    ssh: [default]
    secrets:
      - {id: pipcert, src: certs/ca.crt}
      - {id: token, env: HF_TOKEN}
    tags: ["{registry}/stt:{git_sha}", "{registry}/stt:latest"]
    platforms: [linux/amd64]
    depends_on: [base]
    cache: {mode: min}
"""

FILES = {
    "images/base/Dockerfile": "FROM scratch\n",
    "services/stt/Dockerfile": "FROM base AS runtime\n",
    "certs/ca.crt": "x",
}


def load(tmp_path: Path, text: str, files: dict[str, object] | None = None) -> object:
    write_tree(tmp_path, {**FILES, **(files or {}), "buildpilot.yaml": text})
    return load_config(tmp_path / "buildpilot.yaml")


def problems(tmp_path: Path, text: str, files: dict[str, object] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, files)
    return info.value.problems


def test_valid_config_loads_frozen_models(tmp_path: Path) -> None:
    project = load(tmp_path, VALID)
    stt = project.image("stt")  # type: ignore[attr-defined]
    assert stt.dependencies() == ["base"]
    assert stt.image_contexts() == {"base": "base"}
    assert project.dockerfile("stt") == tmp_path / "services/stt/Dockerfile"  # type: ignore[attr-defined]
    assert project.cache_settings("stt").mode == "min"  # type: ignore[attr-defined]
    assert project.cache_settings("base").mode == "max"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="frozen"):
        stt.target = "other"


def test_unknown_key_names_line_field_and_suggestion(tmp_path: Path) -> None:
    text = VALID.replace("    target: runtime", "    targte: runtime")
    [problem] = problems(tmp_path, text)
    assert (
        problem
        == f"{tmp_path}/buildpilot.yaml:14: images.stt.targte: unknown key; did you mean 'target'?"
    )


def test_wrong_type_names_line_and_field(tmp_path: Path) -> None:
    text = VALID.replace("platforms: [linux/amd64]", "platforms: linux/amd64")
    [problem] = problems(tmp_path, text)
    assert problem.startswith(f"{tmp_path}/buildpilot.yaml:20: images.stt.platforms: ")
    assert "list" in problem


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, "version: 1\nimages: [unclosed\n")
    assert problem.startswith(f"{tmp_path}/buildpilot.yaml:3: ")


def test_tabs_get_a_plain_message(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, "version: 1\nimages:\n\tbase: {}\n")
    assert "tabs" in problem
    assert ":3:" in problem


def test_duplicate_key_is_refused(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, VALID + "  base:\n    context: images/base\n")
    assert "duplicate key 'base' (first at line 6)" in problem


def test_unknown_image_reference_suggests(tmp_path: Path) -> None:
    text = VALID.replace("base: image:base", "base: image:bsae").replace(
        "depends_on: [base]", "depends_on: [gpu]"
    )
    found = problems(tmp_path, text)
    assert (
        f"{tmp_path}/buildpilot.yaml:12: images.stt.contexts.base: unknown image 'bsae'; did you mean 'base'?"
        in found
    )
    assert f"{tmp_path}/buildpilot.yaml:21: images.stt.depends_on.0: unknown image 'gpu'" in found


def test_cycle_names_its_path(tmp_path: Path) -> None:
    text = VALID.replace(
        "    context: images/base\n", "    context: images/base\n    depends_on: [stt]\n", 1
    )
    [problem] = problems(tmp_path, text)
    assert "dependency cycle: base -> stt -> base" in problem


def test_missing_context_and_dockerfile(tmp_path: Path) -> None:
    text = VALID.replace("context: images/base", "context: images/nope").replace(
        "services/stt/Dockerfile", "services/stt/Dockerfile.gone"
    )
    found = problems(tmp_path, text)
    assert any(
        "images.base.context: context directory" in p and "images/nope does not exist" in p
        for p in found
    )
    assert any(
        ":10: images.stt.dockerfile: Dockerfile" in p and "Dockerfile.gone does not exist" in p
        for p in found
    )


def test_secret_needs_exactly_one_source(tmp_path: Path) -> None:
    text = VALID.replace("{id: token, env: HF_TOKEN}", "{id: token}")
    [problem] = problems(tmp_path, text)
    assert "images.stt.secrets.1: " in problem
    assert "exactly one of 'src' or 'env'" in problem


def test_unknown_tag_field(tmp_path: Path) -> None:
    text = VALID.replace("{registry}/stt:{git_sha}", "{registry}/stt:{version}")
    [problem] = problems(tmp_path, text)
    assert ":19: images.stt.tags.0: unknown template field {version}" in problem


@pytest.mark.parametrize(
    ("text", "expected"), [("", "it is empty"), ("- a\n- b\n", "it is a list")]
)
def test_config_must_be_a_mapping(tmp_path: Path, text: str, expected: str) -> None:
    [problem] = problems(tmp_path, text)
    assert expected in problem


def test_missing_required_keys(tmp_path: Path) -> None:
    found = problems(tmp_path, "version: 1\nimages: {}\n")
    assert any("registry: required key is missing" in p for p in found)
    assert any("images: " in p for p in found)


def test_find_config_walks_up(tmp_path: Path) -> None:
    write_tree(tmp_path, {"buildpilot.yaml": VALID, "a/b/c/.keep": ""})
    assert find_config(tmp_path / "a/b/c") == tmp_path / "buildpilot.yaml"


def test_find_config_none_found(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no buildpilot\.yaml"):
        find_config(tmp_path)


def test_schema_describes_image_keys() -> None:
    schema = json_schema()
    image = schema["$defs"]["ImageConfig"]
    assert image["additionalProperties"] is False
    assert {"context", "dockerfile", "contexts", "secrets", "ssh", "tags"} <= set(
        image["properties"]
    )
    json.dumps(schema)
