"""A server that is not root cannot sandbox instances: it says so at start and in
/nimbus/v1/health, and still runs functions with what it has. Run here as `nobody`."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

import pytest

from helpers import NimbusServer, make_zip, unique_name

NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start a server as another user")

PROBE = '''
import os
def handler(event, context):
    with open("/tmp/probe-" + context.aws_request_id, "w") as f:
        f.write("x")
    return {"uid": os.getuid(), "task_root": os.environ["LAMBDA_TASK_ROOT"], "cwd": os.getcwd(),
            "seen_by_host": "/tmp/probe-" + context.aws_request_id}
'''


@pytest.fixture
def unprivileged_server():
    # Somewhere `nobody` may write: pytest's own temporary dirs are private to root.
    base = Path(tempfile.mkdtemp(prefix="nimbus-degraded-", dir="/tmp"))
    os.chmod(base, 0o755)
    data = base / "data"
    data.mkdir()
    os.chown(data, NOBODY, NOBODY)
    srv = NimbusServer(data, base / "server.log", user=NOBODY).start()
    yield srv
    srv.cleanup()
    shutil.rmtree(base, ignore_errors=True)


def test_a_server_without_root_says_what_it_lacks_and_still_runs_functions(unprivileged_server):
    srv = unprivileged_server
    with urllib.request.urlopen(f"{srv.endpoint}/nimbus/v1/health") as r:
        isolation = json.load(r)["isolation"]
    for missing in ["pid_namespace", "mount_namespace", "root_view", "private_tmp",
                    "unprivileged_user", "capabilities_dropped", "memory_limit", "pids_limit",
                    "cgroup_freezer", "tmp_on_disk"]:
        assert isolation[missing] is False, (missing, isolation)
    assert isolation["cgroups"] is None
    assert isolation["seccomp"] and isolation["rlimits"] and isolation["no_new_privs"], isolation
    log = srv.log_path.read_text()
    assert "isolation not available here:" in log and "root_view" in log, log
    assert "not running as root" in log, log

    name = unique_name()
    srv.client.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler",
                               Role="arn:aws:iam::123456789012:role/x",
                               Code={"ZipFile": make_zip({"app.py": PROBE})})
    out = srv.client.invoke(FunctionName=name, Payload=b"{}")
    assert "FunctionError" not in out, out["Payload"].read()
    probe = json.loads(out["Payload"].read())
    # It runs as the server's user, from the code's host path, with the host's /tmp.
    assert probe["uid"] == NOBODY, probe
    assert probe["task_root"] == probe["cwd"] != "/var/task", probe
    assert probe["task_root"].startswith(str(srv.data_dir)), probe
    assert os.path.exists(probe["seen_by_host"]), probe
    os.remove(probe["seen_by_host"])
