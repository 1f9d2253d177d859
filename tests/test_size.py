"""Image size analysis without an engine: budgets, layer -> Dockerfile line, growth, archives."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from buildpilot.config import load_config
from buildpilot.console import Terminal
from buildpilot.dockerfile import parse_dockerfile
from buildpilot.errors import ConfigError, EngineError
from buildpilot.results import ImageResult
from buildpilot.size import (
    Entry,
    ImageSize,
    LayerSize,
    Recipe,
    attribute,
    baseline,
    budget_message,
    compare,
    exit_code,
    format_size,
    growth,
    image_size,
    largest_directories,
    layer_steps,
    package_name,
    parse_size,
    read_archive,
    store_report,
)
from buildpilot.size_report import github_sizes, headline, sizes_json
from buildpilot.sizing import check_sizes
from buildpilot.status import Status
from tests.conftest import write_tree

MB = 10**6
MIB = 2**20

# --- budgets -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3GB", 3 * 10**9),
        ("500MB", 500 * MB),
        ("500mb", 500 * MB),
        ("1.5 GB", 1_500_000_000),
        ("2GiB", 2 * 2**30),
        ("100MiB", 100 * MIB),
        ("10kB", 10_000),
        ("1024", 1024),
        ("7B", 7),
        ("2M", 2 * MB),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "GB", "3 parsecs", "-1GB", "1.2.3MB", "3 G B"])
def test_parse_size_refuses_what_is_not_a_size(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


def test_format_size_uses_decimal_units() -> None:
    assert [format_size(n) for n in (950, 3_145_728, 1_200_000_000, -200_000)] == [
        "950 B",
        "3.1 MB",
        "1.2 GB",
        "-200.0 kB",
    ]


def _config(tmp_path: Path, image: dict[str, Any], **top: Any) -> Path:
    write_tree(
        tmp_path,
        {
            "Dockerfile": "FROM scratch\n",
            "buildpilot.yaml": {
                "version": 1,
                "registry": "localhost:5000/x",
                **top,
                "images": {"app": image},
            },
        },
    )
    return tmp_path / "buildpilot.yaml"


def test_config_takes_a_size_budget_and_its_action(tmp_path: Path) -> None:
    project = load_config(_config(tmp_path, {"size_budget": "3GB", "size_budget_action": "warn"}))
    assert project.image("app").size_budget == "3GB"
    assert project.image("app").size_budget_action == "warn"
    default = load_config(_config(tmp_path, {}))
    assert default.image("app").size_budget is None
    assert default.image("app").size_budget_action == "fail"


def test_config_refuses_a_budget_that_is_not_a_size(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, {"size_budget": "huge"}))
    assert "images.app.size_budget" in str(caught.value)
    assert "not a size: 'huge'" in str(caught.value)
    with pytest.raises(ConfigError, match="size_budget_action"):
        load_config(_config(tmp_path, {"size_budget_action": "shrug"}))


# --- history -> Dockerfile lines ---------------------------------------------------------

DOCKERFILE = """\
ARG GLOBAL=g
FROM scratch AS base
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ARG PIP_INDEX_URL
WORKDIR /app
RUN echo "$PIP_INDEX_URL" > /pip.txt
FROM base AS build
RUN <<EOT
echo one > /one
EOT
FROM base
LABEL a=b
COPY --from=build /one /one
COPY --link a.txt /linked.txt
USER 1000
"""
# What BuildKit wrote into the config of that image (docker save, Docker 26).
HISTORY = [
    {"created_by": "COPY busybox /bin/busybox # buildkit", "comment": "buildkit.dockerfile.v0"},
    {"created_by": "RUN /bin/busybox --install -s /bin # buildkit"},
    {"created_by": "ARG PIP_INDEX_URL", "empty_layer": True},
    {"created_by": "WORKDIR /app"},
    {"created_by": "RUN |1 PIP_INDEX_URL=http://m/simple /bin/sh -c echo ... # buildkit"},
    {"created_by": "LABEL a=b", "empty_layer": True},
    {"created_by": "COPY /one /one # buildkit"},
    {"created_by": "COPY a.txt /linked.txt # buildkit"},
    {"created_by": "USER 1000", "empty_layer": True},
]


def _steps(text: str = DOCKERFILE, target: str | None = None) -> Any:
    return layer_steps(parse_dockerfile(text, path="Dockerfile"), target)


def test_layers_map_to_the_steps_of_the_target_and_its_from_stages() -> None:
    origin, steps = _steps()
    origins = attribute(HISTORY, 6, steps, origin)
    assert [(o.step.line if o.step else None, o.base) for o in origins] == [
        (3, False),
        (4, False),
        (6, False),
        (7, False),
        (14, False),
        (15, False),
    ]
    assert origins[2].step is not None
    assert origins[2].step.text == "WORKDIR /app"
    assert origins[4].created_by == "COPY /one /one"  # "# buildkit" dropped
    assert origins[4].step is not None
    assert origins[4].step.stage == "2"


def test_the_stage_built_only_for_copy_from_adds_no_layer() -> None:
    _, steps = _steps()
    assert 10 not in [s.line for s in steps]  # RUN of stage `build`
    _, build_steps = _steps(target="build")
    assert [s.line for s in build_steps] == [3, 4, 6, 7, 9]


def test_layers_before_the_dockerfile_steps_come_from_the_base_image() -> None:
    origin, steps = _steps("FROM local/debian:bookworm-slim\nRUN apt-get update\nCOPY . /app\n")
    history = [
        {"created_by": "/bin/sh -c #(nop) ADD file:abc in / "},
        {"created_by": '/bin/sh -c #(nop)  CMD ["bash"]', "empty_layer": True},
        {"created_by": "RUN /bin/sh -c apt-get update # buildkit"},
        {"created_by": "COPY . /app # buildkit"},
    ]
    origins = attribute(history, 3, steps, origin)
    assert origins[0].base
    assert origins[0].step == origin
    assert origin is not None
    assert (origin.line, origin.text) == (1, "FROM local/debian:bookworm-slim")
    assert [o.step.line for o in origins[1:] if o.step] == [2, 3]


def test_a_disagreeing_command_stops_the_mapping() -> None:
    origin, steps = _steps("FROM base\nRUN a\nRUN b\n")
    history = [{"created_by": "COPY x /x"}, {"created_by": "COPY y /y"}, {"created_by": "RUN b"}]
    origins = attribute(history, 3, steps, origin)
    assert [o.base for o in origins] == [True, True, False]
    assert origins[2].step is not None
    assert origins[2].step.line == 3


def test_history_shorter_than_the_layers_leaves_the_first_layers_unknown() -> None:
    origin, steps = _steps("FROM base\nRUN a\n")
    origins = attribute([{"created_by": "RUN a"}], 2, steps, origin)
    assert origins[0].base
    assert origins[0].created_by == ""
    assert origins[1].step is not None


# --- what is inside a layer --------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/usr/local/lib/python3.11/site-packages/numpy/core/x.so", "numpy"),
        ("/usr/lib/python3/dist-packages/numpy-1.26.4.dist-info/RECORD", "numpy"),
        ("/venv/lib/python3.11/site-packages/numpy.libs/libgfortran.so", "numpy"),
        ("/usr/local/lib/python3.11/site-packages/six.py", "six"),
        ("/x/site-packages/Typing-Extensions-4.9.dist-info/METADATA", "typing"),
        ("/x/site-packages/_cffi_backend.cpython-311-x86_64-linux-gnu.so", "_cffi_backend"),
        ("/usr/lib/x86_64-linux-gnu/libc.so.6", None),
    ],
)
def test_package_name(path: str, expected: str | None) -> None:
    assert package_name(path) == expected


def test_largest_directories_show_the_child_that_holds_nearly_all() -> None:
    sizes = {
        "/usr": 100,
        "/usr/lib": 95,
        "/usr/lib/python3": 95,
        "/data": 60,
        "/srv": 10,
        "/srv/a": 5,
        "/srv/b": 5,
    }
    assert largest_directories(sizes, 3) == [
        Entry(name="/usr/lib/python3", size=95),
        Entry(name="/data", size=60),
        Entry(name="/srv", size=10),
    ]


# --- reading a saved archive -------------------------------------------------------------


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _saved_image(path: Path, layers: list[dict[str, bytes]], history: list[dict[str, Any]]) -> str:
    """A `docker save` archive as Docker 26 with the containerd store writes it."""
    blobs: dict[str, bytes] = {}
    descriptors = []
    for files in layers:
        blob = gzip.compress(_tar(files), mtime=0)
        blobs[_digest(blob)] = blob
        descriptors.append(
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "digest": _digest(blob),
                "size": len(blob),
            }
        )
    config = json.dumps({"history": history, "rootfs": {"type": "layers"}}).encode()
    blobs[_digest(config)] = config
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"digest": _digest(config), "size": len(config)},
            "layers": descriptors,
        }
    ).encode()
    blobs[_digest(manifest)] = manifest
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "digest": _digest(manifest),
                "size": len(manifest),
            }
        ],
    }
    entries = [
        {
            "Config": "blobs/sha256/" + _digest(config)[7:],
            "Layers": ["blobs/sha256/" + d["digest"][7:] for d in descriptors],
        }
    ]
    files = {f"blobs/sha256/{d[7:]}": b for d, b in blobs.items()}
    files["index.json"] = json.dumps(index).encode()
    files["manifest.json"] = json.dumps(entries).encode()
    path.write_bytes(_tar(files))
    return _digest(manifest)


def test_read_archive_sizes_each_layer_and_what_is_inside(tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    digest = _saved_image(
        archive,
        [
            {"bin/busybox": b"b" * 1000},
            {"a": bytes(3 * MIB)},
            {
                "./usr/lib/python3/dist-packages/foo/x.so": bytes(200_000),
                "usr/lib/python3/dist-packages/foo-1.0.dist-info/RECORD": bytes(1000),
                "usr/lib/python3/dist-packages/bar.py": bytes(5000),
                "etc/.wh.old": b"",
            },
        ],
        [
            {"created_by": "COPY busybox /bin/busybox # buildkit"},
            {"created_by": "RUN /bin/sh -c dd if=/dev/zero of=/a bs=1M count=3 # buildkit"},
            {"created_by": "ENV X=1", "empty_layer": True},
            {"created_by": "RUN /bin/sh -c pip install foo # buildkit"},
        ],
    )
    saved = read_archive(archive)
    assert saved.digest == digest
    assert len(saved.layers) == 3
    big = saved.layers[1]
    assert 3 * MIB < big.size <= 3 * MIB + 10 * 1024  # the tar: headers and end blocks
    assert big.compressed is not None
    assert big.compressed < 10_000  # zeros compress
    assert big.files == [Entry(name="/a", size=3 * MIB)]
    assert big.directories == []
    python = saved.layers[2]
    assert python.packages == [Entry(name="foo", size=201_000), Entry(name="bar", size=5000)]
    assert python.directories[0] == Entry(name="/usr/lib/python3", size=206_000)
    assert "/etc/.wh.old" not in [f.name for f in python.files]

    origin, steps = _steps("FROM scratch\nCOPY busybox /bin/busybox\nRUN dd\nENV X=1\nRUN pip\n")
    size = image_size(
        saved,
        Recipe(image="app", dockerfile="app/Dockerfile", origin=origin, steps=tuple(steps)),
        ref="r:latest",
    )
    assert [size.location(layer) for layer in size.layers] == [
        "app/Dockerfile:2",
        "app/Dockerfile:3",
        "app/Dockerfile:5",
    ]
    assert size.size == sum(layer.size for layer in saved.layers)
    assert size.compressed == sum(layer.compressed or 0 for layer in saved.layers)


def test_an_uncompressed_layer_has_no_compressed_size(tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    layer = _tar({"a": bytes(100)})
    config = json.dumps({"history": [{"created_by": "RUN x"}]}).encode()
    write = {
        "manifest.json": json.dumps([{"Config": "cfg.json", "Layers": ["l/layer.tar"]}]).encode(),
        "cfg.json": config,
        "l/layer.tar": layer,
    }
    archive.write_bytes(_tar(write))
    saved = read_archive(archive)
    assert saved.digest is None
    assert saved.layers[0].size == len(layer)
    assert saved.layers[0].compressed is None


# --- growth and budgets ------------------------------------------------------------------


def _layer(index: int, line: int | None, instruction: str, size: int, **extra: Any) -> LayerSize:
    return LayerSize(
        index=index,
        digest=f"sha256:{index}",
        size=size,
        stage="0",
        line=line,
        instruction=instruction,
        created_by=instruction,
        **extra,
    )


def _image(layers: list[LayerSize], digest: str, budget: int | None = None) -> ImageSize:
    return ImageSize(
        image="app",
        ref="app:latest",
        digest=digest,
        dockerfile="Dockerfile",
        size=sum(layer.size for layer in layers),
        layers=layers,
        budget=budget,
    )


BEFORE = _image(
    [
        _layer(0, 1, "FROM debian", 80 * MB, base=True),
        _layer(1, 2, "RUN apt-get install -y curl", 20 * MB),
        _layer(2, 3, "COPY requirements.txt .", 1000),
        _layer(3, 4, "RUN pip install -r requirements.txt", 100 * MB),
        _layer(4, 5, "COPY docs /docs", 5 * MB),
    ],
    "sha256:" + "a" * 64,
)


def test_growth_pairs_the_same_step_even_when_its_line_moved() -> None:
    after = _image(
        [
            _layer(0, 1, "FROM debian", 80 * MB, base=True),
            _layer(1, 3, "RUN apt-get install -y curl", 20 * MB),  # a comment pushed it down
            _layer(2, 4, "COPY requirements.txt .", 1200),
            _layer(3, 5, "RUN pip install -r requirements.txt", 450 * MB),
        ],
        "sha256:" + "b" * 64,
    )
    changes = growth(BEFORE, after)
    assert [(g.location, g.delta) for g in changes] == [
        ("Dockerfile:1", 0),
        ("Dockerfile:3", 0),
        ("Dockerfile:4", 200),
        ("Dockerfile:5", 350 * MB),
        ("Dockerfile:5", -5 * MB),  # COPY docs is gone (its old line)
    ]
    assert changes[-1].instruction == "COPY docs /docs"
    assert changes[-1].after == 0


def test_an_edited_step_is_compared_with_the_step_at_its_place() -> None:
    after = _image(
        [
            _layer(0, 1, "FROM debian", 80 * MB, base=True),
            _layer(1, 2, "RUN apt-get install -y curl git", 60 * MB),
            _layer(2, 3, "COPY requirements.txt .", 1000),
            _layer(3, 4, "RUN pip install -r requirements.txt", 100 * MB),
            _layer(4, 5, "COPY docs /docs", 5 * MB),
        ],
        "sha256:" + "b" * 64,
    )
    changes = growth(BEFORE, after)
    assert changes[1].before == 20 * MB
    assert changes[1].delta == 40 * MB
    assert len(changes) == 5


def test_without_an_earlier_measurement_every_layer_is_new() -> None:
    changes = growth(None, BEFORE)
    assert [g.delta for g in changes] == [layer.size for layer in BEFORE.layers]
    assert compare(None, BEFORE).baseline is None


def test_budget_message_names_the_layers_that_grew_the_most() -> None:
    after = _image(
        [
            _layer(0, 1, "FROM debian", 80 * MB, base=True),
            _layer(1, 2, "RUN apt-get install -y curl", 25 * MB),
            _layer(2, 3, "COPY requirements.txt .", 1000),
            _layer(3, 4, "RUN pip install -r requirements.txt", 400 * MB),
            _layer(4, 5, "COPY docs /docs", 6 * MB),
            _layer(5, 6, "COPY models /models", 2 * MB),
        ],
        "sha256:" + "b" * 64,
        budget=parse_size("300MB"),
    )
    compared = compare(BEFORE, after)
    assert compared.over_budget
    assert compared.baseline_size == BEFORE.size
    assert budget_message(compared) == (
        "size 513.0 MB exceeds its budget of 300.0 MB by 213.0 MB; grew most since "
        "aaaaaaaaaaaa: Dockerfile:4 RUN pip install -r requirements.txt +300.0 MB; "
        "Dockerfile:2 RUN apt-get install -y curl +5.0 MB; "
        "Dockerfile:6 COPY models /models +2.0 MB"
    )
    assert exit_code([compared]) == 1
    unchanged = compare(after, after.model_copy(update={"digest": "sha256:" + "c" * 64}))
    assert budget_message(unchanged) == (
        "size 513.0 MB exceeds its budget of 300.0 MB by 213.0 MB; largest layers: "
        "Dockerfile:4 RUN pip install -r requirements.txt 400.0 MB; "
        "Dockerfile:1 FROM debian 80.0 MB; Dockerfile:2 RUN apt-get install -y curl 25.0 MB"
    )
    assert exit_code([compared.model_copy(update={"budget_action": "warn"})]) == 0
    assert exit_code([BEFORE]) == 0


def test_stored_reports_keep_the_previous_digest(tmp_path: Path) -> None:
    first = BEFORE
    second = _image(BEFORE.layers[:2], "sha256:" + "b" * 64)
    assert baseline(tmp_path, "app", first.digest) is None
    store_report(tmp_path, first)
    assert baseline(tmp_path, "app", second.digest) == first
    store_report(tmp_path, second)
    assert (tmp_path / ".buildpilot/sizes/app.previous.json").is_file()
    # Measuring the same image again compares with the one before it, not with itself.
    assert baseline(tmp_path, "app", second.digest) == first
    store_report(tmp_path, second)
    assert baseline(tmp_path, "app", second.digest) == first


# --- rendering ---------------------------------------------------------------------------


def test_json_and_github_summary() -> None:
    after = compare(BEFORE, _image(BEFORE.layers[:4], "sha256:" + "b" * 64, budget=150 * MB))
    data = json.loads(sizes_json([after]))
    assert data[0]["over_budget"] is True
    assert data[0]["layers"][3]["location"] == "Dockerfile:4"
    assert data[0]["growth"][-1]["delta"] == -5 * MB
    assert headline(after) == ("app: 200.0 MB, budget 150.0 MB (OVER), -5.0 MB since aaaaaaaaaaaa")
    image = ImageResult(name="app", status=Status.FAILED, size=after)
    lines = github_sizes([image, ImageResult(name="b", status=Status.SUCCESS)])
    assert lines[1] == "### Image sizes"
    assert lines[-1] == "| `app` | 200.0 MB | - | 150.0 MB (❌ over) | -5.0 MB | - |"
    assert github_sizes([ImageResult(name="b", status=Status.SUCCESS)]) == []


# --- the run hook, with a backend that saves a synthetic image ----------------------------


class SavingBackend:
    """Writes a two-layer image (1 MB, then `big` bytes) for any ref; counts the saves."""

    def __init__(self, big: int, *, fail: bool = False) -> None:
        self.big = big
        self.fail = fail
        self.saved: list[str] = []

    def save(self, ref: str, path: Path) -> None:
        if self.fail:
            raise EngineError(f"cannot save {ref}: no such image")
        self.saved.append(ref)
        _saved_image(
            path,
            [{"bin/tool": bytes(MB)}, {"data/blob": bytes(self.big)}],
            [{"created_by": "COPY tool /bin/tool"}, {"created_by": "RUN /bin/sh -c make blob"}],
        )


def _hooked(
    tmp_path: Path, backend: SavingBackend, image: dict[str, Any], result: ImageResult
) -> tuple[ImageResult, str]:
    path = _config(tmp_path, image)
    write_tree(tmp_path, {"Dockerfile": "FROM scratch\nCOPY tool /bin/tool\nRUN make blob\n"})
    project = load_config(path)
    err = io.StringIO()
    terminal = Terminal(plain=True, stream=io.StringIO(), err_stream=err)
    [checked] = check_sizes(project, [result], backend=backend, terminal=terminal)  # type: ignore[arg-type]
    return checked, err.getvalue()


BUILT = ImageResult(name="app", status=Status.SUCCESS, tags=["r/app:latest"], digest="sha256:1")


def test_run_hook_fails_an_image_over_budget_and_stores_its_report(tmp_path: Path) -> None:
    backend = SavingBackend(3 * MB)
    checked, err = _hooked(tmp_path, backend, {"size_budget": "3MB"}, BUILT)
    assert backend.saved == ["r/app:latest"]
    assert checked.status is Status.FAILED
    assert checked.size is not None
    assert checked.reason is not None
    assert checked.reason.startswith("size 4.0 MB exceeds its budget of 3.0 MB")
    assert checked.reason.endswith(
        "grew most (no earlier measurement): Dockerfile:3 RUN make blob +3.0 MB; "
        "Dockerfile:2 COPY tool /bin/tool +1.0 MB"
    )
    assert "app: size 4.0 MB exceeds" in err
    assert (tmp_path / ".buildpilot/sizes/app.json").is_file()


def test_run_hook_measures_nothing_without_a_budget(tmp_path: Path) -> None:
    backend = SavingBackend(3 * MB)
    checked, _ = _hooked(tmp_path, backend, {}, BUILT)
    assert checked == BUILT
    assert backend.saved == []


def test_run_hook_warns_in_warn_mode_and_when_it_cannot_measure(tmp_path: Path) -> None:
    warn = {"size_budget": "1MB", "size_budget_action": "warn"}
    checked, _ = _hooked(tmp_path, SavingBackend(3 * MB), warn, BUILT)
    assert checked.status is Status.SUCCESS
    assert any("exceeds its budget of 1.0 MB" in w for w in checked.warnings)
    broken, err = _hooked(tmp_path, SavingBackend(0, fail=True), {"size_budget": "1MB"}, BUILT)
    assert broken.status is Status.FAILED
    assert broken.reason == "size budget not checked: cannot save r/app:latest: no such image"
    assert "size not measured" in err
