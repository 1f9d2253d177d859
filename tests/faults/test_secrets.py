"""Secrets never leak: a secret's value (from a file and from the environment), registry
credentials and SSH key material appear nowhere buildpilot writes or prints, nor in the
image, even when a build prints them. Build args named like secrets are refused; commands
run without a shell; config paths stay inside the repository unless the config says so."""

from __future__ import annotations

import ast
import base64
import json
import secrets
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.faults.conftest import Repo, buildpilot
from tests.faults.netfaults import Registry

PACKAGE = Path(__file__).parents[2] / "buildpilot"
SHELL_CALLS = {
    "os.system",
    "os.popen",
    "subprocess.getoutput",
    "subprocess.getstatusoutput",
    "asyncio.create_subprocess_shell",
}

OK = """\
FROM base
RUN --mount=type=secret,id=filetok,required=true --mount=type=secret,id=envtok,required=true \\
    --mount=type=ssh,required=true \\
    test -s /run/secrets/filetok && test -s /run/secrets/envtok && test -S "$SSH_AUTH_SOCK" \\
    && sha256sum /run/secrets/filetok > /sums
"""
LEAKY = """\
FROM base
RUN --mount=type=secret,id=filetok --mount=type=secret,id=envtok \\
    cat /run/secrets/filetok /run/secrets/envtok; echo; exit 3
"""


def htpasswd(path: Path, user: str, password: str) -> None:
    """A bcrypt htpasswd file (docker-registry reads no other kind)."""
    try:
        import bcrypt  # type: ignore[import-not-found]

        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()
        path.write_text(f"{user}:{hashed}\n", encoding="utf-8")
        return
    except ImportError:
        pass
    if shutil.which("htpasswd") is None:
        pytest.skip("needs python bcrypt or htpasswd (apt-get install apache2-utils)")
    done = subprocess.run(
        ["htpasswd", "-Bbn", user, password], capture_output=True, text=True, check=True
    )
    path.write_text(done.stdout, encoding="utf-8")


def fetch(url: str, auth: str, accept: str = "") -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {auth}"})  # noqa: S310
    if accept:
        request.add_header("Accept", accept)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        data: bytes = response.read()
        return data


def image_manifest_and_config(host: str, repository: str, auth: str) -> str:
    """The pushed image's manifest and config (with its history), as the registry has them."""
    accept = "application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json"
    manifest = fetch(f"http://{host}/v2/{repository}/manifests/latest", auth, accept)
    digest = json.loads(manifest)["config"]["digest"]
    config = fetch(f"http://{host}/v2/{repository}/blobs/{digest}", auth)
    assert b'"history"' in config
    return manifest.decode() + config.decode()


@pytest.mark.engine
def test_no_secret_appears_anywhere(repo: Repo, tmp_path: Path, engine: None) -> None:
    user, password = "builder", f"rp-{secrets.token_hex(12)}"
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    htpasswd(tmp_path / "htpasswd", user, password)
    registry = Registry(tmp_path / "registry", htpasswd=tmp_path / "htpasswd").start()
    host = f"localhost:{registry.port}"
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    (docker_config / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    file_secret, env_secret = f"fs-{secrets.token_hex(12)}", f"es-{secrets.token_hex(12)}"
    namespace = f"s{secrets.token_hex(4)}"
    image = {"context": "app", "contexts": {"base": "image:base"}}
    repo.write(
        {
            "app/ok.Dockerfile": OK,
            "app/leaky.Dockerfile": LEAKY,
            "secret.txt": file_secret + "\n",
            ".gitignore": "secret.txt\n",
            "buildpilot.yaml": {
                "version": 1,
                "registry": f"{host}/{namespace}",
                "images": {
                    "base": {"context": "base"},
                    "ok": {
                        **image,
                        "dockerfile": "ok.Dockerfile",
                        "secrets": [
                            {"id": "filetok", "src": "secret.txt"},
                            {"id": "envtok", "env": "BP_FAULTS_TOKEN"},
                        ],
                        "ssh": [f"default={key}"],
                    },
                    "leaky": {
                        **image,
                        "dockerfile": "leaky.Dockerfile",
                        "secrets": [
                            {"id": "filetok", "src": "secret.txt"},
                            {"id": "envtok", "env": "BP_FAULTS_TOKEN"},
                        ],
                    },
                },
            },
        }
    )
    repo.commit()
    summary = tmp_path / "step-summary.md"
    try:
        done = buildpilot(
            repo.root / "buildpilot.yaml",
            "build",
            "--push",
            env={
                "BP_FAULTS_TOKEN": env_secret,
                "DOCKER_CONFIG": str(docker_config),
                "GITHUB_ACTIONS": "true",
                "GITHUB_REF_NAME": "main",
                "GITHUB_EVENT_NAME": "push",
                "GITHUB_STEP_SUMMARY": str(summary),
            },
        )
        assert done.code == 1, done.output  # leaky fails, ok and base are pushed
        report = buildpilot(repo.root / "buildpilot.yaml", "report", "--json")
        pushed = image_manifest_and_config(registry.host, f"{namespace}/ok", auth)
    finally:
        registry.stop()
    run = json.loads(report.stdout)
    statuses = {i["name"]: i["status"] for i in run["images"]}
    assert statuses == {"base": "success", "ok": "success", "leaky": "failed"}, done.output
    leaky = next(i for i in run["images"] if i["name"] == "leaky")
    assert any("***" in line for line in leaky["timeline"]["log_tail"]), leaky  # it did print

    state = repo.root / ".buildpilot"
    places = {
        "stdout": done.stdout,
        "stderr": done.stderr,
        "report --json": report.stdout + report.stderr,
        "GITHUB_STEP_SUMMARY": summary.read_text(encoding="utf-8"),
        "history": (state / "history.jsonl").read_text(encoding="utf-8"),
        "junit.xml": (state / "junit.xml").read_text(encoding="utf-8"),
        "digests.env": (state / "digests.env").read_text(encoding="utf-8"),
        "image manifest and config": pushed,
        **{f"runs/{p.name}": p.read_text(encoding="utf-8") for p in (state / "runs").glob("*")},
    }
    key_lines = [
        line
        for line in key.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("-----")
    ]
    values = {
        "file secret": file_secret,
        "env secret": env_secret,
        "registry password": password,
        "registry auth": auth,
        **{f"ssh key line {n}": line for n, line in enumerate(key_lines)},
    }
    assert len(places) >= 9
    leaks = [
        f"{what} in {where}"
        for what, value in values.items()
        for where, text in places.items()
        if value in text
    ]
    assert leaks == []


def run_validate(tmp_path: Path, body: str, files: dict[str, str]) -> tuple[int, str]:
    root = tmp_path / "repo"
    (root / "base").mkdir(parents=True)
    (root / "base/Dockerfile").write_text("FROM scratch\nCOPY x /x\n")
    (root / "base/x").write_text("x")
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "buildpilot.yaml").write_text(f"version: 1\nregistry: localhost:5000/s\n{body}")
    done = buildpilot(root / "buildpilot.yaml", "validate")
    return done.code, done.output


def test_a_secret_looking_arg_is_accepted_when_the_image_insists(tmp_path: Path) -> None:
    body = (
        "images:\n  a:\n    context: base\n    args: {GPG_KEY_ID: '0x1234'}\n"
        "    allow_secret_args: true\n"
    )
    code, output = run_validate(tmp_path, body, {})
    assert code == 0, output


def test_paths_outside_are_accepted_when_the_config_says_so(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "Dockerfile").write_text("FROM scratch\n")
    body = (
        "allow_paths_outside: true\nimages:\n"
        f"  a:\n    context: {outside}\n    secrets: [{{id: ca, src: /etc/hostname}}]\n"
        "    contexts: {lib: ../elsewhere}\n"
    )
    code, output = run_validate(tmp_path, body, {})
    assert code == 0, output


def test_code_runs_no_command_through_a_shell() -> None:
    found = []
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            shell = any(
                k.arg == "shell" and not (isinstance(k.value, ast.Constant) and not k.value.value)
                for k in node.keywords
            )
            if shell or name in SHELL_CALLS:
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)[:80]}")
    assert found == []
