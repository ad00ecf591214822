"""Code on a full disk and code no version references (issue 11, item 7).

A server whose data dir is a small tmpfs is filled with deploys: the deploy that does not
fit gets a clean 500 that says the disk is full (no server path in it) and leaves nothing
staged, existing functions keep answering, and once functions are deleted their code is
collected after the grace period, so deploys work again without a restart."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from helpers import (
    local_blobs_only,
    PY_ECHO,
    PY_RUNTIME,
    ROLE,
    assert_client_error,
    invoke_ok,
    list_all_function_names,
    make_zip,
    py_zip,
    unique_name,
)

GRACE_S = 2
BIG_MB = 12


def _blobs(data: Path) -> set[str]:
    return {p.name for p in (data / "blobs" / "sha256").glob("*/*")}


def _code(data: Path) -> set[str]:
    """The unpacked packages (directories named by SHA-256)."""
    return {p.name for p in (data / "code").iterdir() if re.fullmatch(r"[0-9a-f]{64}", p.name)}


def _staged(data: Path) -> list[str]:
    return sorted(p.name for p in (data / "code" / ".staging").iterdir()) + sorted(
        p.name for p in (data / "blobs" / "tmp").iterdir()
    )


def _free_mb(path: Path) -> float:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / (1 << 20)


def _big_zip(tag: str, mb: int = BIG_MB) -> bytes:
    """A package of `mb` incompressible MB (stored as blob and unpacked: twice that)."""
    return make_zip({"app.py": PY_ECHO, "data.bin": os.urandom(mb << 20), "tag.txt": tag})


def _assert_disk_full(call, data: Path):
    _, _, message = assert_client_error(call, "ServiceException", 500)
    assert "out of disk space" in message, message
    assert "zip" not in message, message
    assert str(data) not in message and not re.search(r"/[\w.-]+/", message), message
    assert _staged(data) == [], "a failed deploy leaves nothing staged"


def _create(client, name: str, zip_bytes: bytes):
    return client.create_function(FunctionName=name, Runtime=PY_RUNTIME, Role=ROLE,
                                  Handler="app.handler", Code={"ZipFile": zip_bytes})


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs data dir needs root (CI runs as root)")
    mnt = tmp_path / "data"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", str(mnt)],
                   check=True)
    yield mnt
    # The server is stopped by server_factory's teardown, which runs after this one's
    # (fixtures unwind in reverse order): unmount lazily if something still holds it.
    if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_issue_11_a_full_disk_gives_clean_errors_and_recovers_without_a_restart(
        small_disk, server_factory):
    local_blobs_only()
    srv = server_factory(data_dir=small_disk, args=["--code-gc-grace", str(GRACE_S)])
    client = srv.client
    keeper = unique_name("keeper")
    _create(client, keeper, py_zip())
    assert invoke_ok(client, keeper, {"n": 1})["event"] == {"n": 1}

    deployed: list[str] = []
    failure = None
    for i in range(8):
        name = unique_name("big")
        try:
            _create(client, name, _big_zip(name))
        except Exception as e:  # noqa: BLE001  (checked below)
            failure = e
            break
        deployed.append(name)
    assert failure is not None, f"{len(deployed)} deploys of {2 * BIG_MB} MB fit in 64 MB"
    assert deployed, "not even one big deploy fitted"
    # The deploy that did not fit failed on its blob (its unpacked files fitted) ...
    _assert_disk_full(lambda: (_ for _ in ()).throw(failure), small_disk)
    # ... and one whose unpacked files cannot fit fails while unpacking: not "not a
    # readable zip", as before.
    _assert_disk_full(lambda: _create(client, unique_name("huge"), _big_zip("huge", 30)),
                      small_disk)
    assert sorted(list_all_function_names(client)) == sorted([keeper, *deployed])

    # Existing functions are still served: a warm one and a cold start.
    assert invoke_ok(client, keeper, {"n": 2})["event"] == {"n": 2}
    assert invoke_ok(client, deployed[0], {"n": 3})["event"] == {"n": 3}

    full_mb = _free_mb(small_disk)
    blobs_before, code_before = _blobs(small_disk), _code(small_disk)
    for name in deployed:
        client.delete_function(FunctionName=name)
    # Freed once the grace period has passed (and not before the collector runs).
    _wait_for(lambda: len(_blobs(small_disk)) == 1, GRACE_S * 10 + 10, "blobs to be collected")
    _wait_for(lambda: len(_code(small_disk)) == 1, 10, "unpacked code to be collected")
    assert _blobs(small_disk) < blobs_before and _code(small_disk) < code_before
    freed = _free_mb(small_disk) - full_mb
    assert freed >= len(deployed) * 2 * BIG_MB * 0.9, f"only {freed:.1f} MB freed"

    # Deploys work again, without a restart, and the keeper still answers.
    again = unique_name("again")
    _create(client, again, _big_zip(again))
    assert invoke_ok(client, again, {"n": 4})["event"] == {"n": 4}
    assert invoke_ok(client, keeper, {"n": 5})["event"] == {"n": 5}
    assert srv.alive()


def test_deleted_functions_and_versions_free_their_code_after_the_grace_period(server_factory, tmp_path):
    local_blobs_only()
    data = tmp_path / "data"
    srv = server_factory(data_dir=data, args=["--code-gc-grace", str(GRACE_S)])
    client = srv.client
    gone, kept = unique_name("gone"), unique_name("kept")
    _create(client, gone, py_zip(PY_ECHO + "\n# gone\n"))
    _create(client, kept, py_zip(PY_ECHO + "\n# kept v1\n"))
    invoke_ok(client, kept, {})
    version = client.publish_version(FunctionName=kept)["Version"]
    client.update_function_code(FunctionName=kept, ZipFile=py_zip(PY_ECHO + "\n# kept v2\n"))
    assert len(_blobs(data)) == 3 and len(_code(data)) == 3

    client.delete_function(FunctionName=gone)
    _wait_for(lambda: len(_blobs(data)) == 2, GRACE_S * 10 + 10, "the deleted function's blob to go")
    _wait_for(lambda: len(_code(data)) == 2, 10, "its unpacked code to go")
    # The published version still holds the old code: it runs.
    assert invoke_ok(client, kept, {"v": 1}, Qualifier=version)["event"] == {"v": 1}
    assert invoke_ok(client, kept, {"v": 2})["event"] == {"v": 2}

    client.delete_function(FunctionName=kept, Qualifier=version)
    _wait_for(lambda: len(_blobs(data)) == 1, GRACE_S * 10 + 10, "the version's blob to go")
    _wait_for(lambda: len(_code(data)) == 1, 10, "the version's unpacked code to go")
    assert not [p for p in (data / "code").iterdir() if p.name.endswith(".compiled")
                and p.name[:-len(".compiled")] not in _code(data)]
    assert invoke_ok(client, kept, {"v": 3})["event"] == {"v": 3}
