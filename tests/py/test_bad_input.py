"""Bad code packages and malformed requests: right error, state unchanged."""

from __future__ import annotations

import base64
import io
import json
import os
import time
import zipfile

import pytest
from botocore.exceptions import ClientError

from helpers import (
    FIXED_DATE,
    PY_ECHO,
    PY_RUNTIME,
    ROLE,
    UNZIPPED_LIMIT,
    assert_client_error,
    invoke_ok,
    list_all_function_names,
    make_zip,
    py_zip,
    unique_name,
    zip_bomb_lying_header,
    zip_bomb_many,
    zip_bomb_single,
)

UNZIP_PREFIX = "Could not unzip uploaded file"
TOO_BIG_TEXT = f"Unzipped size must be smaller than {UNZIPPED_LIMIT} bytes"

GOOD_APP = {"app.py": PY_ECHO}


def _not_a_zip():
    return b"this is definitely not a zip file\n" * 10


def _truncated_zip():
    z = py_zip()
    return z[: len(z) // 2]


def _zip_slip():
    return make_zip({**GOOD_APP, "../evil.py": "print('escaped')\n"})


def _zip_slip_nested():
    return make_zip({**GOOD_APP, "lib/../../evil.py": "print('escaped')\n"})


def _absolute():
    return make_zip({**GOOD_APP, "/etc/evil": "owned\n"})


def _symlink_rel():
    return make_zip(GOOD_APP, symlinks={"passwd": "../../etc/passwd"})


def _symlink_abs():
    return make_zip(GOOD_APP, symlinks={"passwd": "/etc/passwd"})


def _symlink_dir_escape():
    # a symlinked directory pointing out, then a file written "through" it
    return make_zip(GOOD_APP, symlinks={"sub/up": "../../.."})


def _zip_entries(entries):
    """A zip of (name, kind, data) entries, kind "file", "dir" or "link", in that order
    and as spelt (the same path may appear twice)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, kind, data in entries:
            zi = zipfile.ZipInfo(name, date_time=FIXED_DATE)
            zi.create_system = 3
            mode = {"file": 0o100644, "dir": 0o040755, "link": 0o120777}[kind]
            zi.external_attr = mode << 16
            zi.compress_type = zipfile.ZIP_STORED if kind == "link" else zipfile.ZIP_DEFLATED
            zf.writestr(zi, data)
    return buf.getvalue()


def _file_and_dir_at_one_path():
    return _zip_entries([("app.py", "file", PY_ECHO), ("lib", "file", "x"), ("lib/", "dir", "")])


def _link_and_dir_at_one_path():
    return _zip_entries([("app.py", "file", PY_ECHO), ("lib/", "dir", ""), ("lib", "link", "app.py")])


def _two_entries_at_one_path():
    return _zip_entries([("app.py", "file", PY_ECHO), ("./app.py", "file", PY_ECHO)])


def _file_through_a_link():
    return _zip_entries([("app.py", "file", PY_ECHO), ("lib", "link", "."), ("lib/x.py", "file", "x")])


def _symlink_chain(host_dir: str = "/etc/hostname") -> bytes:
    """Issue 11, item 1: `d0/…/d29/up` resolves back to the package root, so the `..` of
    a later link look harmless lexically but climb out of the package on disk."""
    deep = "/".join(f"d{i}" for i in range(30))
    return _zip_entries([
        ("app.py", "file", PY_ECHO),
        (f"{deep}/up", "link", "../" * 30),
        ("__pycache__", "link", f"{deep}/up/" + "../" * 31 + host_dir.lstrip("/")),
    ])


STRUCTURAL = {
    "not_a_zip": _not_a_zip,
    "truncated": _truncated_zip,
    "zip_slip": _zip_slip,
    "zip_slip_nested": _zip_slip_nested,
    "absolute_path": _absolute,
    "symlink_relative_outside": _symlink_rel,
    "symlink_absolute": _symlink_abs,
    "symlink_dir_outside": _symlink_dir_escape,
    "symlink_chain_outside": _symlink_chain,
    "file_and_dir_at_one_path": _file_and_dir_at_one_path,
    "link_and_dir_at_one_path": _link_and_dir_at_one_path,
    "two_entries_at_one_path": _two_entries_at_one_path,
    "file_through_a_link": _file_through_a_link,
}

BOMBS = {
    "bomb_single_300mb": zip_bomb_single,
    "bomb_many_entries": zip_bomb_many,
    "bomb_lying_header": zip_bomb_lying_header,
}


def _check_zip_error(excinfo_call, bomb: bool):
    code, status, msg = assert_client_error(excinfo_call, "InvalidParameterValueException", 400)
    if bomb:
        assert msg.startswith(UNZIP_PREFIX) or TOO_BIG_TEXT in msg, msg
    else:
        assert msg.startswith(UNZIP_PREFIX), msg


def _create(client, name, zip_bytes):
    return client.create_function(FunctionName=name, Runtime=PY_RUNTIME, Role=ROLE,
                                  Handler="app.handler", Code={"ZipFile": zip_bytes})


ALL_BAD = [(k, v, False) for k, v in STRUCTURAL.items()] + [(k, v, True) for k, v in BOMBS.items()]


@pytest.mark.parametrize("kind,builder,bomb", ALL_BAD, ids=[k for k, _, _ in ALL_BAD])
def test_bad_zip_on_create(nimbus, client, kind, builder, bomb):
    before = sorted(list_all_function_names(client))
    count_before = client.get_account_settings()["AccountUsage"]["FunctionCount"]
    name = unique_name("bad")
    try:
        _check_zip_error(lambda: _create(client, name, builder()), bomb)
    finally:
        # if the server wrongly accepted it, do not leave it behind
        try:
            client.delete_function(FunctionName=name)
        except ClientError:
            pass
    assert_client_error(lambda: client.get_function(FunctionName=name), "ResourceNotFoundException", 404)
    assert sorted(list_all_function_names(client)) == before
    assert client.get_account_settings()["AccountUsage"]["FunctionCount"] == count_before
    # nothing escaped into the data dir's parent or the filesystem root
    assert not (nimbus.data_dir.parent / "evil.py").exists()


@pytest.mark.parametrize("kind,builder,bomb", ALL_BAD, ids=[k for k, _, _ in ALL_BAD])
def test_bad_zip_on_update(client, make_function, kind, builder, bomb):
    name = unique_name("upd")
    make_function(py_zip(), name=name, Environment={"Variables": {"KEEP": "me"}})
    assert invoke_ok(client, name, {"x": 1})["event"] == {"x": 1}
    before_cfg = client.get_function_configuration(FunctionName=name)
    before_list = sorted(list_all_function_names(client))

    _check_zip_error(lambda: client.update_function_code(FunctionName=name, ZipFile=builder()), bomb)

    after = client.get_function_configuration(FunctionName=name)
    for k in ("CodeSha256", "CodeSize", "RevisionId", "Handler", "Runtime", "MemorySize",
              "Timeout", "Environment", "LastModified"):
        assert after.get(k) == before_cfg.get(k), k
    assert sorted(list_all_function_names(client)) == before_list
    # the old code still runs
    assert invoke_ok(client, name, {"x": 2})["event"] == {"x": 2}


def _stored(data_dir):
    """The blobs, unpacked packages and staging leftovers of a data dir."""
    blobs = sorted(p.name for p in (data_dir / "blobs" / "sha256").glob("*/*"))
    code = sorted(p.name for p in (data_dir / "code").iterdir()
                  if p.is_dir() and not p.name.startswith("."))
    staging = sorted(p.name for p in (data_dir / "code" / ".staging").iterdir())
    return blobs, code, staging


def test_issue_11_a_symlink_chain_cannot_reach_a_host_directory(nimbus, client, tmp_path):
    """The chain attack of issue 11, item 1, aimed at a real (world-writable) host
    directory: refused with Lambda's 400, nothing stored, and nothing ever written
    there (today's precompile, run as root, put its .pyc files there)."""
    host = tmp_path / "host-target"
    host.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(host, 0o777)
    before = sorted(list_all_function_names(client))
    stored_before = _stored(nimbus.data_dir)
    name = unique_name("chain")
    try:
        _, _, msg = assert_client_error(
            lambda: _create(client, name, _symlink_chain(str(host))),
            "InvalidParameterValueException", 400)
        assert msg.startswith(UNZIP_PREFIX) and "outside the package" in msg, msg
    finally:
        try:
            client.delete_function(FunctionName=name)
        except ClientError:
            pass
    assert sorted(list_all_function_names(client)) == before
    assert _stored(nimbus.data_dir) == stored_before
    time.sleep(3)  # the precompile ran in the background, after the deploy
    assert list(host.iterdir()) == []


def test_in_tree_symlink_accepted(client, make_function):
    """Symlinks that stay inside the package are legitimate (Lambda keeps them)."""
    name = unique_name("lnk")
    z = make_zip(
        {"app.py": "import helper\n\ndef handler(e, c):\n    return helper.VALUE\n",
         "real/helper_impl.py": "VALUE = 'via-symlink'\n"},
        symlinks={"helper.py": "real/helper_impl.py"},
    )
    make_function(z, name=name)
    assert invoke_ok(client, name) == "via-symlink"


def test_empty_zipfile_field(client):
    name = unique_name()
    with pytest.raises(ClientError) as ei:
        _create(client, name, b"")
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert_client_error(lambda: client.get_function(FunctionName=name), "ResourceNotFoundException", 404)


# --------------------------------------------------------------------------
# malformed requests on the wire
# --------------------------------------------------------------------------


def test_malformed_json_body_create(nimbus, client):
    before = sorted(list_all_function_names(client))
    status, headers, body = nimbus.raw_request(
        "POST", "/2015-03-31/functions", b'{"FunctionName": "x", ',
        headers={"Content-Type": "application/json"})
    assert status == 400, body
    assert headers.get("x-amzn-errortype"), headers
    assert sorted(list_all_function_names(client)) == before


def test_wrong_types_create(nimbus, client):
    before = sorted(list_all_function_names(client))
    name = unique_name()
    doc = {"FunctionName": name, "Runtime": PY_RUNTIME, "Role": ROLE, "Handler": "app.handler",
           "Code": {"ZipFile": base64.b64encode(py_zip()).decode()}, "MemorySize": "lots"}
    status, headers, body = nimbus.raw_request(
        "POST", "/2015-03-31/functions", json.dumps(doc).encode(),
        headers={"Content-Type": "application/json"})
    assert status == 400, body
    assert sorted(list_all_function_names(client)) == before
    # ZipFile that is not base64
    doc["MemorySize"] = 128
    doc["Code"]["ZipFile"] = "!!! not base64 !!!"
    status, _, body = nimbus.raw_request(
        "POST", "/2015-03-31/functions", json.dumps(doc).encode(),
        headers={"Content-Type": "application/json"})
    assert status == 400, body
    assert sorted(list_all_function_names(client)) == before


def test_malformed_json_body_update_config(nimbus, client, make_function):
    name = unique_name()
    make_function(name=name)
    before = client.get_function_configuration(FunctionName=name)
    status, _, body = nimbus.raw_request(
        "PUT", f"/2015-03-31/functions/{name}/configuration", b"{nope",
        headers={"Content-Type": "application/json"})
    assert status == 400, body
    after = client.get_function_configuration(FunctionName=name)
    assert after["RevisionId"] == before["RevisionId"]


def test_error_body_shape(nimbus):
    """Service errors carry x-amzn-ErrorType and a JSON body with a message."""
    status, headers, body = nimbus.raw_request("GET", f"/2015-03-31/functions/{unique_name('x')}")
    assert status == 404
    assert headers.get("x-amzn-errortype", "").split(":")[0] == "ResourceNotFoundException"
    doc = json.loads(body)
    assert doc.get("Message") or doc.get("message")
