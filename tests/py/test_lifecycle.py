"""Server lifecycle: startup line, SIGTERM, restart persistence, SIGKILL orphans.

Each test runs its own server(s) via `server_factory`.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

from helpers import (
    LISTEN_RE,
    PY_ECHO,
    code_sha256,
    invoke_ok,
    kill_tagged,
    list_all_function_names,
    make_zip,
    py_zip,
    tagged_pids,
    unique_name,
    wait_tagged_gone,
    ROLE,
    PY_RUNTIME,
)

PY_PID = """\
import os, uuid
COUNT = 0
INSTANCE = uuid.uuid4().hex

def handler(event, context):
    global COUNT
    COUNT += 1
    return {"pid": os.getpid(), "count": COUNT, "instance": INSTANCE}
"""


PY_SPAWNS_CHILD = """\
import os, subprocess, sys
CHILD = None

def handler(event, context):
    global CHILD
    if CHILD is None:
        # a helper process in the instance's own process tree
        CHILD = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    return {"pid": os.getpid(), "child": CHILD.pid}
"""


def _create(client, name, zip_bytes, **kw):
    return client.create_function(FunctionName=name, Runtime=PY_RUNTIME, Role=ROLE,
                                  Handler="app.handler", Code={"ZipFile": zip_bytes}, **kw)


def test_stdout_is_exactly_the_listening_line(server_factory):
    srv = server_factory()
    assert srv.port and 0 < srv.port < 65536
    # do some work, then stop: stdout must still hold just the one line
    name = unique_name()
    _create(srv.client, name, py_zip())
    invoke_ok(srv.client, name, {})
    rc = srv.stop()
    assert rc == 0, f"server exit code after SIGTERM: {rc}"
    time.sleep(0.2)  # let the reader thread drain
    assert len(srv.stdout_lines) == 1, srv.stdout_lines
    assert LISTEN_RE.match(srv.stdout_lines[0])


def test_sigterm_stops_and_kills_instances(server_factory):
    srv = server_factory()
    c = srv.client
    name = unique_name("term")
    tag = uuid.uuid4().hex
    _create(c, name, make_zip({"app.py": PY_SPAWNS_CHILD}), Environment={"Variables": {"NIMBUS_E2E_TAG": tag}})
    try:
        invoke_ok(c, name, {})
        time.sleep(0.3)  # let the helper child start
        pids = tagged_pids(tag)
        assert len(pids) >= 2, f"expected the instance and its child, found {pids}"
        t0 = time.monotonic()
        rc = srv.stop(timeout=15)
        assert rc == 0, f"exit code after SIGTERM: {rc}"
        assert time.monotonic() - t0 < 15
        left = wait_tagged_gone(pids, 5)
        assert not left, f"instance processes {left} (of {pids}) survived the server's SIGTERM"
    finally:
        kill_tagged(tag)


def test_restart_keeps_functions(server_factory, tmp_path):
    data = tmp_path / "persist"
    a = server_factory(data)
    name = unique_name("persist")
    z = make_zip({"app.py": PY_ECHO})
    created = _create(a.client, name, z, Environment={"Variables": {"KK": "v"}},
                      MemorySize=256, Timeout=9, Description="persisted")
    assert created["CodeSha256"] == code_sha256(z)
    other = unique_name("persist")
    _create(a.client, other, py_zip(PY_ECHO + "# other\n"))
    a.client.delete_function(FunctionName=other)
    assert invoke_ok(a.client, name, {"before": 1})["event"] == {"before": 1}
    rev = a.client.get_function_configuration(FunctionName=name)["RevisionId"]
    assert a.stop() == 0

    b = server_factory(data)
    assert b.port  # new server, possibly a new port
    names = list_all_function_names(b.client)
    assert name in names
    assert other not in names
    cfg = b.client.get_function_configuration(FunctionName=name)
    assert cfg["CodeSha256"] == code_sha256(z)
    assert cfg["CodeSize"] == len(z)
    assert cfg["MemorySize"] == 256
    assert cfg["Timeout"] == 9
    assert cfg["Description"] == "persisted"
    assert cfg["Environment"]["Variables"] == {"KK": "v"}
    assert cfg["RevisionId"] == rev
    assert cfg["State"] == "Active"
    body = invoke_ok(b.client, name, {"after": 2})
    assert body["event"] == {"after": 2}
    assert body["count"] == 1  # a fresh instance under the new server
    assert b.client.get_account_settings()["AccountUsage"]["FunctionCount"] == len(names)

    # still mutable after restart
    z2 = make_zip({"app.py": "def handler(e, c):\n    return 'v2'\n"})
    u = b.client.update_function_code(FunctionName=name, ZipFile=z2)
    assert u["CodeSha256"] == code_sha256(z2)
    assert invoke_ok(b.client, name) == "v2"


def test_sigkill_leaves_no_instance_behind(server_factory):
    srv = server_factory()
    c = srv.client
    name = unique_name("orphan")
    tag = uuid.uuid4().hex
    _create(c, name, make_zip({"app.py": PY_PID}), Timeout=30,
            Environment={"Variables": {"NIMBUS_E2E_TAG": tag}})
    try:
        _sigkill_check(srv, c, name, tag)
    finally:
        kill_tagged(tag)


def _sigkill_check(srv, c, name, tag):
    first = invoke_ok(c, name, {})
    second = invoke_ok(c, name, {})
    assert second["instance"] == first["instance"], "instance was not kept warm"
    reported_pid = first["pid"]

    # Find the instance on the host by the unique tag in its environment
    # (os.getpid() inside a pid namespace would not be a host pid).
    pids = tagged_pids(tag)
    assert pids, f"warm instance (pid {reported_pid} as it sees itself) not found by its environment"

    os.kill(srv.proc.pid, signal.SIGKILL)
    srv.proc.wait(timeout=10)
    assert srv.proc.returncode == -signal.SIGKILL

    left = wait_tagged_gone(pids, 5)
    assert not left, f"instance processes {left} outlived the SIGKILLed server"
    assert not tagged_pids(tag), "some process of the function still runs"


def test_restart_after_sigkill(server_factory, tmp_path):
    data = tmp_path / "crash"
    a = server_factory(data)
    name = unique_name("crash")
    z = make_zip({"app.py": PY_ECHO})
    _create(a.client, name, z)
    invoke_ok(a.client, name, {})
    a.kill()
    b = server_factory(data)
    assert name in list_all_function_names(b.client)
    assert b.client.get_function(FunctionName=name)["Configuration"]["CodeSha256"] == code_sha256(z)
    assert invoke_ok(b.client, name, {"k": 1})["event"] == {"k": 1}
