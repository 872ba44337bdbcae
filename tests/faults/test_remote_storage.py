"""Runs on S3-compatible storage: a moto server on loopback, the endpoint from the standard AWS
environment variables, `--storage s3://bucket/prefix` for baseline, search, best and report."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "tune_app.cli"]
TINY = ["--phase-epochs", "2", "--stride", "4", "--hidden", "16", "--cpus-per-trial", "0.5"]


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    try:
        for _ in range(100):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        import boto3

        boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket="runs")
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [*CLI, *argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_baseline_search_best_and_report_on_s3(s3_env: dict[str, str], tmp_path: Path):
    _run(["baseline", *TINY, "--storage", "s3://runs/tune", "--name", "base"], s3_env, tmp_path)
    _run(
        ["search", *TINY, "--population", "2", "--storage", "s3://runs/tune", "--name", "pbt"],
        s3_env,
        tmp_path,
    )
    assert not (tmp_path / "results").exists()  # nothing went to the local default storage
    for name in ("base", "pbt"):
        out = tmp_path / f"best_{name}"
        printed = _run(["best", f"s3://runs/tune/{name}", "--out", str(out)], s3_env, tmp_path)
        assert "epoch 10" in printed
        config = json.loads((out / "config.json").read_text())
        assert config["run"] == f"s3://runs/tune/{name}" and config["epoch"] == 10
        assert (out / "best_model.pth").stat().st_size > 0
    _run(["report", "s3://runs/tune/pbt", "--out", str(tmp_path / "report")], s3_env, tmp_path)
    assert "PBT family tree" in (tmp_path / "report" / "report.html").read_text()
