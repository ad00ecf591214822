"""Cluster membership on one node: it records itself with its address, version and load,
keeps its id across restarts, says which nodes are live, and leaves when it stops."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
import urllib.request

from helpers import _nimbus_bin, invoke_ok, py_zip, sqlite_only, unique_name, ROLE, PY_RUNTIME


def nodes(srv):
    with urllib.request.urlopen(f"{srv.endpoint}/nimbus/v1/nodes") as r:
        return json.load(r)["nodes"]


def test_a_node_records_itself_with_its_load(server_factory, tmp_path):
    srv = server_factory(tmp_path / "data")
    [me] = nodes(srv)
    assert me["live"] and me["this_node"], me
    assert me["address"] == srv.endpoint, me
    assert me["version"] and me["heartbeat_age_ms"] < 3000, me
    assert (tmp_path / "data" / "node-id").read_text().strip() == me["id"]
    name = unique_name()
    srv.client.create_function(FunctionName=name, Runtime=PY_RUNTIME, Role=ROLE,
                               Handler="app.handler", Code={"ZipFile": py_zip()})
    invoke_ok(srv.client, name, {})
    deadline = time.monotonic() + 5
    while nodes(srv)[0]["live_instances"] < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert nodes(srv)[0]["live_instances"] == 1, "the next heartbeat carries its load"
    out = subprocess.run([_nimbus_bin(), "nodes"], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "NIMBUS_ENDPOINT": srv.endpoint})
    assert out.returncode == 0, out.stderr
    assert f"{me['id']} *" in out.stdout and "live" in out.stdout, out.stdout


def test_a_node_that_stops_beating_is_not_live_and_one_that_stops_leaves(server_factory, tmp_path):
    sqlite_only()
    data = tmp_path / "data"
    srv = server_factory(data)
    me = nodes(srv)[0]["id"]
    # Another node's records, as the shared store would hold them: one beating, one silent.
    db = sqlite3.connect(data / "nimbus.db")
    now_ms = int(time.time() * 1000)
    with db:
        for node, age_ms in (("quiet", 60_000), ("fresh", 0)):
            db.execute("INSERT INTO nodes (id, address, version, started_ms, heartbeat_ms, "
                       "live_instances, busy_instances) VALUES (?, ?, '0.1.0', ?, ?, 0, 0)",
                       (node, f"http://{node}:9300", now_ms, now_ms - age_ms))
    db.close()
    seen = {n["id"]: n for n in nodes(srv)}
    assert set(seen) == {me, "quiet", "fresh"}, seen
    assert seen["fresh"]["live"] and not seen["fresh"]["this_node"], seen["fresh"]
    assert not seen["quiet"]["live"] and seen["quiet"]["heartbeat_age_ms"] >= 59_000, seen["quiet"]
    assert srv.stop() == 0
    db = sqlite3.connect(data / "nimbus.db")
    try:
        left = {row[0] for row in db.execute("SELECT id FROM nodes")}
    finally:
        db.close()
    assert left == {"quiet", "fresh"}, "a node that stops cleanly leaves at once"
    # Restarted, it is the same node.
    srv = server_factory(data)
    assert [n["id"] for n in nodes(srv) if n["this_node"]] == [me]
