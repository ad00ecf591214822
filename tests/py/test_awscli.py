"""The AWS CLI (v1, from the test venv) against Nimbus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import (
    PY_ECHO,
    PY_RUNTIME,
    ROLE,
    code_sha256,
    fn_arn,
    make_zip,
    unique_name,
)


def _aws_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("aws")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "awscli"]


@pytest.fixture
def aws(nimbus, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_RETRY_MODE="standard",
        AWS_MAX_ATTEMPTS="1",
        AWS_PAGER="",
    )

    def run(*args, check_rc: int | None = 0):
        cmd = _aws_cmd() + ["--endpoint-url", nimbus.endpoint, "--output", "json",
                            "--cli-read-timeout", "60", "lambda", *args]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        if check_rc is not None:
            assert p.returncode == check_rc, (
                f"aws {' '.join(args)} -> rc {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
        return p

    return run


def test_cli_full_cycle(aws, tmp_path, client):
    name = unique_name("cli")
    z = make_zip({"app.py": PY_ECHO})
    zpath = tmp_path / "fn.zip"
    zpath.write_bytes(z)

    p = aws("create-function", "--function-name", name, "--runtime", PY_RUNTIME,
            "--handler", "app.handler", "--role", ROLE, "--zip-file", f"fileb://{zpath}",
            "--timeout", "5", "--memory-size", "256",
            "--environment", "Variables={MODE=cli}")
    try:
        created = json.loads(p.stdout)
        assert created["FunctionName"] == name
        assert created["FunctionArn"] == fn_arn(name)
        assert created["CodeSha256"] == code_sha256(z)
        assert created["CodeSize"] == len(z)
        assert created["MemorySize"] == 256
        assert created["Environment"]["Variables"] == {"MODE": "cli"}

        out = tmp_path / "out.json"
        p = aws("invoke", "--function-name", name, "--payload", '{"from": "cli"}', str(out))
        meta = json.loads(p.stdout)
        assert meta["StatusCode"] == 200
        assert meta["ExecutedVersion"] == "$LATEST"
        assert "FunctionError" not in meta
        result = json.loads(out.read_text())
        assert result["event"] == {"from": "cli"}

        p = aws("get-function", "--function-name", name)
        got = json.loads(p.stdout)
        assert got["Configuration"]["FunctionName"] == name
        assert got["Configuration"]["CodeSha256"] == code_sha256(z)

        p = aws("get-function-configuration", "--function-name", fn_arn(name))
        assert json.loads(p.stdout)["Timeout"] == 5

        p = aws("list-functions")
        names = [f["FunctionName"] for f in json.loads(p.stdout)["Functions"]]
        assert name in names  # the CLI follows NextMarker itself

        p = aws("update-function-configuration", "--function-name", name, "--timeout", "7")
        assert json.loads(p.stdout)["Timeout"] == 7
    finally:
        p = aws("delete-function", "--function-name", name, check_rc=None)
    assert p.returncode == 0, p.stderr

    p = aws("get-function", "--function-name", name, check_rc=None)
    assert p.returncode != 0
    assert "ResourceNotFoundException" in p.stderr


def test_cli_invoke_function_error(aws, tmp_path, make_function):
    name = unique_name("cli")
    make_function(make_zip({"app.py": "def handler(e, c):\n    raise KeyError('nope')\n"}), name=name)
    out = tmp_path / "err.json"
    p = aws("invoke", "--function-name", name, "--payload", "{}", str(out))
    meta = json.loads(p.stdout)
    assert meta["StatusCode"] == 200
    assert meta["FunctionError"] == "Unhandled"
    body = json.loads(out.read_text())
    assert body["errorType"] == "KeyError"


def test_cli_errors(aws, tmp_path, make_function):
    missing = unique_name("cli-missing")
    out = tmp_path / "o.json"
    p = aws("invoke", "--function-name", missing, "--payload", "{}", str(out), check_rc=None)
    assert p.returncode != 0
    assert "ResourceNotFoundException" in p.stderr

    zpath = tmp_path / "fn.zip"
    zpath.write_bytes(make_zip({"app.py": PY_ECHO}))
    name = unique_name("cli")
    make_function(make_zip({"app.py": PY_ECHO}), name=name)
    p = aws("create-function", "--function-name", name, "--runtime", PY_RUNTIME,
            "--handler", "app.handler", "--role", ROLE, "--zip-file", f"fileb://{zpath}",
            check_rc=None)
    assert p.returncode != 0
    assert "ResourceConflictException" in p.stderr

    # the CLI itself refuses non-zips, so send a zip-slip package instead
    bad = tmp_path / "bad.zip"
    bad.write_bytes(make_zip({"app.py": PY_ECHO, "../evil.py": "x = 1\n"}))
    p = aws("create-function", "--function-name", unique_name("cli"), "--runtime", PY_RUNTIME,
            "--handler", "app.handler", "--role", ROLE, "--zip-file", f"fileb://{bad}",
            check_rc=None)
    assert p.returncode != 0
    assert "InvalidParameterValueException" in p.stderr
    assert "Could not unzip uploaded file" in p.stderr

    p = aws("invoke", "--function-name", name, "--payload", "not json", str(out), check_rc=None)
    assert p.returncode != 0
    assert "InvalidRequestContentException" in p.stderr


def test_cli_get_account_settings(aws):
    p = aws("get-account-settings")
    doc = json.loads(p.stdout)
    assert doc["AccountLimit"]["ConcurrentExecutions"] == 1000
    assert doc["AccountLimit"]["CodeSizeUnzipped"] == 262144000
    assert "FunctionCount" in doc["AccountUsage"]
