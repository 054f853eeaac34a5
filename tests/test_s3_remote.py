"""An S3 DVC remote: `dvc push` from one clone and `dvc pull` into another, against moto's standalone
S3 server on 127.0.0.1 (how DVC's own test suite exercises S3), through the pinned `dvc[s3]`."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import boto3
import httpx
import pytest

from tests.conftest import BIN, GIT, _free_port, copy_repo_with, digest, env_with_venv, run, small_fraud_params, stop

pytestmark = pytest.mark.slow
BUCKET = "aiflow-test"


@pytest.fixture
def s3(tmp_path) -> Iterator[dict]:
    """moto_server on a free loopback port with one empty bucket; the environment that reaches it."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "moto.log").open("w")
    server = subprocess.Popen(
        [BIN / "moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    env = {
        **env_with_venv(),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        env.pop(name, None)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "moto.log").read_text()
                time.sleep(0.2)
        client = boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=BUCKET)
        yield {"url": url, "env": env, "client": client}
    finally:
        stop(server)
        log.close()


def test_push_to_s3_and_pull_into_a_second_clone(tmp_path, s3):
    env = s3["env"]
    root = copy_repo_with(tmp_path / "first", "fraud", small_fraud_params())
    run(["dvc", "remote", "add", "-d", "team", f"s3://{BUCKET}/aiflow"], root, env=env)
    run(["dvc", "remote", "modify", "team", "endpointurl", s3["url"]], root, env=env)  # a real bucket needs no endpoint
    run(["dvc", "repro", "validate@fraud"], root, env=env)
    pushed = run(["dvc", "push", "validate@fraud", "--with-deps"], root, env=env).stdout
    assert "pushed" in pushed, pushed
    stored = s3["client"].list_objects_v2(Bucket=BUCKET, Prefix="aiflow/")
    assert stored["KeyCount"] > 0
    run([*GIT, "add", "dvc.lock", ".dvc/config"], root)
    run([*GIT, "commit", "-qm", "acquire and validate fraud; team remote"], root)

    clone = tmp_path / "second"
    run(["git", "clone", "-q", str(root), str(clone)], tmp_path)
    assert not (clone / "data/fraud/validate").exists()
    run(["dvc", "pull", "validate@fraud", "--with-deps"], clone, env=env)
    for rel in (
        "data/fraud/acquire/table.parquet",
        "data/fraud/validate/validated.parquet",
        "data/fraud/validate/gate.json",
    ):
        assert digest(clone / rel) == digest(root / rel), rel
    status = run(["dvc", "status", "validate@fraud", "--with-deps"], clone, env=env).stdout
    assert "up to date" in status, status
    cloud = run(["dvc", "status", "--cloud", "validate@fraud", "--with-deps"], clone, env=env).stdout
    assert "in sync" in cloud, cloud
