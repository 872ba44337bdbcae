"""docker/: no image can be pulled here, so check what can be checked: the files parse, every
`tune-app` command they (and the README) run is a valid command line, and the Dockerfile installs
the way the Makefile does (torch pinned first), as a non-root user, in CPU and CUDA variants."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from tune_app.cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"


def _commands(text: str) -> list[list[str]]:
    """Every `tune-app ...` command line in a text (continuation lines joined)."""
    text = text.replace("\\\n", " ")
    found = []
    for match in re.finditer(r"(?:\.venv/bin/)?tune-app ([^\n\"'`#]+)", text):
        words = shlex.split(match.group(1))
        if words and not words[0].startswith("-") and words[0] not in {"X", "is", "report."}:
            found.append(words)
    return found


def _parses(words: list[str]) -> None:
    try:
        build_parser().parse_args(words)
    except SystemExit as exc:  # argparse exits on a bad command line
        raise AssertionError(f"`tune-app {' '.join(words)}` does not parse") from exc


@pytest.mark.parametrize("name", ["docker-compose.yaml", "cluster.yaml", "kuberay.yaml"])
def test_yaml_files_parse(name):
    assert yaml.safe_load((DOCKER / name).read_text())


@pytest.mark.parametrize(
    "source",
    [
        "README.md",
        "docker/docker-compose.yaml",
        "docker/cluster.yaml",
        "docker/kuberay.yaml",
        "docker/Dockerfile",
    ],
)
def test_every_tune_app_command_is_valid(source):
    commands = _commands((ROOT / source).read_text())
    if source != "docker/Dockerfile":
        assert commands, f"{source} shows no tune-app command"
    for words in commands:
        _parses(words)


def test_dockerfile_installs_like_the_makefile_as_non_root_in_both_variants():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "torch==2.13.0" in dockerfile and "torch==2.13.0" in makefile
    assert dockerfile.index("torch==2.13.0") < dockerfile.index("pip install --no-cache-dir -e .")
    assert re.search(r"^USER tune$", dockerfile, re.M)
    assert (
        "FROM base-${VARIANT}" in dockerfile
        and "AS base-cpu" in dockerfile
        and "AS base-cuda" in dockerfile
    )
    assert "COPY search_spaces" in dockerfile  # the default search spaces travel with the image


def test_compose_is_a_head_and_two_workers():
    compose = yaml.safe_load((DOCKER / "docker-compose.yaml").read_text())
    services = compose["services"]
    assert "--head" in services["head"]["command"]
    workers = [s for name, s in services.items() if name.startswith("worker")]
    assert len(workers) == 2 and all("head:6379" in w["command"] for w in workers)


def test_kuberay_job_runs_a_search_on_gpu_workers():
    job = yaml.safe_load((DOCKER / "kuberay.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    _parses(shlex.split(job["spec"]["entrypoint"])[1:])
    assert "search" in job["spec"]["entrypoint"]
    worker = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][
        0
    ]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_cluster_launcher_has_what_ray_up_needs():
    cluster = yaml.safe_load((DOCKER / "cluster.yaml").read_text())
    for key in ("cluster_name", "provider", "head_start_ray_commands", "worker_start_ray_commands"):
        assert key in cluster
    assert cluster["provider"]["type"] == "local"


def test_every_node_and_driver_gets_the_token_and_token_mode():
    """Ray 2.60 turns token mode on by itself only on a head that finds a token: worker nodes
    and a driver joined by address need RAY_AUTH_MODE=token and the token (README)."""
    compose = yaml.safe_load((DOCKER / "docker-compose.yaml").read_text())
    for service in compose["services"].values():
        env = service["environment"]
        assert env["RAY_AUTH_MODE"] == "token" and "RAY_AUTH_TOKEN" in env
    cluster = yaml.safe_load((DOCKER / "cluster.yaml").read_text())
    options = " ".join(cluster["docker"]["run_options"])
    assert "--env RAY_AUTH_MODE=token" in options
    token_path = re.search(r"--env RAY_AUTH_TOKEN_PATH=(\S+)", options)
    assert token_path and token_path.group(1) in cluster["file_mounts"]
    job = yaml.safe_load((DOCKER / "kuberay.yaml").read_text())
    assert job["spec"]["rayClusterSpec"]["authOptions"]["mode"] == "token"
