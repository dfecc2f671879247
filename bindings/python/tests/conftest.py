"""What the Python package's tests share: the `tcodec` CLI cargo built, and a keyring under a
local master key made with it."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
TCODEC = ROOT / "target" / "debug" / "tcodec"
MASTER_KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
SECRET = "Ada Lovelace, card 4111 1111 1111 1111"


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


