"""A caller that hangs up during a synchronous invoke: the invocation runs to completion
(as on Lambda), and its instance and every counter come back."""

from __future__ import annotations

import json
import socket
import time
import urllib.request

import botocore.config
import pytest
from botocore.exceptions import ReadTimeoutError

from helpers import POST_TO_SINK, Sink, invoke, make_zip, unique_name

SLEEPY = "import time\ndef handler(event, context):\n    time.sleep(event.get('sleep', 0))\n    return 'ok'\n"


def instances(nimbus, name):
    with urllib.request.urlopen(f"{nimbus.endpoint}/nimbus/v1/instances?function={name}") as r:
        return json.load(r)


def wait_none_busy(nimbus, name, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [i["state"] for i in instances(nimbus, name)["instances"]]
        if "busy" not in states and "starting" not in states:
            return states
        time.sleep(0.1)
    raise AssertionError(f"instances still busy: {instances(nimbus, name)}")


def hang_up(endpoint: str, name: str, body: bytes, after: float) -> None:
    """Sends one Invoke and closes the connection `after` seconds later, unanswered."""
    host, port = endpoint.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(
            f"POST /2015-03-31/functions/{name}/invocations HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(after)


def test_fifty_hang_ups_leave_no_capacity_behind(nimbus, client, make_function):
    name = unique_name("hangup")
    make_function(make_zip({"app.py": SLEEPY}), name=name)
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    for _ in range(50):
        hang_up(nimbus.endpoint, name, b'{"sleep": 0.1}', 0.02)
    states = wait_none_busy(nimbus, name)
    assert len(states) <= 1, states
    # The one reserved slot is free again: back-to-back invokes are all served, none throttled.
    throttles_before = instances(nimbus, name)["functions"][0]["throttles"]
    for _ in range(5):
        inv = invoke(client, name, {"sleep": 0})
        assert inv.status == 200 and inv.body == "ok", inv
    seen = instances(nimbus, name)
    assert seen["functions"][0]["throttles"] == throttles_before, seen
    assert [i["state"] for i in seen["instances"]] in (["idle"], []), seen


def test_an_abandoned_invocation_runs_to_completion_and_frees_its_instance(nimbus, make_function):
    sink = Sink()
    try:
        name = unique_name("abandoned")
        source = POST_TO_SINK + (
            "import time\n"
            "def handler(event, context):\n"
            "    time.sleep(event['sleep'])\n"
            "    post(context.aws_request_id)\n"
            "    return 'done'\n")
        client = nimbus.new_client(read_timeout=0.5)
        make_function(make_zip({"app.py": source}), name=name,
                      Environment={"Variables": {"SINK": sink.url}})
        client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
        with pytest.raises(ReadTimeoutError):
            client.invoke(FunctionName=name, Payload=b'{"sleep": 1.5}')
        # The function was not cut short: it reaches its end after the caller left.
        sink.wait_for(1, timeout=10)
        wait_none_busy(nimbus, name)
        patient = nimbus.new_client(read_timeout=30)
        inv = invoke(patient, name, {"sleep": 0})
        assert inv.status == 200 and inv.body == "done", inv
        assert len(sink.wait_for(2)) == 2
    finally:
        sink.close()
