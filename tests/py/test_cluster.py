"""Three nodes on loopback sharing their metadata and their code blobs: any node serves any
call, invocations run on their function's home node (rendezvous hashing over the live
nodes), a change made on one node is seen by the next invoke on another, a node that dies
is routed around and its async events are delivered by the others, and a schedule fires
once per tick in the cluster.

The shared stores here are a SQLite file and a blob directory that every node opens (real
processes, one machine); the same cases run on PostgreSQL and S3 where the suite has them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import urllib.request

import pytest

from helpers import (POST_TO_SINK, PY_RUNTIME, ROLE, Sink, make_zip, postgres_schema_url,
                     s3_blob_args, unique_name)

VERSIONED = "def handler(event, context):\n    return {'version': %r, 'event': event}\n"


@pytest.fixture(params=["sqlite", "postgres"])
def cluster(request, server_factory, tmp_path):
    """Start nodes that share their stores — one SQLite file, or a PostgreSQL schema of the
    test's own — and a blob directory: `cluster(n)` starts n more."""
    shared = tmp_path / "shared"
    shared.mkdir()
    blob_args, blob_env = ["--blobs", f"file://{shared}/blobs"], {}
    if request.param == "postgres":
        metadata = postgres_schema_url(shared)
        if metadata is None:
            pytest.skip("no test PostgreSQL (NIMBUS_TEST_POSTGRES_URL; scripts/test starts one)")
        # With PostgreSQL, the code in the test S3 server where there is one.
        blob_args, blob_env = s3_blob_args(shared) if s3_blob_args(shared)[0] else (blob_args, blob_env)
    else:
        metadata = f"sqlite://{shared}/nimbus.db"
    store_args = ["--metadata", metadata] + blob_args
    nodes = []

    def start(count=1, extra=()):
        for _ in range(count):
            i = len(nodes)
            nodes.append(server_factory(tmp_path / f"node{i}", args=store_args + list(extra),
                                        env=blob_env))
        return nodes

    return start


def get_json(srv, path):
    with urllib.request.urlopen(f"{srv.endpoint}{path}", timeout=30) as r:
        return json.load(r)


def node_id(srv):
    return [n for n in get_json(srv, "/nimbus/v1/nodes")["nodes"] if n["this_node"]][0]["id"]


def home_of(function, ids):
    """The function's home node, as every node computes it (core::placement)."""
    def weight(node):
        return int.from_bytes(hashlib.sha256(function.encode() + b"\0" + node.encode()).digest()[:8], "big")
    return max(ids, key=lambda n: (weight(n), [-ord(c) for c in n]))


def wait_live(nodes, timeout=15):
    """Waits until every one of `nodes` sees exactly them live (each node's placement uses
    what it last saw)."""
    deadline = time.monotonic() + timeout
    for srv in nodes:
        while True:
            live = [n for n in get_json(srv, "/nimbus/v1/nodes")["nodes"] if n["live"]]
            if len(live) == len(nodes):
                break
            assert time.monotonic() < deadline, f"expected {len(nodes)} live nodes: {live}"
            time.sleep(0.2)


def live_instances(srv, function):
    return len(get_json(srv, f"/nimbus/v1/instances?function={function}")["instances"])


def deploy(client, name, source, **kw):
    client.create_function(FunctionName=name, Runtime=PY_RUNTIME, Role=ROLE,
                           Handler="app.handler", Code={"ZipFile": make_zip({"app.py": source})}, **kw)


def test_any_node_serves_and_invocations_run_on_the_home_node(cluster):
    a, b, c = cluster(3)
    wait_live([a, b, c])
    name = unique_name()
    deploy(a.client, name, VERSIONED % "one")
    ids = {node_id(n): n for n in (a, b, c)}
    home = ids[home_of(name, list(ids))]
    for node in (a, b, c, a, b, c):
        out = node.client.invoke(FunctionName=name, Payload=b'{"x": 1}', LogType="Tail")
        assert json.loads(out["Payload"].read()) == {"version": "one", "event": {"x": 1}}
        assert out["ExecutedVersion"] == "$LATEST"
        tail = base64.b64decode(out["LogResult"]).decode()
        assert f"START RequestId: {out['ResponseMetadata']['RequestId']}" in tail, tail
    counts = {n.endpoint: live_instances(n, name) for n in (a, b, c)}
    assert counts == {n.endpoint: (1 if n is home else 0) for n in (a, b, c)}, \
        "one warm instance, on the function's home node"
    # A function error comes back the same through a forward.
    failing = unique_name()
    deploy(b.client, failing, "def handler(e, c):\n    raise ValueError('nope')\n")
    for node in (a, b, c):
        out = node.client.invoke(FunctionName=failing, Payload=b"{}")
        assert out["FunctionError"] == "Unhandled"
        assert json.loads(out["Payload"].read())["errorType"] == "ValueError"


def test_a_change_on_one_node_is_seen_by_the_next_invoke_on_another(cluster):
    a, b, c = cluster(3)
    wait_live([a, b, c])
    name = unique_name()
    deploy(a.client, name, VERSIONED % "one")
    for node in (a, b, c):
        assert json.loads(node.client.invoke(FunctionName=name)["Payload"].read())["version"] == "one"
    b.client.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": VERSIONED % "two"}))
    for node in (a, c, b):
        assert json.loads(node.client.invoke(FunctionName=name)["Payload"].read())["version"] == "two"
    c.client.update_function_configuration(FunctionName=name, Environment={"Variables": {"KEY": "v"}})
    assert a.client.get_function(FunctionName=name)["Configuration"]["Environment"]["Variables"] == {"KEY": "v"}
    c.client.delete_function(FunctionName=name)
    for node in (a, b):
        with pytest.raises(node.client.exceptions.ResourceNotFoundException):
            node.client.invoke(FunctionName=name)


def test_a_dead_home_node_is_routed_around(cluster):
    a, b, c = cluster(3)
    wait_live([a, b, c])
    nodes = {node_id(n): n for n in (a, b, c)}
    # A function whose home is c, the node that will die.
    name = next(n for n in (unique_name() for _ in range(200)) if nodes[home_of(n, list(nodes))] is c)
    deploy(a.client, name, VERSIONED % "one")
    assert json.loads(a.client.invoke(FunctionName=name)["Payload"].read())["version"] == "one"
    assert live_instances(c, name) == 1
    c.kill()
    # At once (c unreachable: run here) and after c has dropped out (a new home).
    for node in (a, b):
        assert json.loads(node.client.invoke(FunctionName=name)["Payload"].read())["version"] == "one"
    wait_live([a, b])
    for node in (a, b, a, b):
        assert json.loads(node.client.invoke(FunctionName=name)["Payload"].read())["version"] == "one"
    survivors = {node_id(n): n for n in (a, b)}
    new_home = survivors[home_of(name, list(survivors))]
    assert live_instances(new_home, name) >= 1


def test_async_events_survive_node_kills(cluster):
    sink = Sink()
    try:
        a, b, c = cluster(3, extra=["--async-lease", "2"])
        wait_live([a, b, c])
        name = unique_name()
        source = POST_TO_SINK + ("import time\n"
                                 "def handler(event, context):\n"
                                 "    time.sleep(0.3)\n"
                                 "    post(str(event['n']))\n")
        deploy(a.client, name, source, Environment={"Variables": {"SINK": sink.url}}, Timeout=10)
        accepted = []
        alive = [a, b, c]
        for n in range(30):
            node = alive[n % len(alive)]
            resp = node.client.invoke(FunctionName=name, InvocationType="Event",
                                      Payload=json.dumps({"n": n}).encode())
            assert resp["StatusCode"] == 202
            accepted.append(str(n))
            if n == 10:
                c.kill()  # with events of its own in flight, perhaps
                alive.remove(c)
            if n == 20:
                b.kill()
                alive.remove(b)
        deadline = time.monotonic() + 60
        while set(accepted) - set(sink.received) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert set(accepted) <= set(sink.received), sorted(set(accepted) - set(sink.received))
    finally:
        sink.close()


def test_a_per_second_schedule_fires_once_per_tick_across_the_cluster(cluster):
    sink = Sink()
    try:
        a, b, c = cluster(3)
        wait_live([a, b, c])
        name = unique_name()
        deploy(a.client, name, POST_TO_SINK + "def handler(event, context):\n    post(context.aws_request_id)\n",
               Environment={"Variables": {"SINK": sink.url}})
        request = urllib.request.Request(
            f"{b.endpoint}/nimbus/v1/schedules", method="POST",
            data=json.dumps({"name": f"{name}-tick", "function": name, "expression": "* * * * * *"}).encode(),
            headers={"content-type": "application/json"})
        urllib.request.urlopen(request, timeout=30).read()
        time.sleep(6)
        urllib.request.urlopen(urllib.request.Request(
            f"{c.endpoint}/nimbus/v1/schedules/{name}-tick", method="DELETE"), timeout=30).read()
        time.sleep(2)
        fires = list(sink.received)
        assert len(fires) == len(set(fires)), f"a tick fired twice: {fires}"
        # Fire ids name their tick: one per second, none skipped, none doubled.
        ticks = sorted(int(f.rsplit("-", 1)[1]) // 1000 for f in fires)
        assert 4 <= len(ticks) <= 8, fires
        assert ticks == list(range(ticks[0], ticks[0] + len(ticks))), ticks
    finally:
        sink.close()


def test_reserved_concurrency_holds_across_the_cluster(cluster):
    """Reserved concurrency 2, 20 parallel callers spread over three nodes: never more than two
    running at once, and every caller gets a 200 or a 429."""
    import threading

    from botocore.exceptions import ClientError

    sink = Sink()
    try:
        a, b, c = cluster(3)
        wait_live([a, b, c])
        name = unique_name()
        source = POST_TO_SINK + ("import time\n"
                                 "def handler(event, context):\n"
                                 "    began = time.time()\n"
                                 "    time.sleep(0.5)\n"
                                 "    post(f'{began},{time.time()}')\n")
        deploy(a.client, name, source, Environment={"Variables": {"SINK": sink.url}}, Timeout=10)
        a.client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)
        statuses = []

        def call(node):
            try:
                statuses.append(node.new_client().invoke(FunctionName=name, Payload=b"{}")["StatusCode"])
            except ClientError as e:
                statuses.append(e.response["ResponseMetadata"]["HTTPStatusCode"])

        threads = [threading.Thread(target=call, args=((a, b, c)[i % 3],)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert set(statuses) <= {200, 429} and len(statuses) == 20, statuses
        ran = sink.wait_for(statuses.count(200))
        spans = [tuple(map(float, r.split(","))) for r in ran]
        most = max(sum(1 for s, e in spans if s <= at < e) for at, _ in spans)
        assert most <= 2, f"{most} ran at once: {sorted(spans)}"
        assert statuses.count(200) >= 2
    finally:
        sink.close()


def provisioned_here(srv, function):
    return [i for i in get_json(srv, f"/nimbus/v1/instances?function={function}")["instances"]
            if i["provisioned"]]


def test_provisioned_concurrency_is_n_in_the_cluster_and_moves_with_its_home(cluster):
    a, b, c = cluster(3)
    wait_live([a, b, c])
    nodes = {node_id(n): n for n in (a, b, c)}
    # A function whose home is not a, the node the configuration is put on.
    name = next(n for n in (unique_name() for _ in range(200)) if nodes[home_of(n, list(nodes))] is not a)
    home = nodes[home_of(name, list(nodes))]
    deploy(a.client, name, VERSIONED % "one", Publish=True)
    a.client.put_provisioned_concurrency_config(FunctionName=name, Qualifier="1",
                                               ProvisionedConcurrentExecutions=3)

    def ready_everywhere(alive, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [n.client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
                   for n in alive]
            if all(g["Status"] == "READY" and g["AvailableProvisionedConcurrentExecutions"] == 3
                   for g in got):
                return
            time.sleep(0.3)
        raise AssertionError(f"not READY everywhere: {got}")

    ready_everywhere([a, b, c])
    time.sleep(1.5)  # any node that started some at its own start has reconciled by now
    counts = {n.endpoint: len(provisioned_here(n, name)) for n in (a, b, c)}
    assert counts == {n.endpoint: (3 if n is home else 0) for n in (a, b, c)}, counts
    # The home dies: the instances are started again on the function's new home.
    home.kill()
    survivors = [n for n in (a, b, c) if n is not home]
    wait_live(survivors)
    new_home = {node_id(n): n for n in survivors}[home_of(name, [node_id(n) for n in survivors])]
    ready_everywhere(survivors)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        counts = {n.endpoint: len(provisioned_here(n, name)) for n in survivors}
        if counts == {n.endpoint: (3 if n is new_home else 0) for n in survivors}:
            break
        time.sleep(0.3)
    assert counts == {n.endpoint: (3 if n is new_home else 0) for n in survivors}, counts
    out = survivors[0].client.invoke(FunctionName=name, Qualifier="1", LogType="Tail")
    assert json.loads(out["Payload"].read())["version"] == "one"
    assert "Init Duration" not in base64.b64decode(out["LogResult"]).decode(), "a provisioned instance served it"
