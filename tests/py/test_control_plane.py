"""Lambda control plane: CRUD, validation, naming forms, paging, account settings."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError, WaiterError

from helpers import (
    ACCOUNT,
    PY_ECHO,
    PY_RUNTIME,
    REGION,
    ROLE,
    assert_client_error,
    code_sha256,
    fn_arn,
    invoke_ok,
    list_all_function_names,
    make_zip,
    partial_arn,
    py_zip,
    unique_name,
)

VALID_RUNTIMES = [
    "python3.9", "python3.10", "python3.11", "python3.12", "python3.13",
    "nodejs18.x", "nodejs20.x", "nodejs22.x",
    "provided", "provided.al2", "provided.al2023",
]

# Codes the issue leaves open for pattern/range violations: AWS answers
# ValidationException for model constraints, InvalidParameterValueException
# for its own checks.  Both are 400.
BAD_PARAM_CODES = ("ValidationException", "InvalidParameterValueException")


@pytest.fixture
def lax_client(nimbus):
    """A client that skips botocore's own min/required checks so the server's
    validation is what gets tested."""
    return nimbus.new_client(parameter_validation=False)


def _create(client, name, zip_bytes=None, **kw):
    args = dict(FunctionName=name, Runtime=PY_RUNTIME, Role=ROLE, Handler="app.handler",
                Code={"ZipFile": zip_bytes if zip_bytes is not None else py_zip()})
    args.update(kw)
    return client.create_function(**args)


# --------------------------------------------------------------------------
# create / get / delete
# --------------------------------------------------------------------------


def test_create_get_delete_roundtrip(client, make_function):
    z = py_zip()
    name = unique_name()
    resp = make_function(z, name=name, Description="hello", Timeout=7, MemorySize=256)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert resp["FunctionName"] == name
    assert resp["FunctionArn"] == fn_arn(name)
    assert resp["Runtime"] == PY_RUNTIME
    assert resp["Handler"] == "app.handler"
    assert resp["Role"] == ROLE
    assert resp["Description"] == "hello"
    assert resp["Timeout"] == 7
    assert resp["MemorySize"] == 256
    assert resp["CodeSha256"] == code_sha256(z)
    assert resp["CodeSize"] == len(z)
    assert resp["Version"] == "$LATEST"
    assert resp["RevisionId"]
    assert "Environment" not in resp

    got = client.get_function(FunctionName=name)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    cfg = got["Configuration"]
    for k in ("FunctionName", "FunctionArn", "Runtime", "Handler", "Role", "CodeSha256",
              "CodeSize", "Timeout", "MemorySize", "Version", "RevisionId", "Description"):
        assert cfg[k] == resp[k], k
    assert cfg["State"] == "Active"
    assert "Environment" not in cfg

    conf = client.get_function_configuration(FunctionName=name)
    assert conf["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert conf["FunctionArn"] == fn_arn(name)
    assert conf["CodeSha256"] == code_sha256(z)
    assert conf["State"] == "Active"
    assert conf["RevisionId"] == resp["RevisionId"]

    d = client.delete_function(FunctionName=name)
    assert d["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert_client_error(lambda: client.get_function(FunctionName=name),
                        "ResourceNotFoundException", 404)
    assert name not in list_all_function_names(client)


def test_defaults(client, make_function):
    name = unique_name()
    resp = make_function(name=name)
    assert resp["Timeout"] == 3
    assert resp["MemorySize"] == 128
    assert "Environment" not in resp


def test_arn_format_and_account(client, make_function):
    name = unique_name()
    resp = make_function(name=name)
    assert resp["FunctionArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert ACCOUNT == "000000000000" and REGION == "us-east-1"


def test_waiters_pass_at_once(client, make_function):
    name = unique_name()
    make_function(name=name)
    once = {"Delay": 1, "MaxAttempts": 1}
    for waiter in ("function_active_v2", "function_updated_v2", "function_active", "function_updated"):
        try:
            client.get_waiter(waiter).wait(FunctionName=name, WaiterConfig=once)
        except WaiterError as e:  # pragma: no cover - failure path
            pytest.fail(f"waiter {waiter} did not pass at once: {e}")
    client.update_function_configuration(FunctionName=name, Description="changed")
    client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=once)
    client.update_function_code(FunctionName=name, ZipFile=py_zip(PY_ECHO + "\n# v2\n"))
    client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=once)
    client.get_waiter("function_updated").wait(FunctionName=name, WaiterConfig=once)
    client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=once)


def test_duplicate_create_conflict(client, make_function):
    name = unique_name()
    first = make_function(name=name)
    assert_client_error(lambda: _create(client, name, py_zip(PY_ECHO + "# other\n")),
                        "ResourceConflictException", 409)
    # the original is untouched
    cfg = client.get_function_configuration(FunctionName=name)
    assert cfg["CodeSha256"] == first["CodeSha256"]
    assert cfg["RevisionId"] == first["RevisionId"]


def test_unknown_function_404(client):
    name = unique_name("missing")
    for call in (
        lambda: client.get_function(FunctionName=name),
        lambda: client.get_function_configuration(FunctionName=name),
        lambda: client.update_function_code(FunctionName=name, ZipFile=py_zip()),
        lambda: client.update_function_configuration(FunctionName=name, Description="x"),
        lambda: client.delete_function(FunctionName=name),
        lambda: client.invoke(FunctionName=name, Payload=b"{}"),
        lambda: client.get_function(FunctionName=fn_arn(name)),
    ):
        assert_client_error(call, "ResourceNotFoundException", 404)


def test_function_name_forms(client, make_function):
    name = unique_name()
    resp = make_function(name=name)
    for ident in (name, partial_arn(name), fn_arn(name)):
        assert client.get_function(FunctionName=ident)["Configuration"]["FunctionName"] == name
        assert client.get_function_configuration(FunctionName=ident)["FunctionArn"] == fn_arn(name)
        body = invoke_ok(client, ident, {"via": ident})
        assert body["event"] == {"via": ident}
    upd = client.update_function_configuration(FunctionName=fn_arn(name), Description="by-arn")
    assert upd["Description"] == "by-arn"
    upd = client.update_function_code(FunctionName=partial_arn(name), ZipFile=py_zip(PY_ECHO + "# p\n"))
    assert upd["CodeSha256"] != resp["CodeSha256"]
    d = client.delete_function(FunctionName=fn_arn(name))
    assert d["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert_client_error(lambda: client.get_function(FunctionName=name), "ResourceNotFoundException", 404)


def test_arn_for_other_account_rejected(client, make_function):
    name = unique_name()
    make_function(name=name)
    other = f"arn:aws:lambda:us-east-1:111111111111:function:{name}"
    with pytest.raises(ClientError) as ei:
        client.get_function(FunctionName=other)
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 403, 404)


# --------------------------------------------------------------------------
# updates, revision ids, environment
# --------------------------------------------------------------------------


def test_update_code_changes_sha_size_and_revision(client, make_function):
    name = unique_name()
    z1 = py_zip()
    c = make_function(z1, name=name)
    z2 = make_zip({"app.py": PY_ECHO + "\n# second version with more bytes " + "x" * 500 + "\n"})
    u = client.update_function_code(FunctionName=name, ZipFile=z2)
    assert u["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert u["CodeSha256"] == code_sha256(z2)
    assert u["CodeSize"] == len(z2)
    assert u["RevisionId"] != c["RevisionId"]
    cfg = client.get_function_configuration(FunctionName=name)
    assert cfg["CodeSha256"] == code_sha256(z2)
    assert cfg["CodeSize"] == len(z2)
    assert cfg["RevisionId"] == u["RevisionId"]


def test_update_configuration(client, make_function):
    name = unique_name()
    c = make_function(name=name)
    u = client.update_function_configuration(
        FunctionName=name, Description="new", Timeout=30, MemorySize=512,
        Handler="app.handler", Environment={"Variables": {"AA": "1", "BB": "two"}},
    )
    assert u["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert u["Description"] == "new"
    assert u["Timeout"] == 30
    assert u["MemorySize"] == 512
    assert u["Environment"]["Variables"] == {"AA": "1", "BB": "two"}
    assert u["RevisionId"] != c["RevisionId"]
    assert u["CodeSha256"] == c["CodeSha256"]
    cfg = client.get_function_configuration(FunctionName=name)
    assert cfg["Environment"]["Variables"] == {"AA": "1", "BB": "two"}
    assert cfg["MemorySize"] == 512 and cfg["Timeout"] == 30
    assert cfg["RevisionId"] == u["RevisionId"]
    # a further mutation changes the revision again
    u2 = client.update_function_configuration(FunctionName=name, Timeout=31)
    assert u2["RevisionId"] not in (c["RevisionId"], u["RevisionId"])
    assert u2["Environment"]["Variables"] == {"AA": "1", "BB": "two"}  # untouched fields kept
    assert u2["MemorySize"] == 512


def test_environment_on_create(client, make_function):
    name = unique_name()
    resp = make_function(name=name, Environment={"Variables": {"GREETING": "hi"}})
    assert resp["Environment"]["Variables"] == {"GREETING": "hi"}
    assert client.get_function(FunctionName=name)["Configuration"]["Environment"]["Variables"] == {"GREETING": "hi"}


def test_revision_ids_unique_per_mutation(client, make_function):
    name = unique_name()
    seen = {make_function(name=name)["RevisionId"]}
    for i in range(3):
        seen.add(client.update_function_configuration(FunctionName=name, Description=f"d{i}")["RevisionId"])
        seen.add(client.update_function_code(FunctionName=name, ZipFile=py_zip(PY_ECHO + f"# {i}\n"))["RevisionId"])
    assert len(seen) == 7


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", VALID_RUNTIMES)
def test_known_runtimes_accepted(client, make_function, runtime):
    handler = "app.handler" if runtime.startswith("python") else (
        "index.handler" if runtime.startswith("nodejs") else "bootstrap")
    resp = make_function(make_zip({"app.py": PY_ECHO, "index.js": "exports.handler=async()=>1;\n"}),
                         runtime=runtime, handler=handler)
    assert resp["Runtime"] == runtime


@pytest.mark.parametrize("runtime", ["java21", "python2.7", "nodejs4.3", "cobol", "python3.99"])
def test_unknown_runtime_rejected(client, runtime):
    name = unique_name()
    assert_client_error(lambda: _create(client, name, Runtime=runtime),
                        "InvalidParameterValueException", 400)
    assert_client_error(lambda: client.get_function(FunctionName=name), "ResourceNotFoundException", 404)


def test_unknown_runtime_on_update_rejected(client, make_function):
    name = unique_name()
    c = make_function(name=name)
    assert_client_error(lambda: client.update_function_configuration(FunctionName=name, Runtime="java21"),
                        "InvalidParameterValueException", 400)
    cfg = client.get_function_configuration(FunctionName=name)
    assert cfg["Runtime"] == PY_RUNTIME and cfg["RevisionId"] == c["RevisionId"]


@pytest.mark.parametrize("bad_name", ["bad name", "bad.name", "a" * 65, "bad/name", "b@d", "ünï"])
def test_invalid_function_name_rejected(client, bad_name):
    before = sorted(list_all_function_names(client))
    assert_client_error(lambda: _create(client, bad_name), BAD_PARAM_CODES, 400)
    assert sorted(list_all_function_names(client)) == before


def test_name_limits_accepted(client, make_function):
    name = "A_z-09" + uuid.uuid4().hex + "x" * (64 - 6 - 32)
    assert len(name) == 64
    assert make_function(name=name)["FunctionName"] == name


@pytest.mark.parametrize("role", ["r1", "arn:aws:iam::123:role/x", "arn:aws:s3:::bucket", "not an arn"])
def test_bad_role_validation_exception(client, role):
    name = unique_name()
    assert_client_error(lambda: _create(client, name, Role=role), "ValidationException", 400)
    assert_client_error(lambda: client.get_function(FunctionName=name), "ResourceNotFoundException", 404)


@pytest.mark.parametrize("memory", [64, 127, 10241, 20000])
def test_memory_out_of_range(lax_client, memory):
    name = unique_name()
    assert_client_error(lambda: _create(lax_client, name, MemorySize=memory), BAD_PARAM_CODES, 400)
    assert_client_error(lambda: lax_client.get_function(FunctionName=name), "ResourceNotFoundException", 404)


@pytest.mark.parametrize("timeout", [0, 901, 100000])
def test_timeout_out_of_range(lax_client, timeout):
    name = unique_name()
    assert_client_error(lambda: _create(lax_client, name, Timeout=timeout), BAD_PARAM_CODES, 400)
    assert_client_error(lambda: lax_client.get_function(FunctionName=name), "ResourceNotFoundException", 404)


def test_memory_timeout_limits_accepted(client, make_function):
    resp = make_function(MemorySize=10240, Timeout=900)
    assert resp["MemorySize"] == 10240 and resp["Timeout"] == 900
    resp = make_function(MemorySize=128, Timeout=1)
    assert resp["MemorySize"] == 128 and resp["Timeout"] == 1


def test_update_config_out_of_range_leaves_state(lax_client, make_function):
    name = unique_name()
    c = make_function(name=name, client=lax_client)
    for kw in ({"MemorySize": 10241}, {"Timeout": 901}, {"Timeout": 0}, {"MemorySize": 64}):
        assert_client_error(lambda: lax_client.update_function_configuration(FunctionName=name, **kw),
                            BAD_PARAM_CODES, 400)
    cfg = lax_client.get_function_configuration(FunctionName=name)
    assert cfg["MemorySize"] == 128 and cfg["Timeout"] == 3
    assert cfg["RevisionId"] == c["RevisionId"]


@pytest.mark.parametrize("handler", ["app handler", "app.\thandler", "x" * 129, "app.handler\n"])
def test_bad_handler_rejected(client, handler):
    name = unique_name()
    assert_client_error(lambda: _create(client, name, Handler=handler), BAD_PARAM_CODES, 400)
    assert_client_error(lambda: client.get_function(FunctionName=name), "ResourceNotFoundException", 404)


def test_handler_128_chars_accepted(client, make_function):
    handler = "app." + "h" * 124
    assert len(handler) == 128
    assert make_function(handler=handler)["Handler"] == handler


def test_env_over_4kb_rejected(client, make_function):
    name = unique_name()
    big = {"K%03d" % i: "v" * 100 for i in range(45)}  # ~4.9 KB
    assert_client_error(lambda: _create(client, name, Environment={"Variables": big}),
                        "InvalidParameterValueException", 400)
    assert_client_error(lambda: client.get_function(FunctionName=name), "ResourceNotFoundException", 404)
    # and on update
    c = make_function(name=name, Environment={"Variables": {"SMALL": "1"}})
    assert_client_error(lambda: client.update_function_configuration(FunctionName=name,
                                                                      Environment={"Variables": big}),
                        "InvalidParameterValueException", 400)
    cfg = client.get_function_configuration(FunctionName=name)
    assert cfg["Environment"]["Variables"] == {"SMALL": "1"}
    assert cfg["RevisionId"] == c["RevisionId"]


def test_env_just_under_4kb_accepted(client, make_function):
    # 30 * (4 + 100) = 3120 bytes of keys+values; JSON-encoded < 4096
    env = {"K%03d" % i: "v" * 100 for i in range(30)}
    assert make_function(Environment={"Variables": env})["Environment"]["Variables"] == env


# `_HANDLER` also fails AWS's key pattern [a-zA-Z]([a-zA-Z0-9_])+, which AWS
# reports as ValidationException; the others are valid keys that are reserved
# (InvalidParameterValueException).
@pytest.mark.parametrize("key,codes", [
    ("AWS_REGION", "InvalidParameterValueException"),
    ("AWS_LAMBDA_FUNCTION_NAME", "InvalidParameterValueException"),
    ("AWS_LAMBDA_RUNTIME_API", "InvalidParameterValueException"),
    ("AWS_ACCESS_KEY_ID", "InvalidParameterValueException"),
    ("_HANDLER", BAD_PARAM_CODES),
])
def test_env_reserved_keys_rejected(client, make_function, key, codes):
    name = unique_name()
    assert_client_error(lambda: _create(client, name, Environment={"Variables": {key: "x"}}),
                        codes, 400)
    assert_client_error(lambda: client.get_function(FunctionName=name), "ResourceNotFoundException", 404)
    c = make_function(name=name)
    assert_client_error(lambda: client.update_function_configuration(
        FunctionName=name, Environment={"Variables": {key: "x", "OK": "1"}}),
        codes, 400)
    cfg = client.get_function_configuration(FunctionName=name)
    assert "Environment" not in cfg
    assert cfg["RevisionId"] == c["RevisionId"]


@pytest.mark.parametrize("key", ["1ABC", "bad-key", "A", "has space"])
def test_env_bad_key_rejected(client, key):
    name = unique_name()
    assert_client_error(lambda: _create(client, name, Environment={"Variables": {key: "x"}}),
                        BAD_PARAM_CODES, 400)
    assert_client_error(lambda: client.get_function(FunctionName=name), "ResourceNotFoundException", 404)


def test_missing_role_rejected_by_server(lax_client):
    name = unique_name()
    with pytest.raises(ClientError) as ei:
        lax_client.create_function(FunctionName=name, Runtime=PY_RUNTIME, Handler="app.handler",
                                   Code={"ZipFile": py_zip()})
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert_client_error(lambda: lax_client.get_function(FunctionName=name), "ResourceNotFoundException", 404)


# --------------------------------------------------------------------------
# listing
# --------------------------------------------------------------------------


def test_list_functions_paging_max_items_2(client, make_function):
    mine = {unique_name("page") for _ in range(5)}
    for n in mine:
        make_function(name=n)
    everything = list_all_function_names(client)
    assert len(everything) == len(set(everything)), "duplicates in unpaged listing"
    assert mine <= set(everything)

    seen: list[str] = []
    kw: dict = {"MaxItems": 2}
    pages = 0
    while True:
        page = client.list_functions(**kw)
        pages += 1
        fns = page["Functions"]
        assert len(fns) <= 2
        seen.extend(f["FunctionName"] for f in fns)
        if not page.get("NextMarker"):
            break
        kw = {"MaxItems": 2, "Marker": page["NextMarker"]}
        assert pages < 1000
    assert len(seen) == len(set(seen)), "a function was listed twice"
    assert sorted(seen) == sorted(everything)
    assert pages >= (len(everything) + 1) // 2

    # boto3's own paginator
    pag = client.get_paginator("list_functions")
    via_paginator: list[str] = []
    for page in pag.paginate(PaginationConfig={"PageSize": 2}):
        assert len(page["Functions"]) <= 2
        via_paginator.extend(f["FunctionName"] for f in page["Functions"])
    assert sorted(via_paginator) == sorted(everything)
    assert len(via_paginator) == len(set(via_paginator))

    listed = {f["FunctionName"]: f for f in client.list_functions(MaxItems=50)["Functions"]}
    for n in mine & set(listed):
        assert listed[n]["FunctionArn"] == fn_arn(n)
        assert listed[n]["Runtime"] == PY_RUNTIME


def test_list_functions_default_page_at_most_50(client, make_function):
    z = py_zip()
    mine = {unique_name("many") for _ in range(55)}
    for n in mine:
        make_function(z, name=n)
    first = client.list_functions()
    assert len(first["Functions"]) <= 50
    assert first.get("NextMarker"), "more than 50 functions exist, a NextMarker is required"
    big = client.list_functions(MaxItems=1000)
    assert len(big["Functions"]) <= 50
    assert big.get("NextMarker")
    everything = list_all_function_names(client)
    assert len(everything) == len(set(everything))
    assert mine <= set(everything)
    via_paginator = [f["FunctionName"] for p in client.get_paginator("list_functions").paginate()
                     for f in p["Functions"]]
    assert sorted(via_paginator) == sorted(everything)


def test_list_functions_bad_marker_or_max_items(lax_client):
    with pytest.raises(ClientError) as ei:
        lax_client.list_functions(MaxItems=0)
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


# --------------------------------------------------------------------------
# account settings
# --------------------------------------------------------------------------


def test_get_account_settings(client, make_function):
    make_function()
    make_function()
    s = client.get_account_settings()
    assert s["ResponseMetadata"]["HTTPStatusCode"] == 200
    lim = s["AccountLimit"]
    assert lim["TotalCodeSize"] == 80530636800
    assert lim["CodeSizeUnzipped"] == 262144000
    assert lim["CodeSizeZipped"] == 52428800
    assert lim["ConcurrentExecutions"] == 1000
    usage = s["AccountUsage"]
    assert usage["FunctionCount"] == len(list_all_function_names(client))
    assert usage["TotalCodeSize"] >= 0
    before = usage["FunctionCount"]
    make_function()
    assert client.get_account_settings()["AccountUsage"]["FunctionCount"] == before + 1
