"""Node.js handlers and a provided.al2023 function built on awslambdaric."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import (
    NODE_RUNTIME,
    fn_arn,
    invoke,
    invoke_ok,
    make_zip,
    unique_name,
)

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")

# --------------------------------------------------------------------------
# Node.js
# --------------------------------------------------------------------------

NODE_CJS_ASYNC = """\
let count = 0;
exports.handler = async (event, context) => {
  count += 1;
  if (event && event.fail) {
    throw new Error("node boom " + event.fail);
  }
  return {
    kind: "cjs-async",
    event,
    count,
    functionName: context.functionName,
    awsRequestId: context.awsRequestId,
    invokedFunctionArn: context.invokedFunctionArn,
    memoryLimitInMB: String(context.memoryLimitInMB),
    remaining: context.getRemainingTimeInMillis(),
    envName: process.env.AWS_LAMBDA_FUNCTION_NAME,
  };
};
"""

NODE_CALLBACK = """\
exports.handler = (event, context, callback) => {
  if (event && event.fail) {
    callback(new Error("callback failure"));
    return;
  }
  setTimeout(() => callback(null, { kind: "callback", event }), 10);
};
"""

NODE_ESM = """\
import { createHash } from "node:crypto";
export const handler = async (event) => {
  return { kind: "esm", hash: createHash("sha256").update("x").digest("hex").slice(0, 8), event };
};
"""

NODE_CUSTOM_ERROR = """\
class MyError extends Error {
  constructor(m) { super(m); this.name = "MyError"; }
}
exports.handler = async () => { throw new MyError("custom failure"); };
"""


@needs_node
def test_node_cjs_async(client, make_function):
    name = unique_name("node")
    make_function(make_zip({"index.js": NODE_CJS_ASYNC}), name=name, runtime=NODE_RUNTIME,
                  handler="index.handler", MemorySize=256, Timeout=5)
    inv = invoke(client, name, {"a": 1})
    assert inv.status == 200 and inv.function_error is None, inv.body
    assert inv.executed_version == "$LATEST"
    b = inv.body
    assert b["kind"] == "cjs-async"
    assert b["event"] == {"a": 1}
    assert b["functionName"] == name
    assert b["awsRequestId"] == inv.request_id
    assert b["invokedFunctionArn"] == fn_arn(name)
    assert b["memoryLimitInMB"] == "256"
    assert 0 < b["remaining"] <= 5000
    assert b["envName"] == name
    # warm reuse
    assert invoke_ok(client, name, {})["count"] == 2


@needs_node
def test_node_cjs_thrown_error(client, make_function):
    name = unique_name("node")
    make_function(make_zip({"index.js": NODE_CJS_ASYNC}), name=name, runtime=NODE_RUNTIME,
                  handler="index.handler")
    inv = invoke(client, name, {"fail": "now"})
    assert inv.status == 200
    assert inv.function_error == "Unhandled"
    assert inv.body["errorType"] == "Error"
    assert inv.body["errorMessage"] == "node boom now"
    # still serves
    assert invoke_ok(client, name, {})["kind"] == "cjs-async"


@needs_node
def test_node_custom_error_type(client, make_function):
    name = unique_name("node")
    make_function(make_zip({"index.js": NODE_CUSTOM_ERROR}), name=name, runtime=NODE_RUNTIME,
                  handler="index.handler")
    inv = invoke(client, name, {})
    assert inv.function_error == "Unhandled"
    assert inv.body["errorType"] == "MyError"
    assert inv.body["errorMessage"] == "custom failure"


@needs_node
def test_node_callback(client, make_function):
    name = unique_name("node")
    make_function(make_zip({"index.js": NODE_CALLBACK}), name=name, runtime=NODE_RUNTIME,
                  handler="index.handler")
    assert invoke_ok(client, name, {"b": 2}) == {"kind": "callback", "event": {"b": 2}}
    inv = invoke(client, name, {"fail": True})
    assert inv.function_error == "Unhandled"
    assert inv.body["errorType"] == "Error"
    assert inv.body["errorMessage"] == "callback failure"


@needs_node
def test_node_esm(client, make_function):
    name = unique_name("node")
    make_function(make_zip({"index.mjs": NODE_ESM}), name=name, runtime=NODE_RUNTIME,
                  handler="index.handler")
    b = invoke_ok(client, name, {"c": 3})
    assert b["kind"] == "esm"
    assert b["event"] == {"c": 3}
    assert len(b["hash"]) == 8


@needs_node
def test_node_nested_handler_path(client, make_function):
    name = unique_name("node")
    make_function(make_zip({"src/lib/main.js": "exports.run = async (e) => ({nested: true});\n"}),
                  name=name, runtime=NODE_RUNTIME, handler="src/lib/main.run")
    assert invoke_ok(client, name, {}) == {"nested": True}


@needs_node
def test_node_handler_missing(client, make_function):
    name = unique_name("node")
    make_function(make_zip({"index.js": "exports.other = async () => 1;\n"}), name=name,
                  runtime=NODE_RUNTIME, handler="index.handler")
    inv = invoke(client, name, {})
    assert inv.function_error == "Unhandled"
    assert inv.body["errorType"] == "Runtime.HandlerNotFound"


@needs_node
def test_node_module_missing(client, make_function):
    name = unique_name("node")
    make_function(make_zip({"other.js": "exports.handler = async () => 1;\n"}), name=name,
                  runtime=NODE_RUNTIME, handler="index.handler")
    inv = invoke(client, name, {})
    assert inv.function_error == "Unhandled"
    assert inv.body["errorType"] == "Runtime.ImportModuleError"


# --------------------------------------------------------------------------
# provided.al2023 with awslambdaric (a real runtime interface client)
# --------------------------------------------------------------------------

RIC_APP = """\
import os, uuid
COUNT = 0
INSTANCE = uuid.uuid4().hex

def handler(event, context):
    global COUNT
    COUNT += 1
    if isinstance(event, dict) and event.get("fail"):
        raise RuntimeError("ric failure " + str(event["fail"]))
    return {
        "count": COUNT,
        "instance": INSTANCE,
        "event": event,
        "function_name": context.function_name,
        "request_id": context.aws_request_id,
        "arn": context.invoked_function_arn,
        "remaining": context.get_remaining_time_in_millis(),
    }
"""


# As a Lambda user packages it: awslambdaric and its dependencies inside the zip, run by the
# system's python3 (the test venv is not in an instance's view).
RIC_BOOTSTRAP = "#!/bin/sh\nexec python3 -m awslambdaric app.handler\n"


def _ric_package() -> dict:
    """awslambdaric and what it requires, file by file, as `pip install -t` would lay them out."""
    import importlib.metadata
    files = {}
    for dist in ["awslambdaric", "simplejson", "snapshot-restore-py"]:
        try:
            found = importlib.metadata.distribution(dist)
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover
            pytest.fail(f"{dist} is not installed in the test venv (see requirements.txt)")
        for entry in found.files or []:
            if entry.parts[0] == ".." or "__pycache__" in entry.parts or ".dist-info" in str(entry):
                continue
            files[str(entry)] = Path(entry.locate()).read_bytes()
    return files


def _ric_zip(app: str = RIC_APP):
    files = _ric_package()
    files.update({"bootstrap": RIC_BOOTSTRAP, "app.py": app})
    return make_zip(files, modes={"bootstrap": 0o755})


@pytest.fixture
def ric_fn(make_function):
    name = unique_name("ric")
    make_function(_ric_zip(), name=name, runtime="provided.al2023", handler="app.handler", Timeout=10)
    return name


def test_awslambdaric_success_and_warm(client, ric_fn):
    inv = invoke(client, ric_fn, {"hello": "ric"})
    assert inv.status == 200
    assert inv.function_error is None, inv.body
    assert inv.executed_version == "$LATEST"
    b = inv.body
    assert b["event"] == {"hello": "ric"}
    assert b["count"] == 1
    assert b["function_name"] == ric_fn
    assert b["request_id"] == inv.request_id
    assert b["arn"] == fn_arn(ric_fn)
    assert 0 < b["remaining"] <= 10000
    second = invoke_ok(client, ric_fn, {"n": 2})
    assert second["count"] == 2
    assert second["instance"] == b["instance"]
    assert second["request_id"] != b["request_id"]


def test_awslambdaric_exception(client, ric_fn):
    inv = invoke(client, ric_fn, {"fail": "x1"})
    assert inv.status == 200
    assert inv.function_error == "Unhandled"
    assert inv.body["errorType"] == "RuntimeError"
    assert inv.body["errorMessage"] == "ric failure x1"
    assert isinstance(inv.body.get("stackTrace"), list)
    # the runtime keeps serving after a handler exception
    ok = invoke_ok(client, ric_fn, {})
    assert ok["count"] == 2


def test_awslambdaric_import_error(client, make_function):
    name = unique_name("ric")
    z = _ric_zip("import not_a_module_xyz\n")
    make_function(z, name=name, runtime="provided.al2023", handler="app.handler")
    inv = invoke(client, name, {})
    assert inv.function_error == "Unhandled"
    assert inv.body["errorType"] == "Runtime.ImportModuleError"


def test_provided_missing_bootstrap(client, make_function):
    name = unique_name("prov")
    make_function(make_zip({"app.py": RIC_APP}), name=name, runtime="provided.al2023",
                  handler="app.handler")
    inv = invoke(client, name, {})
    assert inv.status == 200
    assert inv.function_error == "Unhandled"
    assert inv.body.get("errorType", "").startswith("Runtime.")
