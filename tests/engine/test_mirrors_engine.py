"""Mirrors and the CA bundle reach real builds, and only those that ask for them."""

from __future__ import annotations

import secrets

from buildpilot.results import ImageResult
from buildpilot.status import Status
from tests.engine.conftest import Repo, config, run_in_image

USES = """\
FROM base
ARG PIP_INDEX_URL
RUN echo "$PIP_INDEX_URL" > /pip-index
RUN --mount=type=secret,id=ca_bundle wc -c < /run/secrets/ca_bundle > /ca-bytes
"""
PLAIN = """\
FROM base
RUN echo "${PIP_INDEX_URL:-unset}" > /pip-index
"""


def test_a_mirror_reaches_the_build_that_declares_it_and_no_other(
    repo: Repo, namespace: str
) -> None:
    url = f"http://pypi.mirror.test/{secrets.token_hex(4)}/simple"
    bundle = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    repo.write(
        {
            "uses/Dockerfile": USES,
            "plain/Dockerfile": PLAIN,
            "ca.pem": bundle,
            "buildpilot.yaml": config(
                namespace,
                {
                    "base": {"context": "base"},
                    "uses": {"context": "uses", "contexts": {"base": "image:base"}},
                    "plain": {"context": "plain", "contexts": {"base": "image:base"}},
                },
                mirrors={"pip_index_url": url, "ca_bundle": "ca.pem"},
            ),
        }
    )
    repo.commit()
    code, output = repo.buildpilot("build", "uses", "plain")
    assert code == 0, output
    images: dict[str, ImageResult] = {i.name: i for i in repo.last_run().images}
    assert {i.status for i in images.values()} == {Status.SUCCESS}

    uses = f"{namespace}/uses:latest"
    assert run_in_image(uses, "cat", "/pip-index").strip() == url
    assert run_in_image(uses, "cat", "/ca-bytes").strip() == str(len(bundle))
    assert run_in_image(f"{namespace}/plain:latest", "cat", "/pip-index").strip() == "unset"

    command = images["uses"].command
    assert command[command.index("--build-arg") + 1] == f"PIP_INDEX_URL={url}"
    ca = (repo.root / "ca.pem").resolve()
    assert command[command.index("--secret") + 1] == f"id=ca_bundle,src={ca}"
    plain = " ".join(images["plain"].command)
    assert "--build-arg" not in plain
    assert "PIP_INDEX_URL" not in plain
    assert "ca_bundle" not in plain
