"""Observability through the public interfaces: invocation logs (exact Lambda lines, the
log API, following, the output cap), /metrics parsed by Prometheus's own parser, and the
usage bill's arithmetic on a known sequence."""

from __future__ import annotations

import base64
import http.client
import json
import math
import re
import threading
import time
import urllib.parse
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from helpers import make_zip, unique_name

HELLO = "def handler(event, context):\n    print('hello from', context.aws_request_id)\n    return 'ok'\n"
REPORT = re.compile(
    r"^REPORT RequestId: (?P<id>\S+)\tDuration: (?P<d>\d+\.\d\d) ms\tBilled Duration: (?P<b>\d+) ms\t"
    r"Memory Size: (?P<m>\d+) MB\tMax Memory Used: (?P<u>\d+) MB\t(Init Duration: (?P<i>\d+\.\d\d) ms\t)?$")


def get_json(nimbus, path):
    with urllib.request.urlopen(f"{nimbus.endpoint}{path}") as r:
        return json.load(r)


def stored_logs(nimbus, name, count, **params):
    query = urllib.parse.urlencode(params)
    deadline = time.time() + 10
    while time.time() < deadline:
        logs = get_json(nimbus, f"/nimbus/v1/functions/{name}/logs?{query}")["logs"]
        if len(logs) >= count:
            return logs
        time.sleep(0.05)
    raise AssertionError(f"expected {count} stored logs for {name}")


def test_every_invocation_log_has_lambdas_lines(nimbus, client, make_function):
    name = unique_name()
    make_function(make_zip({"app.py": HELLO}), name=name, MemorySize=256)
    first = client.invoke(FunctionName=name, Payload=b"{}")
    request_id = first["ResponseMetadata"]["RequestId"]
    [entry] = stored_logs(nimbus, name, 1, request_id=request_id)
    lines = entry["text"].splitlines()
    assert lines[0] == f"START RequestId: {request_id} Version: $LATEST"
    assert lines[1] == f"hello from {request_id}"
    assert lines[-2] == f"END RequestId: {request_id}"
    report = REPORT.match(lines[-1])
    assert report, lines[-1]
    assert report["id"] == request_id and report["m"] == "256"
    assert report["i"] is not None, "a cold start reports its init"
    billed = math.ceil(float(report["d"]) + float(report["i"]))
    assert int(report["b"]) == billed, "billed duration is duration plus init, rounded up to 1 ms"
    assert entry["version"] == "$LATEST" and entry["function"] == name


def test_timeouts_and_crashes_are_logged_as_lambda_logs_them(nimbus, client, make_function):
    name = unique_name()
    code = ("import os, time\ndef handler(event, context):\n"
            "    if event.get('crash'):\n        os._exit(3)\n    time.sleep(5)\n")
    make_function(make_zip({"app.py": code}), name=name, Timeout=1)
    slow = client.invoke(FunctionName=name, Payload=b"{}")
    slow_id = slow["ResponseMetadata"]["RequestId"]
    crash = client.invoke(FunctionName=name, Payload=b'{"crash": true}')
    crash_id = crash["ResponseMetadata"]["RequestId"]
    [timed_out] = stored_logs(nimbus, name, 1, request_id=slow_id)
    assert f"RequestId: {slow_id} Error: Task timed out after 1.00 seconds" in timed_out["text"].splitlines()
    [crashed] = stored_logs(nimbus, name, 1, request_id=crash_id)
    lines = crashed["text"].splitlines()
    assert f"RequestId: {crash_id} Error: Runtime exited with error: exit status 3" in lines
    assert "Runtime.ExitError" in lines


def test_log_search_by_text_and_time(nimbus, client, make_function):
    name = unique_name()
    make_function(make_zip({"app.py": "def handler(event, context):\n    print('needle' if event.get('mark') else 'hay')\n"}), name=name)
    for mark in (False, True, False):
        client.invoke(FunctionName=name, Payload=json.dumps({"mark": mark}).encode())
    assert len(stored_logs(nimbus, name, 3)) == 3
    found = stored_logs(nimbus, name, 1, grep="needle")
    assert len(found) == 1 and "needle" in found[0]["text"]
    assert get_json(nimbus, f"/nimbus/v1/functions/{name}/logs?since=0&until=1")["logs"] == []
    assert len(get_json(nimbus, f"/nimbus/v1/functions/{name}/logs?since=10m")["logs"]) == 3


def test_output_is_capped_per_invocation(nimbus, client, make_function):
    name = unique_name()
    make_function(make_zip({"app.py": "def handler(event, context):\n    for i in range(40000):\n        print('x' * 60)\n    return 'done'\n"}), name=name, Timeout=30)
    out = client.invoke(FunctionName=name, Payload=b"{}")
    assert json.loads(out["Payload"].read()) == "done"
    request_id = out["ResponseMetadata"]["RequestId"]
    [entry] = stored_logs(nimbus, name, 1, request_id=request_id)
    assert len(entry["text"]) < 1_100_000
    assert "[nimbus] output truncated" in entry["text"]
    assert entry["text"].splitlines()[-1].startswith("REPORT RequestId:")


def test_follow_streams_new_invocations(nimbus, client, make_function):
    name = unique_name()
    make_function(make_zip({"app.py": HELLO}), name=name)
    u = urllib.parse.urlsplit(nimbus.endpoint)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=20)
    conn.request("GET", f"/nimbus/v1/functions/{name}/logs?follow=true")
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("content-type").startswith("text/event-stream")
    seen = []

    def read():
        for raw in response:
            line = raw.decode().strip()
            if line.startswith("data:"):
                seen.append(json.loads(line[5:]))
                if len(seen) == 2:
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    ids = [client.invoke(FunctionName=name, Payload=b"{}")["ResponseMetadata"]["RequestId"] for _ in range(2)]
    reader.join(timeout=15)
    conn.close()
    assert [e["request_id"] for e in seen] == ids


def metric(families, name, **labels):
    for family in families:
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def scrape(nimbus):
    with urllib.request.urlopen(f"{nimbus.endpoint}/metrics") as r:
        assert r.headers["content-type"].startswith("text/plain")
        return list(text_string_to_metric_families(r.read().decode()))


def test_metrics_count_a_known_sequence(nimbus, client, make_function):
    name = unique_name()
    code = "def handler(event, context):\n    if event.get('fail'):\n        raise ValueError('no')\n    return 1\n"
    make_function(make_zip({"app.py": code}), name=name)
    for fail in (False, False, True, False):
        client.invoke(FunctionName=name, Payload=json.dumps({"fail": fail}).encode())
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    try:
        client.invoke(FunctionName=name, Payload=b"{}")
    except client.exceptions.TooManyRequestsException:
        pass
    families = scrape(nimbus)
    assert metric(families, "nimbus_invocations_total", function=name, outcome="success") == 3
    assert metric(families, "nimbus_invocations_total", function=name, outcome="error") == 1
    assert metric(families, "nimbus_invocations_total", function=name, outcome="throttled") == 1
    assert metric(families, "nimbus_errors_total", function=name) == 1
    assert metric(families, "nimbus_throttles_total", function=name) == 1
    assert metric(families, "nimbus_cold_starts_total", function=name) == 1
    assert metric(families, "nimbus_duration_seconds_count", function=name) == 4
    assert metric(families, "nimbus_init_duration_seconds_count", function=name) == 1
    assert metric(families, "nimbus_billed_gb_seconds_total", function=name) > 0
    names = {f.name for f in families}
    for expected in ("nimbus_instances", "nimbus_concurrent_executions", "nimbus_async_queue_depth",
                     "nimbus_dead_letters"):
        assert expected in names, expected


def test_usage_bill_adds_up(nimbus, client, make_function):
    name = unique_name()
    make_function(make_zip({"app.py": HELLO}), name=name, MemorySize=512)
    billed_ms = []
    for _ in range(5):
        out = client.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
        report = REPORT.match(base64.b64decode(out["LogResult"]).decode().splitlines()[-1])
        billed_ms.append(int(report["b"]))
    deadline = time.time() + 10
    while time.time() < deadline:
        bill = get_json(nimbus, f"/nimbus/v1/usage?function={name}")
        if bill["functions"] and bill["functions"][0]["requests"] == 5:
            break
        time.sleep(0.05)
    [line] = bill["functions"]
    assert line["requests"] == 5
    expected_gb_s = sum(billed_ms) / 1000 * 512 / 1024
    assert abs(line["billed_gb_seconds"] - expected_gb_s) < 1e-9
    prices = bill["prices"]
    expected_cost = 5 * prices["per_million_requests"] / 1e6 + expected_gb_s * prices["per_gb_second"]
    assert abs(line["cost"] - expected_cost) < 1e-12
    assert line["init_gb_seconds"] > 0, "the cold start's init is billed too"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", line["day"])
