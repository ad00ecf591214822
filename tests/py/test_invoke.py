"""Invoke (RequestResponse) against python functions."""

from __future__ import annotations

import base64
import http.client
import json
import re
import threading
import time
import uuid

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, HTTPClientError

from helpers import (
    SERVER_MARKER_VAR,
    SERVER_MARKER_VALUE,
    SIX_MB,
    assert_client_error,
    fn_arn,
    invoke,
    invoke_ok,
    kill_tagged,
    make_zip,
    partial_arn,
    py_zip,
    tagged_pids,
    unique_name,
    wait_tagged_gone,
)

PY_CONTEXT = """\
import os

def handler(event, context):
    return {
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": str(context.memory_limit_in_mb),
        "aws_request_id": context.aws_request_id,
        "remaining": context.get_remaining_time_in_millis(),
        "log_group_name": context.log_group_name,
        "env": dict(os.environ),
    }
"""

PY_BEHAVIOUR = """\
import os, time, json, uuid
COUNT = 0
INSTANCE = uuid.uuid4().hex

def handler(event, context):
    global COUNT
    COUNT += 1
    action = event.get("action") if isinstance(event, dict) else None
    if action == "sleep":
        time.sleep(event["seconds"])
    elif action == "raise":
        raise ValueError("boom: " + str(event.get("msg", "")))
    elif action == "exit":
        os._exit(1)
    elif action == "big":
        return "x" * event["size"]
    elif action == "len":
        return {"len": len(event["data"])}
    return {"count": COUNT, "pid": os.getpid(), "instance": INSTANCE, "event": event}
"""


@pytest.fixture
def behaviour_fn(make_function):
    name = unique_name("beh")
    make_function(py_zip(PY_BEHAVIOUR), name=name, Timeout=3)
    return name


@pytest.fixture
def tagged_fn(make_function):
    """(name, tag): Timeout=1, env NIMBUS_E2E_TAG=tag to find its processes."""
    name = unique_name("tag")
    tag = uuid.uuid4().hex
    make_function(py_zip(PY_BEHAVIOUR), name=name, Timeout=1,
                  Environment={"Variables": {"NIMBUS_E2E_TAG": tag}})
    yield name, tag
    make_function.cleanup()
    kill_tagged(tag)


# --------------------------------------------------------------------------
# basics
# --------------------------------------------------------------------------


def test_invoke_returns_result(client, make_function):
    name = unique_name()
    make_function(name=name)
    inv = invoke(client, name, {"hello": "world", "n": [1, 2, 3]})
    assert inv.status == 200
    assert inv.function_error is None
    assert inv.executed_version == "$LATEST"
    assert inv.body["event"] == {"hello": "world", "n": [1, 2, 3]}
    assert inv.request_id


def test_invoke_raw_headers(nimbus, make_function):
    name = unique_name()
    make_function(name=name)
    status, headers, body = nimbus.raw_request(
        "POST", f"/2015-03-31/functions/{name}/invocations", b'{"a": 1}')
    assert status == 200
    assert headers.get("x-amz-executed-version") == "$LATEST"
    assert "x-amz-function-error" not in headers
    assert json.loads(body)["event"] == {"a": 1}


TRICKY_JSON_HANDLER = """\
import decimal
def handler(event, context):
    return {"event": event, "floats": [1e100, -0.0, 0.1, 2.5e-8, float("inf")],
            "text": "caf\\u00e9 \\U0001F600 \\"quoted\\" \\\\ \\n", "decimal": decimal.Decimal("1.5"),
            "nested": {"a": [{}, [], {"b": None}]}, "keys": {1: "int key", True: "bool key"}}
"""


def test_the_runtime_client_encodes_json_as_the_json_module_does(nimbus, make_function):
    name = unique_name()
    make_function(make_zip({"app.py": TRICKY_JSON_HANDLER}), name=name)
    event = {"text": "caf\u00e9 \U0001F600", "n": [1, -2.5, 1e-7, 12345678901234567890], "deep": {"x": [None, True]}}
    status, _, body = nimbus.raw_request(
        "POST", f"/2015-03-31/functions/{name}/invocations", json.dumps(event).encode())
    assert status == 200
    expected = {"event": event, "floats": [1e100, -0.0, 0.1, 2.5e-8, float("inf")],
                "text": "caf\u00e9 \U0001F600 \"quoted\" \\ \n", "decimal": 1.5,
                "nested": {"a": [{}, [], {"b": None}]}, "keys": {1: "int key", True: "bool key"}}
    assert body == json.dumps(expected).encode(), body


def test_invoke_empty_payload_and_scalars(client, make_function):
    name = unique_name()
    make_function(name=name)
    inv = client.invoke(FunctionName=name)  # no payload at all
    assert inv["StatusCode"] == 200 and "FunctionError" not in inv
    for ev in ("just a string", 42, [1, 2], None, True):
        assert invoke_ok(client, name, payload=json.dumps(ev).encode())["event"] == ev


def test_invoke_qualifier_forms(client, make_function):
    name = unique_name()
    make_function(name=name)
    for ident, kw in ((f"{name}:$LATEST", {}),
                      (name, {"Qualifier": "$LATEST"}),
                      (f"{name}:$LATEST", {"Qualifier": "$LATEST"}),
                      (fn_arn(name, "$LATEST"), {}),
                      (partial_arn(name), {}),
                      (fn_arn(name), {})):
        inv = invoke(client, ident, {"k": 1}, **kw)
        assert inv.status == 200 and inv.function_error is None, (ident, kw, inv.body)
        assert inv.executed_version == "$LATEST"
        assert inv.body["event"] == {"k": 1}


def test_invoke_qualifier_mismatch(client, make_function):
    name = unique_name()
    make_function(name=name)
    assert_client_error(
        lambda: client.invoke(FunctionName=f"{name}:$LATEST", Qualifier="1", Payload=b"{}"),
        "InvalidParameterValueException", 400)
    assert_client_error(
        lambda: client.invoke(FunctionName=fn_arn(name, "1"), Qualifier="$LATEST", Payload=b"{}"),
        "InvalidParameterValueException", 400)


def test_invoke_unknown_function(client):
    assert_client_error(lambda: client.invoke(FunctionName=unique_name("nope"), Payload=b"{}"),
                        "ResourceNotFoundException", 404)
    assert_client_error(lambda: client.invoke(FunctionName=fn_arn(unique_name("nope")), Payload=b"{}"),
                        "ResourceNotFoundException", 404)


@pytest.mark.parametrize("payload", [b"{not json", b"hello", b'{"a": 1', b"\xff\xfe"])
def test_invoke_non_json_payload(client, make_function, payload):
    name = unique_name()
    make_function(name=name)
    assert_client_error(lambda: client.invoke(FunctionName=name, Payload=payload),
                        "InvalidRequestContentException", 400)
    invoke_ok(client, name, {"still": "fine"})


# --------------------------------------------------------------------------
# function errors
# --------------------------------------------------------------------------


def test_handler_exception_unhandled(client, behaviour_fn):
    inv = invoke(client, behaviour_fn, {"action": "raise", "msg": "xyz"})
    assert inv.status == 200
    assert inv.function_error == "Unhandled"
    assert inv.executed_version == "$LATEST"
    assert inv.body["errorType"] == "ValueError"
    assert inv.body["errorMessage"] == "boom: xyz"
    trace = inv.body["stackTrace"]
    assert isinstance(trace, list) and trace, inv.body
    # Only the function's frames, as on Lambda: the runtime client's own are dropped.
    assert "app.py" in trace[0], trace
    assert not any("nimbus_ric" in frame for frame in trace), trace
    # instance survives a handled-by-runtime exception (warm)
    ok = invoke_ok(client, behaviour_fn, {})
    assert ok["count"] >= 2


def test_handler_exception_raw_header(nimbus, behaviour_fn):
    status, headers, body = nimbus.raw_request(
        "POST", f"/2015-03-31/functions/{behaviour_fn}/invocations", b'{"action": "raise"}')
    assert status == 200
    assert headers.get("x-amz-function-error") == "Unhandled"
    assert headers.get("x-amz-executed-version") == "$LATEST"
    assert json.loads(body)["errorType"] == "ValueError"


def test_timeout(client, tagged_fn):
    name, tag = tagged_fn
    first = invoke_ok(client, name, {})
    old_pids = tagged_pids(tag)
    assert old_pids, "could not find the instance process by its environment"
    t0 = time.monotonic()
    inv = invoke(client, name, {"action": "sleep", "seconds": 10})
    elapsed = time.monotonic() - t0
    assert inv.status == 200
    assert inv.function_error == "Unhandled"
    assert inv.body["errorType"] == "Sandbox.Timedout"
    m = re.fullmatch(r"RequestId: (\S+) Error: Task timed out after 1\.00 seconds", inv.body["errorMessage"])
    assert m, inv.body["errorMessage"]
    assert m.group(1) == inv.request_id
    assert elapsed < 6, f"timeout answered after {elapsed:.1f}s for Timeout=1"
    # the timed-out instance is killed; the next invoke gets a fresh one
    assert not wait_tagged_gone(old_pids, 5), f"timed-out instance {old_pids} still alive"
    after = invoke_ok(client, name, {})
    assert after["count"] == 1
    assert after["instance"] != first["instance"]


def test_crash_exit_error(client, tagged_fn):
    name, tag = tagged_fn
    first = invoke_ok(client, name, {})
    old_pids = tagged_pids(tag)
    inv = invoke(client, name, {"action": "exit"})
    assert inv.status == 200
    assert inv.function_error == "Unhandled"
    assert inv.body["errorType"] == "Runtime.ExitError"
    assert "Runtime exited with error: exit status 1" in inv.body["errorMessage"]
    assert inv.body["errorMessage"].startswith(f"RequestId: {inv.request_id} Error: ")
    after = invoke_ok(client, name, {})
    assert after["count"] == 1
    assert after["instance"] != first["instance"]
    assert not wait_tagged_gone(old_pids, 5)


def test_import_error(client, make_function):
    name = unique_name()
    make_function(make_zip({"app.py": "import no_such_module_nimbus_e2e\n\ndef handler(e, c):\n    return 1\n"}),
                  name=name)
    inv = invoke(client, name, {})
    assert inv.status == 200
    assert inv.function_error == "Unhandled"
    assert inv.body["errorType"] == "Runtime.ImportModuleError"
    assert "no_such_module_nimbus_e2e" in inv.body["errorMessage"]
    # stays failing, server stays up
    inv2 = invoke(client, name, {})
    assert inv2.function_error == "Unhandled"
    assert inv2.body["errorType"] == "Runtime.ImportModuleError"


def test_missing_module_file(client, make_function):
    name = unique_name()
    make_function(make_zip({"other.py": "def handler(e, c):\n    return 1\n"}), name=name)
    inv = invoke(client, name, {})
    assert inv.function_error == "Unhandled"
    assert inv.body["errorType"] == "Runtime.ImportModuleError"


def test_handler_not_found(client, make_function):
    name = unique_name()
    make_function(py_zip(), name=name, handler="app.does_not_exist")
    inv = invoke(client, name, {})
    assert inv.status == 200
    assert inv.function_error == "Unhandled"
    assert inv.body["errorType"] == "Runtime.HandlerNotFound"


def test_syntax_error(client, make_function):
    name = unique_name()
    make_function(make_zip({"app.py": "def handler(e, c)\n    return 1\n"}), name=name)
    inv = invoke(client, name, {})
    assert inv.function_error == "Unhandled"
    assert inv.body["errorType"] == "Runtime.UserCodeSyntaxError"


# --------------------------------------------------------------------------
# payload limits
# --------------------------------------------------------------------------


def test_request_too_large(nimbus, client, behaviour_fn):
    payload = json.dumps({"data": "x" * (SIX_MB + 1024)}).encode()
    try:
        client.invoke(FunctionName=behaviour_fn, Payload=payload)
    except ClientError as e:
        assert e.response["Error"]["Code"] == "RequestEntityTooLargeException", e.response
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    except (ConnectionClosedError, HTTPClientError):
        # botocore could not read the early answer; check the wire directly
        try:
            status, headers, _ = nimbus.raw_request(
                "POST", f"/2015-03-31/functions/{behaviour_fn}/invocations", payload)
        except (OSError, http.client.HTTPException) as e:
            pytest.fail(f"server dropped an oversized invoke without a 413 answer: {e!r}")
        assert status == 413
        assert headers.get("x-amzn-errortype", "").split(":")[0] == "RequestEntityTooLargeException"
    else:
        pytest.fail("a request over 6 MB was accepted")
    # server unharmed
    invoke_ok(client, behaviour_fn, {})


def test_request_just_under_limit_ok(client, behaviour_fn):
    data = "y" * (5 * 1024 * 1024)
    body = invoke_ok(client, behaviour_fn, {"action": "len", "data": data})
    assert body == {"len": len(data)}


def test_response_too_large(client, behaviour_fn):
    inv = invoke(client, behaviour_fn, {"action": "big", "size": 7 * 1024 * 1024})
    assert inv.status == 200
    assert inv.function_error == "Unhandled"
    assert inv.body["errorType"] == "Function.ResponseSizeTooLarge"
    assert len(inv.raw) < 64 * 1024
    invoke_ok(client, behaviour_fn, {})


def test_response_just_under_limit_ok(client, behaviour_fn):
    size = 5 * 1024 * 1024
    inv = invoke(client, behaviour_fn, {"action": "big", "size": size})
    assert inv.function_error is None
    assert inv.body == "x" * size


# --------------------------------------------------------------------------
# instances: reuse, updates, context, environment
# --------------------------------------------------------------------------


def test_warm_reuse(client, make_function):
    name = unique_name()
    make_function(name=name)
    a = invoke_ok(client, name, {})
    b = invoke_ok(client, name, {})
    assert a["count"] == 1
    assert b["count"] == 2
    assert a["instance"] == b["instance"]
    assert a["pid"] == b["pid"]


def test_update_code_takes_effect(client, make_function):
    name = unique_name()
    make_function(make_zip({"app.py": "def handler(e, c):\n    return 'v1'\n"}), name=name)
    assert invoke_ok(client, name) == "v1"
    assert invoke_ok(client, name) == "v1"
    client.update_function_code(FunctionName=name,
                                ZipFile=make_zip({"app.py": "def handler(e, c):\n    return 'v2'\n"}))
    assert invoke_ok(client, name) == "v2"
    assert invoke_ok(client, name) == "v2"


def test_update_handler_takes_effect(client, make_function):
    name = unique_name()
    src = "def one(e, c):\n    return 1\n\ndef two(e, c):\n    return 2\n"
    make_function(make_zip({"app.py": src}), name=name, handler="app.one")
    assert invoke_ok(client, name) == 1
    client.update_function_configuration(FunctionName=name, Handler="app.two")
    assert invoke_ok(client, name) == 2


def test_update_env_takes_effect(client, make_function):
    name = unique_name()
    src = "import os\n\ndef handler(e, c):\n    return os.environ.get('COLOR')\n"
    make_function(make_zip({"app.py": src}), name=name, Environment={"Variables": {"COLOR": "red"}})
    assert invoke_ok(client, name) == "red"
    client.update_function_configuration(FunctionName=name, Environment={"Variables": {"COLOR": "blue"}})
    assert invoke_ok(client, name) == "blue"
    client.update_function_configuration(FunctionName=name, Environment={"Variables": {}})
    assert invoke_ok(client, name) is None


def test_update_memory_and_timeout_seen_by_context(client, make_function):
    name = unique_name()
    make_function(make_zip({"app.py": PY_CONTEXT}), name=name, MemorySize=128, Timeout=3)
    assert int(invoke_ok(client, name)["memory_limit_in_mb"]) == 128
    client.update_function_configuration(FunctionName=name, MemorySize=256, Timeout=10)
    body = invoke_ok(client, name)
    assert int(body["memory_limit_in_mb"]) == 256
    assert 3000 < body["remaining"] <= 10000


def test_context_and_env(client, make_function):
    name = unique_name("ctx")
    make_function(make_zip({"app.py": PY_CONTEXT}), name=name, MemorySize=192, Timeout=5,
                  Environment={"Variables": {"USER_VAR": "u1"}})
    inv = invoke(client, name, {})
    assert inv.function_error is None, inv.body
    b = inv.body
    assert b["function_name"] == name
    assert b["function_version"] == "$LATEST"
    assert b["invoked_function_arn"] == fn_arn(name)
    assert int(b["memory_limit_in_mb"]) == 192
    assert b["aws_request_id"] == inv.request_id
    assert 0 < b["remaining"] <= 5000
    assert b["log_group_name"] == f"/aws/lambda/{name}"
    env = b["env"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "192"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_REGION"] == "us-east-1"
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["_HANDLER"] == "app.handler"
    assert env["USER_VAR"] == "u1"
    assert env.get("AWS_LAMBDA_LOG_GROUP_NAME") == f"/aws/lambda/{name}"
    # nothing of the server's own environment leaks in
    assert SERVER_MARKER_VAR not in env
    assert SERVER_MARKER_VALUE not in json.dumps(env)
    for leaked in ("NIMBUS_BIN", "NIMBUS_PYTHON", "NIMBUS_NODE", "PYTEST_CURRENT_TEST"):
        assert leaked not in env, leaked
    # a second invoke gets its own request id
    b2 = invoke(client, name, {})
    assert b2.body["aws_request_id"] == b2.request_id != inv.request_id


def test_invoked_function_arn_with_qualifier(client, make_function):
    name = unique_name()
    make_function(make_zip({"app.py": PY_CONTEXT}), name=name)
    body = invoke_ok(client, name, Qualifier="$LATEST")
    assert body["invoked_function_arn"] == fn_arn(name, "$LATEST")


def test_functions_isolated_env(client, make_function):
    a, b = unique_name("iso"), unique_name("iso")
    src = "import os\n\ndef handler(e, c):\n    return dict(os.environ)\n"
    make_function(make_zip({"app.py": src}), name=a, Environment={"Variables": {"SECRET_A": "aaa"}})
    make_function(make_zip({"app.py": src}), name=b)
    env_b = invoke_ok(client, b)
    assert "SECRET_A" not in env_b
    assert invoke_ok(client, a)["SECRET_A"] == "aaa"


def test_concurrent_invokes(nimbus, make_function):
    name = unique_name("conc")
    src = ("import time, uuid\nINST = uuid.uuid4().hex\n\n"
           "def handler(e, c):\n    time.sleep(0.2)\n    return {'i': e['i'], 'inst': INST}\n")
    make_function(make_zip({"app.py": src}), name=name, Timeout=30)
    c = nimbus.new_client(max_pool_connections=32)
    results: dict = {}
    errors: list = []

    def worker(i):
        try:
            inv = invoke(c, name, {"i": i})
            results[i] = inv
        except Exception as e:  # noqa: BLE001
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    elapsed = time.monotonic() - t0
    assert not errors, errors
    assert len(results) == 20
    for i, inv in results.items():
        assert inv.status == 200 and inv.function_error is None, inv.body
        assert inv.body["i"] == i
    # they really ran in parallel on more than one instance
    assert len({inv.body["inst"] for inv in results.values()}) > 1
    assert elapsed < 60


def test_log_type_tail_returns_the_invocation_log(client, make_function):
    name = unique_name()
    code = "def handler(event, context):\n    print('line from the handler')\n    return 1\n"
    make_function(make_zip({"app.py": code}), name=name)
    first = client.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    log = base64.b64decode(first["LogResult"]).decode()
    request_id = first["ResponseMetadata"]["RequestId"]
    lines = log.splitlines()
    assert lines[0] == f"START RequestId: {request_id} Version: $LATEST"
    assert "line from the handler" in lines
    assert f"END RequestId: {request_id}" in lines
    report = lines[-1]
    assert report.startswith(f"REPORT RequestId: {request_id}\tDuration: ")
    assert "\tBilled Duration: " in report and "\tMemory Size: 128 MB\t" in report
    assert "Init Duration: " in report  # a cold start
    warm = client.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    assert "Init Duration" not in base64.b64decode(warm["LogResult"]).decode()
    assert "LogResult" not in client.invoke(FunctionName=name, Payload=b"{}")


def test_log_type_tail_is_cut_to_the_last_4096_bytes(client, make_function):
    name = unique_name()
    code = "def handler(event, context):\n    for i in range(500):\n        print('x' * 40, i)\n    return 1\n"
    make_function(make_zip({"app.py": code}), name=name)
    inv = client.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    log = base64.b64decode(inv["LogResult"])
    assert len(log) == 4096
    assert log.decode().rstrip("\n").splitlines()[-1].startswith("REPORT RequestId: ")


def test_log_type_must_be_tail_or_none(nimbus, make_function):
    name = unique_name()
    make_function(name=name)
    status, headers, _ = nimbus.raw_request(
        "POST", f"/2015-03-31/functions/{name}/invocations", b"{}", headers={"X-Amz-Log-Type": "Verbose"})
    assert status == 400
    assert headers.get("x-amzn-errortype") == "ValidationException"


def test_python_sources_are_compiled_once_and_stay_read_only(nimbus, client, make_function):
    """Instances see their code read-only, so without help every cold start would compile
    every module it imports; the server compiles a package's sources once, beside them."""
    name = unique_name()
    source = "import helper\ndef handler(event, context):\n    return helper.VALUE\n"
    created = make_function(make_zip({"app.py": source, "pkg/__init__.py": "",
                                      "helper.py": "VALUE = 'from helper'\n"}), name=name)
    sha = base64.b64decode(created["CodeSha256"]).hex()
    code = nimbus.data_dir / "code" / sha
    compiled = code / "__pycache__"
    deadline = time.monotonic() + 30
    done = nimbus.data_dir / "code" / f"{sha}.compiled"  # written once the tree is sealed again
    while not (done.exists() and any(compiled.glob("helper.*.pyc"))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert any(compiled.glob("helper.*.pyc")) and any((code / "pkg" / "__pycache__").glob("__init__.*.pyc")), \
        sorted(p.name for p in code.rglob("*"))
    for path in [code, compiled, *compiled.iterdir()]:
        assert path.stat().st_mode & 0o222 == 0, f"{path} is writable"
    assert invoke_ok(client, name) == "from helper"
