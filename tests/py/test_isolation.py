"""Resource limits on instances (as root, where the host has cgroups): memory is the
function's MemorySize, and running out of it is Lambda's Runtime.OutOfMemory."""

from __future__ import annotations

import json
import os
import time
import urllib.request

import pytest

from helpers import make_zip, tagged_pids, unique_name, wait_tagged_gone

HOG = '''
def handler(event, context):
    blocks = []
    for _ in range(event.get("mb", 0)):
        blocks.append(bytearray(1024 * 1024))
    return len(blocks)
'''


def health(nimbus):
    with urllib.request.urlopen(f"{nimbus.endpoint}/nimbus/v1/health") as r:
        return json.load(r)


def test_health_reports_the_sandbox(nimbus):
    isolation = health(nimbus)["isolation"]
    assert isolation["pid_namespace"] == (os.geteuid() == 0)
    assert isolation["rlimits"] and isolation["no_new_privs"] and isolation["clean_environment"]


def test_out_of_memory_is_lambdas_error_and_the_instance_is_replaced(nimbus, client, make_function):
    if not health(nimbus)["isolation"]["memory_limit"]:
        pytest.skip("this host gives the server no memory cgroup")
    name = unique_name()
    make_function(make_zip({"app.py": HOG}), name=name, MemorySize=128, Timeout=30)
    ok = client.invoke(FunctionName=name, Payload=b'{"mb": 20}')
    assert json.loads(ok["Payload"].read()) == 20
    out = client.invoke(FunctionName=name, Payload=b'{"mb": 300}', LogType="Tail")
    assert out["FunctionError"] == "Unhandled"
    error = json.loads(out["Payload"].read())
    assert error["errorType"] == "Runtime.OutOfMemory", error
    assert "Runtime exited with error: signal: killed" in error["errorMessage"]
    import base64
    log = base64.b64decode(out["LogResult"]).decode()
    assert "Runtime.OutOfMemory" in log
    report = [l for l in log.splitlines() if l.startswith("REPORT")][0]
    used = int(report.split("Max Memory Used: ")[1].split(" MB")[0])
    assert used >= 100, report
    again = client.invoke(FunctionName=name, Payload=b'{"mb": 10}')
    assert json.loads(again["Payload"].read()) == 10, "a fresh instance serves the next call"


FORKER = '''
import subprocess
def handler(event, context):
    procs = []
    try:
        for _ in range(event["n"]):
            procs.append(subprocess.Popen(["sleep", "60"]))
    except OSError as e:
        return {"spawned": len(procs), "errno": e.errno}
    return {"spawned": len(procs)}
'''


def test_a_fork_bomb_stops_at_the_pids_limit(nimbus, client, make_function):
    if not health(nimbus)["isolation"]["pids_limit"]:
        pytest.skip("this host gives the server no pids cgroup")
    name = unique_name()
    # Enough memory that the pids limit, not the memory limit, is what stops it.
    make_function(make_zip({"app.py": FORKER}), name=name, Timeout=60, MemorySize=2048)
    out = json.loads(client.invoke(FunctionName=name, Payload=b'{"n": 1500}')["Payload"].read())
    assert "spawned" in out, out
    assert out["spawned"] < 1024 and out.get("errno") == 11, out  # EAGAIN at the limit
    # The rest of the server is unaffected, and retiring the instance ends its processes.
    other = unique_name()
    make_function(name=other)
    assert client.invoke(FunctionName=other, Payload=b"{}")["StatusCode"] == 200
    client.update_function_configuration(FunctionName=name, Description="retire it")
    assert json.loads(client.invoke(FunctionName=name, Payload=b'{"n": 3}')["Payload"].read()) == {"spawned": 3}


TMP_AND_CODE = '''
import os
def handler(event, context):
    with open("/tmp/mine-" + context.function_name, "w") as f:
        f.write("x")
    try:
        open(os.path.join(os.environ["LAMBDA_TASK_ROOT"], "planted.py"), "w")
        code = "writable"
    except OSError as e:
        code = e.errno
    return {"tmp": sorted(os.listdir("/tmp")), "code": code}
'''


def test_each_instance_has_its_own_tmp_and_read_only_code(nimbus, client, make_function):
    if not health(nimbus)["isolation"].get("private_tmp"):
        pytest.skip("this host gives instances no mount namespace")
    first, second = unique_name(), unique_name()
    for name in (first, second):
        make_function(make_zip({"app.py": TMP_AND_CODE}), name=name)
    a = json.loads(client.invoke(FunctionName=first, Payload=b"{}")["Payload"].read())
    b = json.loads(client.invoke(FunctionName=second, Payload=b"{}")["Payload"].read())
    assert a["tmp"] == [f"mine-{first}"] and b["tmp"] == [f"mine-{second}"], (a, b)
    assert a["code"] == 30, "EROFS: the code is read-only even to root"
    assert not os.path.exists(f"/tmp/mine-{first}"), "nothing reaches the host's /tmp"


SYSCALLS = '''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def attempt(rc):
    return 0 if rc == 0 else ctypes.get_errno()
def handler(event, context):
    return {
        "unshare": attempt(libc.unshare(0x00020000)),
        "mount": attempt(libc.mount(b"none", b"/mnt", b"tmpfs", 0, None)),
        "ptrace": attempt(libc.ptrace(16, 1, None, None)),
        "getpid": os.getpid() > 0,
    }
'''


def test_seccomp_denies_what_functions_never_need(nimbus, client, make_function):
    if not health(nimbus)["isolation"].get("seccomp"):
        pytest.skip("no seccomp filter on this host")
    name = unique_name()
    make_function(make_zip({"app.py": SYSCALLS}), name=name)
    out = json.loads(client.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())
    assert out == {"unshare": 1, "mount": 1, "ptrace": 1, "getpid": True}, out  # EPERM


ESCAPER = '''
import os, subprocess
def handler(event, context):
    # A child in a session of its own (setsid): out of the instance's process group.
    subprocess.Popen(["/bin/sh", "-c", "while :; do :; done"], start_new_session=True,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return "spinning"
'''


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_frozen_instance_is_frozen_whole_even_a_process_that_left_its_group(
        nimbus, client, make_function):
    if not health(nimbus)["isolation"]["cgroup_freezer"]:
        pytest.skip("this host gives the server no cgroup freezer")
    tag = unique_name("escaper")
    name = unique_name()
    make_function(make_zip({"app.py": ESCAPER}), name=name,
                  Environment={"Variables": {"NIMBUS_E2E_TAG": tag}})
    try:
        assert json.loads(client.invoke(FunctionName=name, Payload=b"{}")["Payload"].read()) == "spinning"
        deadline = time.monotonic() + 5
        spinners = set()
        while not spinners and time.monotonic() < deadline:
            spinners = {p for p in tagged_pids(tag) if "while" in open(f"/proc/{p}/cmdline").read()}
            time.sleep(0.05)
        assert spinners, "the detached child runs"
        spinner = spinners.pop()
        time.sleep(0.5)  # idle instances are frozen after 100 ms
        before = cpu_seconds(spinner)
        time.sleep(1.0)
        burnt = cpu_seconds(spinner) - before
        # Unfrozen, the loop takes a whole core: about a second in that time.
        assert burnt < 0.1, f"the detached process burnt {burnt:.2f} s of CPU while its instance was idle"
        # Thawed for the next invocation, the instance serves it.
        assert json.loads(client.invoke(FunctionName=name, Payload=b"{}")["Payload"].read()) == "spinning"
    finally:
        client.delete_function(FunctionName=name)
        assert not wait_tagged_gone(tagged_pids(tag)), "nothing of the instance outlives it"


FILLER = '''
import errno, os
def handler(event, context):
    written, chunk = 0, b"x" * (1 << 20)
    try:
        with open("/tmp/fill", "wb") as f:
            while written < (event["mb"] << 20):
                f.write(chunk)
                written += len(chunk)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        return {"mb": written >> 20, "error": errno.errorcode.get(e.errno)}
    finally:
        if event.get("remove"):
            os.remove("/tmp/fill")
    return {"mb": written >> 20, "error": None}
'''


def loop_backings(data_dir) -> list[str]:
    """Backing files of the loop devices that hold this server's /tmp disks."""
    found = []
    for dev in os.listdir("/sys/block"):
        try:
            with open(f"/sys/block/{dev}/loop/backing_file") as f:
                backing = f.read().strip()
        except OSError:
            continue
        if backing.startswith(str(data_dir)):
            found.append(backing)
    return found


def test_tmp_is_disk_of_its_configured_size_not_memory(nimbus, client, make_function):
    if not health(nimbus)["isolation"]["tmp_on_disk"]:
        pytest.skip("this host cannot give instances a /tmp disk")
    name = unique_name()
    # 128 MB of memory, 600 MB of /tmp (not the size waiting shells prepare).
    make_function(make_zip({"app.py": FILLER}), name=name, MemorySize=128, Timeout=60,
                  EphemeralStorage={"Size": 600})
    out = json.loads(client.invoke(FunctionName=name, Payload=b'{"mb": 300, "remove": true}')["Payload"].read())
    assert out == {"mb": 300, "error": None}, "300 MB of /tmp in a 128 MB function"
    out = json.loads(client.invoke(FunctionName=name, Payload=b'{"mb": 2000}')["Payload"].read())
    assert out["error"] == "ENOSPC" and 600 <= out["mb"] <= 620, out
    disks = loop_backings(nimbus.data_dir)
    assert disks and all("(deleted)" in d for d in disks), "images are unlinked once mounted"
    client.delete_function(FunctionName=name)
    # The instance's disk goes with it (waiting shells keep theirs).
    deadline = time.monotonic() + 10
    while len(loop_backings(nimbus.data_dir)) >= len(disks) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(loop_backings(nimbus.data_dir)) < len(disks), loop_backings(nimbus.data_dir)
