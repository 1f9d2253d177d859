"""`buildpilot release` against the real engine and registry."""

from __future__ import annotations

import json

from tests.engine.conftest import Repo, config, docker, registry_tags


def release_repo(repo: Repo, namespace: str, *, broken: bool = False) -> None:
    repo.write(
        {
            "svc/Dockerfile": "FROM base\nCOPY app.txt /app.txt\n",
            "svc/app.txt": "v1\n",
            "bad/Dockerfile": "FROM base\nRUN " + ("exit 7" if broken else "true") + "\n",
            "buildpilot.yaml": config(
                namespace,
                {
                    "base": {"context": "base"},
                    "svc": {"context": "svc", "contexts": {"base": "image:base"}},
                    "bad": {"context": "bad", "contexts": {"base": "image:base"}},
                },
                release={"tags": ["{registry}/{name}:{version}", "{registry}/{name}:latest"]},
            ),
        }
    )
    repo.commit()


def manifest_digest(reference: str) -> str:
    out = docker("buildx", "imagetools", "inspect", reference, "--format", "{{json .Manifest}}")
    return str(json.loads(out)["digest"])


def test_release_tags_every_image_with_the_digest_it_built(repo: Repo, namespace: str) -> None:
    release_repo(repo, namespace)
    code, output = repo.buildpilot("release", "--version", "1.4.0", "--json")
    assert code == 0, output
    manifest = json.loads(output[output.index("{\n") :])
    assert manifest["version"] == "1.4.0"
    entries = {e["image"]: e for e in manifest["images"]}
    assert set(entries) == {"base", "svc", "bad"}
    for name, entry in entries.items():
        assert entry["source"] == "built"
        assert entry["tags"] == [f"{namespace}/{name}:1.4.0", f"{namespace}/{name}:latest"]
        assert "1.4.0" in registry_tags(f"{namespace}/{name}")
        assert manifest_digest(f"{namespace}/{name}:1.4.0") == entry["digest"]
    assert (repo.root / ".buildpilot/releases/1.4.0.json").is_file()

    # The next release with nothing changed reuses every image by its fingerprint.
    code, output = repo.buildpilot("release", "--version", "1.4.1", "--json")
    assert code == 0, output
    again = {e["image"]: e for e in json.loads(output[output.index("{\n") :])["images"]}
    assert {e["source"] for e in again.values()} == {"reused"}
    assert {n: e["digest"] for n, e in again.items()} == {
        n: e["digest"] for n, e in entries.items()
    }
    assert manifest_digest(f"{namespace}/svc:1.4.1") == entries["svc"]["digest"]


def test_a_failing_image_leaves_no_release_tag_anywhere(repo: Repo, namespace: str) -> None:
    release_repo(repo, namespace, broken=True)
    code, output = repo.buildpilot("release", "--version", "2.0.0")
    assert code == 1, output
    assert "no release tag was written anywhere" in output
    assert "bad: failed" in output
    for name in ("base", "svc", "bad"):
        tags = registry_tags(f"{namespace}/{name}")
        assert "2.0.0" not in tags, (name, tags)
        assert "latest" not in tags, (name, tags)
    assert not (repo.root / ".buildpilot/releases").exists()


def test_latest_only_on_the_default_branch(repo: Repo, namespace: str) -> None:
    release_repo(repo, namespace)
    code, output = repo.buildpilot(
        "release", "svc", "--version", "3.0.0-rc1", "--branch", "release/3.0"
    )
    assert code == 0, output
    assert registry_tags(f"{namespace}/svc") == sorted(
        ["3.0.0-rc1", *[t for t in registry_tags(f"{namespace}/svc") if t.startswith("fp-")]]
    )


def test_release_version_from_the_git_tag(repo: Repo, namespace: str) -> None:
    release_repo(repo, namespace)
    code, output = repo.buildpilot("release", "svc")
    assert code == 2
    assert "no release version" in output
    from tests.conftest import git

    git(repo.root, "tag", "v9.9.9")
    code, output = repo.buildpilot("release", "svc")
    assert code == 0, output
    assert "v9.9.9" in registry_tags(f"{namespace}/svc")
