"""Image sizes of real builds: layers of known size, mapped to their lines; budgets."""

from __future__ import annotations

import json
import os

from buildpilot.results import ImageResult
from buildpilot.size import ImageSize
from buildpilot.status import Status
from tests.conftest import BUSYBOX
from tests.engine.conftest import Repo, config

MIB = 2**20
TAR_SLACK = 16 * 1024  # tar headers and end-of-archive blocks around a file's content
FAT = """\
FROM base
RUN dd if=/dev/zero of=/a bs=1M count={count}
COPY two.bin /data/two.bin
"""


def fat_repo(repo: Repo, namespace: str, *, count: int = 3, **image: object) -> None:
    """`base` (busybox) <- `fat`: a RUN writing `count` MiB, then a COPY of 2 MiB."""
    repo.write(
        {
            "fat/Dockerfile": FAT.format(count=count),
            "fat/two.bin": os.urandom(2 * MIB),  # random: compressed as large as it is
            "buildpilot.yaml": config(
                namespace,
                {
                    "base": {"context": "base"},
                    "fat": {"context": "fat", "contexts": {"base": "image:base"}, **image},
                },
            ),
        }
    )
    repo.commit()


def result(repo: Repo, name: str) -> ImageResult:
    return next(i for i in repo.last_run().images if i.name == name)


def assert_near(size: int, expected: int) -> None:
    assert expected <= size <= expected + TAR_SLACK, (size, expected)


def test_layers_are_sized_and_mapped_to_their_dockerfile_lines(repo: Repo, namespace: str) -> None:
    fat_repo(repo, namespace)
    code, output = repo.buildpilot("build", "fat", "--size")
    assert code == 0, output
    size = result(repo, "fat").size
    assert size is not None
    assert size.ref == f"{namespace}/fat:latest"
    own = [layer for layer in size.layers if not layer.base]
    assert [(size.location(layer), layer.instruction) for layer in own] == [
        ("fat/Dockerfile:2", "RUN dd if=/dev/zero of=/a bs=1M count=3"),
        ("fat/Dockerfile:3", "COPY two.bin /data/two.bin"),
    ]
    run, copy = own
    assert_near(run.size, 3 * MIB)
    assert run.files[0].name == "/a"
    assert run.compressed is not None
    assert run.compressed < 100_000  # zeros
    assert_near(copy.size, 2 * MIB)
    assert copy.directories[0].name == "/data"
    assert copy.directories[0].size == 2 * MIB
    assert copy.compressed is not None
    assert copy.compressed > 2 * MIB  # random bytes do not compress
    # The layers of `base` come first, attributed to the FROM line.
    base = [layer for layer in size.layers if layer.base]
    assert {size.location(layer) for layer in base} == {"fat/Dockerfile:1"}
    [copied] = [layer for layer in base if layer.files and layer.files[0].name == "/bin/busybox"]
    assert_near(copied.size, BUSYBOX.stat().st_size)
    assert copied.instruction == "COPY busybox /bin/busybox"  # the base's own history
    assert size.size == sum(layer.size for layer in size.layers)
    # `base` was built too, but has no budget and --size measures every built image.
    assert result(repo, "base").size is not None
    assert (repo.root / ".buildpilot/sizes/fat.json").is_file()

    code, output = repo.buildpilot("size", "fat", "--json")
    assert code == 0, output
    [data] = json.loads(output)
    assert data["digest"] == size.digest
    assert [layer["location"] for layer in data["layers"][-2:]] == [
        "fat/Dockerfile:2",
        "fat/Dockerfile:3",
    ]
    code, output = repo.buildpilot("size", "fat")
    assert code == 0, output
    assert "fat/Dockerfile:2" in output
    assert "/data" in output


def test_a_budget_exceeded_fails_the_image_naming_the_layer_that_grew(
    repo: Repo, namespace: str
) -> None:
    budget = BUSYBOX.stat().st_size + 4 * MIB + 200_000  # room for 1 MiB + 2 MiB, not 3 + 2
    fat_repo(repo, namespace, count=1, size_budget=f"{budget}B")
    code, output = repo.buildpilot("build", "fat")
    assert code == 0, output
    first = result(repo, "fat")
    assert first.status is Status.SUCCESS
    assert first.size is not None
    assert not first.size.over_budget

    fat_repo(repo, namespace, count=3, size_budget=f"{budget}B")
    code, output = repo.buildpilot("build", "fat")
    assert code == 1, output
    failed = result(repo, "fat")
    assert failed.status is Status.FAILED
    assert failed.size is not None
    assert failed.size.over_budget
    assert failed.size.baseline == first.size.digest
    reason = failed.reason or ""
    assert "exceeds its budget" in reason
    grew = reason.split("grew most since ", 1)[1]
    assert grew.split(": ", 1)[1].startswith(
        "fat/Dockerfile:2 RUN dd if=/dev/zero of=/a bs=1M count=3 +2.1 MB"
    ), reason
    assert "fat/Dockerfile:2" in output  # said on the terminal too
    # The previous measurement is kept beside the new one.
    previous = ImageSize.model_validate_json(
        (repo.root / ".buildpilot/sizes/fat.previous.json").read_text()
    )
    assert previous.digest == first.size.digest
    # Reusing the image built from the same inputs does not get it past its budget.
    code, output = repo.buildpilot("build", "fat", "--skip-existing")
    assert code == 1, output
    reused = result(repo, "fat")
    assert reused.status is Status.FAILED
    assert reused.digest == failed.digest
    assert "exceeds its budget" in (reused.reason or "")
    # `buildpilot size` agrees, and exits 1 as well.
    code, output = repo.buildpilot("size", "fat", "--json")
    assert code == 1, output
    assert json.loads(output)[0]["over_budget"] is True


def test_warn_mode_keeps_the_build_green_with_a_warning(repo: Repo, namespace: str) -> None:
    fat_repo(repo, namespace, size_budget="1MB", size_budget_action="warn")
    code, output = repo.buildpilot("build", "fat")
    assert code == 0, output
    image = result(repo, "fat")
    assert image.status is Status.SUCCESS
    assert image.size is not None
    assert image.size.over_budget
    assert any("exceeds its budget of 1.0 MB" in w for w in image.warnings)
    assert "exceeds its budget" in output
    assert result(repo, "base").size is None  # no budget, no --size: not measured
