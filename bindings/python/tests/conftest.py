"""What the Python package's tests share: the `tcodec` CLI cargo built, a keyring under a local
master key made with it, and the Temporal dev server (`temporal server start-dev` from the venv)."""

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "support"))
from ports import free_port, serve_on_free_port  # noqa: E402
TCODEC = ROOT / "target" / "debug" / "tcodec"
TEMPORAL = ROOT / ".venv" / "bin" / "temporal"
MASTER_KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
# The card in full: history checks look for it, as its first digits alone also turn up in the
# nanosecond timestamps of a history ("…T11:43:12.041117020Z").
CARD = "4111 1111 1111 1111"
SECRET = f"Ada Lovelace, card {CARD}"


def cli(env, *args, stdin=None):
    assert TCODEC.exists(), f"{TCODEC} is missing: cargo build -p tcodec-cli"
    out = subprocess.run([str(TCODEC), *args], env=env, input=stdin, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def keyring(tmp_path):
    master = tmp_path / "master.key"
    master.write_text(MASTER_KEY)
    master.chmod(0o600)
    path = tmp_path / "keyring.json"
    env = {"PATH": os.environ["PATH"], "TCODEC_KEYRING": str(path), "TCODEC_MASTER_KEY_FILE": str(master)}
    cli(env, "keys", "init", "--name", "payments", "--kek", "local")
    return path, master, env


@pytest.fixture(scope="session")
def dev_server(tmp_path_factory):
    def ready(port):
        return subprocess.run([str(TEMPORAL), "operator", "namespace", "describe", "--namespace", "default",
                               "--address", f"127.0.0.1:{port}"], capture_output=True).returncode == 0

    server, port = serve_on_free_port(
        "the Temporal dev server", tmp_path_factory.mktemp("temporal") / "server.log",
        lambda port: [str(TEMPORAL), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port), "--headless",
                      "--http-port", str(free_port()), "--metrics-port", str(free_port()), "--log-level", "warn"],
        ready)
    yield f"127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=30)


def show(address, workflow_id, codec_endpoint=None) -> dict:
    """The workflow's history as `temporal workflow show --output json` prints it: as the server
    stores it, or decoded through the codec server at `codec_endpoint`."""
    args = [str(TEMPORAL), "workflow", "show", "--workflow-id", workflow_id, "--address", address, "--output", "json"]
    if codec_endpoint:
        args += ["--codec-endpoint", codec_endpoint]
    return json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)


def payload_strings(history):
    """Every payload encoding in `history`, and every string in it (base64 ones also decoded)."""
    encodings, texts = [], []

    def walk(v):
        if isinstance(v, dict):
            enc = v.get("metadata", {}).get("encoding") if isinstance(v.get("metadata"), dict) else None
            if enc:
                encodings.append(base64.b64decode(enc).decode())
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str):
            texts.append(v)
            try:
                texts.append(base64.b64decode(v, validate=True).decode("latin-1"))
            except Exception:
                pass

    walk(history)
    return encodings, texts


@pytest.fixture(scope="session")
def moto(tmp_path_factory):
    """A real KMS-protocol server (`moto_server` from the venv) on loopback, and a KMS key in
    it: (endpoint, key id, the AWS environment for it)."""
    import boto3

    home = tmp_path_factory.mktemp("moto")
    # In its own directory: its request recorder writes a file there.
    server, port = serve_on_free_port(
        "moto_server", home / "moto.log",
        lambda port: [str(ROOT / ".venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], cwd=home)
    endpoint = f"http://127.0.0.1:{port}"
    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": endpoint}
    kms = boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    yield endpoint, key_id, aws
    server.terminate()
    server.wait(timeout=30)
