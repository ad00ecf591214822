"""Functions that attack the platform or each other, run as root as CI does.

Each attack is blocked: the function gets an error or is killed with Lambda's error type,
and the server and other functions keep working. A control run against a `--no-sandbox`
server shows the probes do find what they look for when nothing stops them."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest

from helpers import invoke, make_zip, on_postgres, tagged_pids, unique_name

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root (CI runs as root)")

ATTACKER = r'''
import errno, glob, json, os, signal, urllib.error, urllib.request

def readable(path, limit=1 << 20):
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError:
        return b""

def hunt(secret, data_dir, walk=True):
    """Every place this instance can read `secret` from (`walk`: search its whole view)."""
    secret = secret.encode()
    found = []
    candidates = glob.glob(data_dir + "/**", recursive=True)
    for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
        candidates += [f"/proc/{pid}/environ", f"/proc/{pid}/cmdline"]
        candidates += glob.glob(f"/proc/{pid}/root/var/task/*")
        candidates += glob.glob(f"/proc/{pid}/cwd/*")
    for top in os.listdir("/") if walk else []:
        if top in ("proc", "sys", "usr", "dev") or os.path.islink("/" + top):
            continue
        for dirpath, _, files in os.walk("/" + top):
            candidates += [os.path.join(dirpath, f) for f in files]
    for path in candidates:
        if os.path.isfile(path) and secret in readable(path):
            found.append(path)
    return sorted(set(found))

def write_everywhere(data_dir):
    results = {}
    for target in ["/planted", "/var/task/planted", "/var/runtime/planted", "/etc/planted",
                   "/usr/bin/planted", data_dir + "/planted"]:
        try:
            with open(target, "w") as f:
                f.write("x")
            results[target] = "written"
        except OSError as e:
            results[target] = errno.errorcode.get(e.errno, str(e.errno))
    return results

def fill_tmp():
    written, chunk = 0, b"\0" * (1 << 20)
    try:
        with open("/tmp/fill", "wb") as f:
            while written < (4 << 30):
                f.write(chunk)
                f.flush()
                written += len(chunk)
    except OSError as e:
        return {"mb": written >> 20, "error": errno.errorcode.get(e.errno)}
    return {"mb": written >> 20, "error": None}

def signal_others(pids):
    results = {}
    visible = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            results[str(pid)] = "killed"
        except OSError as e:
            results[str(pid)] = errno.errorcode.get(e.errno)
    try:
        os.kill(-1, signal.SIGKILL)  # everything it may signal (never itself)
        results["-1"] = "sent"
    except OSError as e:
        results["-1"] = errno.errorcode.get(e.errno)
    return {"visible": visible, "me": os.getpid(), "results": results}

def call_control_plane(endpoint):
    results = {}
    calls = [("GET", "/2015-03-31/functions/", None),
             ("POST", "/2015-03-31/functions", json.dumps({
                 "FunctionName": "planted", "Runtime": "python3.11", "Handler": "app.handler",
                 "Role": "arn:aws:iam::123456789012:role/x", "Code": {"ZipFile": ""}}).encode()),
             ("POST", "/2015-03-31/functions/victim/invocations", b"{}"),
             ("GET", "/nimbus/v1/instances", None)]
    for method, path, body in calls:
        request = urllib.request.Request(endpoint + path, data=body, method=method,
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                results[f"{method} {path}"] = r.status
        except urllib.error.HTTPError as e:
            results[f"{method} {path}"] = e.code
    return results

def forge(port):
    """Answers for an invocation of the instance whose Runtime API is on `port`."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", "/2018-06-01/runtime/invocation/forged/response", body=b'"forged"')
        return conn.getresponse().status
    except (OSError, http.client.HTTPException) as e:
        return type(e).__name__
    finally:
        conn.close()

def reach(port):
    """Whether a TCP connection to 127.0.0.1:`port` opens, or the error that stops it."""
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        return "connected"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))

def handler(event, context):
    attack = event["attack"]
    if attack == "reach":
        return {"port": reach(event["port"]), "api": os.environ["AWS_LAMBDA_RUNTIME_API"],
                "interfaces": [line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:]]}
    if attack == "forge":
        return forge(event["port"])
    if attack == "hunt":
        return hunt(event["secret"], event["data_dir"], event.get("walk", True))
    if attack == "write":
        return write_everywhere(event["data_dir"])
    if attack == "fill_tmp":
        return fill_tmp()
    if attack == "ls_tmp":
        return sorted(os.listdir("/tmp"))
    if attack == "signal":
        return signal_others(event["pids"])
    if attack == "control_plane":
        return {"calls": call_control_plane(event["endpoint"]),
                "credentials_in_env": sorted(k for k in os.environ if "KEY" in k or "SECRET" in k)}
    raise ValueError(attack)
'''

VICTIM = '''
import os
def handler(event, context):
    return {"ok": True, "pid": os.getpid()}
'''


def deploy_victim(make_function, secret: str, tag: str) -> str:
    name = unique_name("victim")
    make_function(make_zip({"app.py": VICTIM, "secret.txt": secret}), name=name,
                  Environment={"Variables": {"VICTIM_SECRET": secret, "NIMBUS_E2E_TAG": tag}})
    assert invoke(make_function.client, name).body["ok"]  # a warm instance is running
    return name


def runtime_api_port(tag: str) -> int:
    """The Runtime API port of the instance carrying `tag` (read from the host)."""
    for pid in tagged_pids(tag):
        with open(f"/proc/{pid}/environ", "rb") as f:
            for var in f.read().split(b"\0"):
                if var.startswith(b"AWS_LAMBDA_RUNTIME_API="):
                    return int(var.rsplit(b":", 1)[1])
    raise AssertionError(f"no instance tagged {tag}")


def deploy_attacker(make_function, **kw) -> str:
    name = unique_name("attacker")
    make_function(make_zip({"app.py": ATTACKER}), name=name, Timeout=60, **kw)
    return name


def attack(client, name, **event):
    result = invoke(client, name, event)
    assert result.status == 200 and not result.function_error, result.body
    return result.body


def test_a_function_cannot_read_another_functions_code_or_env_or_the_servers_files(nimbus, client, make_function):
    secret = f"s3cret-{unique_name()}"
    victim = deploy_victim(make_function, secret, unique_name("tag"))
    attacker = deploy_attacker(make_function)
    found = attack(client, attacker, attack="hunt", secret=secret, data_dir=str(nimbus.data_dir))
    # The secret is also in the server's database and logs: not readable either.
    assert found == [], f"the attacker read the victim's secret at {found}"
    assert invoke(client, victim).body["ok"], "the victim keeps working"


def test_the_probe_finds_the_secret_when_nothing_isolates(server_factory, make_function):
    """The control for the test above: without the sandbox the same probe succeeds."""
    srv = server_factory(args=["--no-sandbox"])
    make_function.client = srv.client
    secret, tag = f"s3cret-{unique_name()}", unique_name("tag")
    deploy_victim(make_function, secret, tag)
    attacker = deploy_attacker(make_function)
    assert attack(srv.client, attacker, attack="forge", port=runtime_api_port(tag)) == 400
    # Not the walk over the whole host filesystem: the known places are enough here.
    found = attack(srv.client, attacker, attack="hunt", secret=secret, data_dir=str(srv.data_dir),
                   walk=False)
    assert any(f.endswith("secret.txt") for f in found), found
    assert any(f.endswith("/environ") for f in found), found
    # The catalogue is in the data dir too, unless this run keeps it in PostgreSQL.
    assert on_postgres() or any("nimbus.db" in f for f in found), found


def test_a_function_cannot_take_or_answer_another_instances_invocations(client, make_function):
    tag = unique_name("tag")
    victim = deploy_victim(make_function, "unused", tag)
    attacker = deploy_attacker(make_function)
    # All instances share the loopback interface, but a Runtime API serves only its own user.
    out = attack(client, attacker, attack="forge", port=runtime_api_port(tag))
    # Closed without an answer (how the client notices depends on timing).
    assert out in ("RemoteDisconnected", "ConnectionResetError", "BrokenPipeError"), out
    assert invoke(client, victim).body["ok"], "the victim keeps working"


def test_a_function_cannot_write_outside_tmp(nimbus, client, make_function):
    attacker = deploy_attacker(make_function)
    results = attack(client, attacker, attack="write", data_dir=str(nimbus.data_dir))
    assert results.pop(str(nimbus.data_dir) + "/planted") == "ENOENT", "the data dir is not there"
    assert set(results.values()) == {"EROFS"}, results
    assert not (nimbus.data_dir / "planted").exists()


def test_filling_tmp_stops_at_its_size_and_harms_nobody(client, make_function):
    other = deploy_attacker(make_function)
    # /tmp is disk, as on Lambda: a 128 MB function fills its 512 MB without running out of
    # memory (with a tmpfs, its pages would be the function's memory).
    attacker = deploy_attacker(make_function, MemorySize=128, EphemeralStorage={"Size": 512})
    out = attack(client, attacker, attack="fill_tmp")
    assert out["error"] == "ENOSPC" and 512 <= out["mb"] <= 528, out
    assert attack(client, attacker, attack="ls_tmp") == ["fill"], "the same instance serves on"
    assert attack(client, other, attack="ls_tmp") == [], "another function's /tmp is its own"


def test_a_function_cannot_see_or_signal_processes_that_are_not_its_own(client, make_function):
    tag = unique_name("tag")
    victim = deploy_victim(make_function, "unused", tag)
    victim_pids = tagged_pids(tag)
    assert victim_pids, "the victim's warm instance is running"
    attacker = deploy_attacker(make_function)
    out = attack(client, attacker, attack="signal", pids=sorted(victim_pids))
    assert out["visible"] == [1] and out["me"] == 1, f"it sees only itself: {out}"
    for pid in victim_pids:
        assert out["results"][str(pid)] == "ESRCH", out
    assert out["results"]["-1"] in ("sent", "ESRCH"), out
    assert tagged_pids(tag) == victim_pids, "the victim's processes are untouched"
    assert invoke(client, victim).body["ok"]


def test_a_function_cannot_use_the_control_plane_without_credentials(server_factory, make_function):
    srv = server_factory(env={"NIMBUS_ACCESS_KEY_ID": "admin", "NIMBUS_SECRET_ACCESS_KEY": "admin-secret"})
    import boto3
    from botocore.config import Config
    admin = boto3.client("lambda", endpoint_url=srv.endpoint, region_name="us-east-1",
                         aws_access_key_id="admin", aws_secret_access_key="admin-secret",
                         config=Config(retries={"total_max_attempts": 1}))
    make_function.client = admin
    victim = deploy_victim(make_function, "unused", unique_name("tag"))
    attacker = deploy_attacker(make_function)
    out = attack(admin, attacker, attack="control_plane", endpoint=srv.endpoint)
    assert set(out["calls"].values()) == {403}, out
    assert out["credentials_in_env"] == [], out
    config = admin.get_function(FunctionName=attacker)["Configuration"]
    assert config["FunctionName"] == attacker, "the admin's view is intact"
    names = {f["FunctionName"] for f in admin.list_functions()["Functions"]}
    assert "planted" not in names and victim in names
    # The credentials file is not readable either.
    found = attack(admin, attacker, attack="hunt", secret="admin-secret", data_dir=str(srv.data_dir))
    assert found == [], found
    with urllib.request.urlopen(f"{srv.endpoint}/metrics") as r:
        assert r.status == 200, "metrics stay scrapeable"
    assert json.loads(admin.invoke(FunctionName=victim)["Payload"].read())["ok"]


def test_with_a_network_of_its_own_a_function_reaches_nothing_but_its_runtime_api(server_factory, make_function):
    srv = server_factory(args=["--instance-network", "none"])
    with urllib.request.urlopen(f"{srv.endpoint}/nimbus/v1/health") as r:
        assert json.load(r)["isolation"]["network_namespace"] is True
    make_function.client = srv.client
    tag = unique_name("tag")
    victim = deploy_victim(make_function, "unused", tag)
    attacker = deploy_attacker(make_function)
    server_port = int(srv.endpoint.rsplit(":", 1)[1])
    out = attack(srv.client, attacker, attack="reach", port=server_port)
    assert out == {"port": "ECONNREFUSED", "api": "127.0.0.1:9001", "interfaces": ["lo"]}, out
    # Every instance's Runtime API is at 127.0.0.1:9001 of its own loopback: another's is
    # not addressable at all.
    assert invoke(srv.client, victim).body["ok"], "instances still serve, warm and cold"


def test_the_same_probe_reaches_the_server_on_the_hosts_network(nimbus, client, make_function):
    """The control for the test above: with the default (host) network it connects."""
    attacker = deploy_attacker(make_function)
    server_port = int(nimbus.endpoint.rsplit(":", 1)[1])
    assert attack(client, attacker, attack="reach", port=server_port)["port"] == "connected"
