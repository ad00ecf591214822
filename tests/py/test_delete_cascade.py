"""Deleting a function removes everything that hangs off it, as Lambda does: provisioned
instances (not started again), schedules, URL, event-invoke config and queued events. A
schedule that cannot fire says which and backs off; cgroups go on a clean shutdown."""

from __future__ import annotations

import json
import os
import sqlite3
import time
import urllib.request

from helpers import make_zip, on_postgres, py_zip, sqlite_only, unique_name, ROLE, PY_RUNTIME

SLEEPY = "import time\ndef handler(event, context):\n    time.sleep(event.get('sleep', 0))\n    return 'ok'\n"


def get_json(srv, path):
    with urllib.request.urlopen(f"{srv.endpoint}{path}") as r:
        return json.load(r)


def post_json(srv, path, body):
    request = urllib.request.Request(f"{srv.endpoint}{path}", data=json.dumps(body).encode(),
                                     method="POST", headers={"content-type": "application/json"})
    with urllib.request.urlopen(request) as r:
        return json.load(r)


def test_deleting_a_function_removes_all_that_hangs_off_it(server_factory, tmp_path):
    srv = server_factory(tmp_path / "data")
    client = srv.client
    name = unique_name()
    client.create_function(FunctionName=name, Runtime=PY_RUNTIME, Role=ROLE, Handler="app.handler",
                           Code={"ZipFile": make_zip({"app.py": SLEEPY})}, Publish=True)
    client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    client.put_provisioned_concurrency_config(FunctionName=name, Qualifier="live",
                                              ProvisionedConcurrentExecutions=2)
    client.create_function_url_config(FunctionName=name, AuthType="NONE")
    client.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    post_json(srv, "/nimbus/v1/schedules",
              {"name": f"{name}-tick", "function": name, "expression": "* * * * * *", "enabled": True})
    arn = client.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    post_json(srv, "/nimbus/v1/schedules",
              {"name": f"{name}-arn", "function": f"{arn}:live", "expression": "rate(1 minute)"})
    # A queued event that will not be delivered before the delete (a long sleep holds the way).
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        live = [i for i in get_json(srv, f"/nimbus/v1/instances?function={name}")["instances"]
                if i["provisioned"] and i["state"] == "idle"]
        if len(live) == 2:
            break
        time.sleep(0.1)
    assert len(live) == 2, "provisioned instances are up"
    schedules = {s["name"]: s for s in get_json(srv, "/nimbus/v1/schedules")["schedules"]}
    assert schedules[f"{name}-arn"]["function"] == f"{name}:live", "an ARN target is stored as name:qualifier"

    client.delete_function(FunctionName=name)
    assert [s for s in get_json(srv, "/nimbus/v1/schedules")["schedules"]
            if s["function"].split(":")[0] == name] == []
    # Provisioned instances go and are not started again.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and get_json(srv, f"/nimbus/v1/instances?function={name}")["instances"]:
        time.sleep(0.1)
    assert get_json(srv, f"/nimbus/v1/instances?function={name}")["instances"] == []
    time.sleep(2.5)
    assert get_json(srv, f"/nimbus/v1/instances?function={name}")["instances"] == [], \
        "a deleted function's provisioned instances are not restarted"
    log = srv.log_path.read_text()
    assert "FOREIGN KEY" not in log, log[-3000:]

    # A function made again under the name starts with nothing of the old one.
    client.create_function(FunctionName=name, Runtime=PY_RUNTIME, Role=ROLE, Handler="app.handler",
                           Code={"ZipFile": py_zip()})
    assert "ProvisionedConcurrencyConfigs" not in client.list_provisioned_concurrency_configs(
        FunctionName=name) or not client.list_provisioned_concurrency_configs(
        FunctionName=name)["ProvisionedConcurrencyConfigs"]
    assert client.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"] == []
    assert client.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"] == []
    if not on_postgres():
        db = sqlite3.connect(srv.data_dir / "nimbus.db")
        try:
            assert db.execute("SELECT count(*) FROM async_events WHERE function = ?", (name,)).fetchone()[0] == 0
        finally:
            db.close()


def test_a_schedule_that_cannot_fire_says_which_and_backs_off(server_factory, tmp_path):
    sqlite_only()
    data = tmp_path / "data"
    srv = server_factory(data)
    srv.stop()
    # A schedule left over (from an older server) for a function that no longer exists.
    db = sqlite3.connect(data / "nimbus.db")
    now_ms = int(time.time() * 1000)
    config = {"name": "orphan", "function": "gone-fn", "expression": "* * * * * *",
              "payload": {}, "enabled": True, "created_ms": now_ms, "next_fire_ms": now_ms,
              "last_fire_ms": None}
    with db:
        db.execute("INSERT INTO schedules (name, function, config, next_fire_ms) VALUES (?, ?, ?, ?)",
                   ("orphan", "gone-fn", json.dumps(config), now_ms))
    db.close()
    srv = server_factory(data)
    time.sleep(4)
    lines = [l for l in srv.log_path.read_text().splitlines() if "could not fire" in l]
    assert lines, srv.log_tail()
    assert "orphan" in lines[0] and "gone-fn" in lines[0], lines[0]
    # Backing off (1 s, 2 s, 4 s…): far fewer than one complaint per second.
    assert len(lines) <= 3, lines


def test_a_clean_shutdown_removes_the_servers_cgroups(server_factory, tmp_path):
    srv = server_factory(tmp_path / "data")
    health = get_json(srv, "/nimbus/v1/health")["isolation"]
    if not health.get("cgroups"):
        import pytest
        pytest.skip("this host gives the server no cgroups")
    name = unique_name()
    srv.client.create_function(FunctionName=name, Runtime=PY_RUNTIME, Role=ROLE,
                               Handler="app.handler", Code={"ZipFile": py_zip()})
    srv.client.invoke(FunctionName=name, Payload=b"{}")
    pid = srv.proc.pid
    parents = [f"/sys/fs/cgroup/{c}/nimbus-{pid}" for c in ("memory", "pids", "cpu", "freezer")]
    parents += [f"/sys/fs/cgroup/nimbus-{pid}"]
    assert any(os.path.isdir(p) for p in parents), "the server keeps its cgroups under nimbus-<pid>"
    assert srv.stop() == 0
    left = [p for p in parents if os.path.exists(p)]
    assert left == [], left
