"""Published versions and aliases through boto3 and the AWS CLI.

PublishVersion (numbering, no-op publishes, CodeSha256/RevisionId preconditions),
Publish on create/update, ListVersionsByFunction paging, immutability of versions,
qualified Get/Invoke, DeleteFunction with a qualifier, alias CRUD and listing,
Lambda's RoutingConfig rules, weighted (canary) routing, per-version instances,
and the CLI commands for all of it.

Every rejected call is followed by a check that nothing changed (see `state`).
"""

from __future__ import annotations

import collections
import json

import pytest

from helpers import (
    assert_client_error,
    code_sha256,
    fn_arn,
    invoke,
    py_zip,
    unique_name,
)
from test_awscli import aws  # noqa: F401  (the AWS CLI fixture, reused)
from test_control_plane import lax_client  # noqa: F401  (skips botocore's min checks)

NOT_FOUND = ("ResourceNotFoundException", 404)
CONFLICT = ("ResourceConflictException", 409)
PRECONDITION = ("PreconditionFailedException", 412)
INVALID = ("InvalidParameterValueException", 400)
VALIDATION = ("ValidationException", 400)

# A handler whose answer says which code ran (TAG), in which instance (INSTANCE,
# fixed at import), under which configuration (MODE) and version.
TAGGED_SRC = """\
import os, uuid
TAG = {tag!r}
INSTANCE = uuid.uuid4().hex

def handler(event, context):
    return {{"tag": TAG, "instance": INSTANCE, "mode": os.environ.get("MODE"),
            "version": os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")}}
"""


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def tagged_zip(tag: str) -> bytes:
    return py_zip(TAGGED_SRC.format(tag=tag))


def http_status(resp: dict) -> int:
    return resp["ResponseMetadata"]["HTTPStatusCode"]


def strip(resp: dict) -> dict:
    """A response without its transport metadata."""
    return {k: v for k, v in resp.items() if k != "ResponseMetadata"}


def new_function(make_function, tag: str = "v1", **kw) -> str:
    name = unique_name("ver")
    make_function(tagged_zip(tag), name=name, **kw)
    return name


def push_code(client, name: str, tag: str) -> dict:
    return client.update_function_code(FunctionName=name, ZipFile=tagged_zip(tag))


def publish_tag(client, name: str, tag: str, **kw) -> str:
    """Give $LATEST new code (TAG = tag), publish it; returns the version number."""
    push_code(client, name, tag)
    resp = client.publish_version(FunctionName=name, **kw)
    assert http_status(resp) == 201, resp
    return resp["Version"]


def function_with_versions(client, make_function, n: int) -> str:
    """A function with versions "1".."n"; version k runs TAG "vk". $LATEST runs "latest"."""
    name = new_function(make_function, "v1")
    assert client.publish_version(FunctionName=name)["Version"] == "1"
    for k in range(2, n + 1):
        assert publish_tag(client, name, f"v{k}") == str(k)
    push_code(client, name, "latest")
    return name


def list_versions(client, name: str, page_size: int | None = None) -> list[dict]:
    """All versions, following NextMarker by hand; checks page sizes."""
    out: list[dict] = []
    kw: dict = {"MaxItems": page_size} if page_size else {}
    for _ in range(1000):
        page = client.list_versions_by_function(FunctionName=name, **kw)
        if page_size:
            assert len(page["Versions"]) <= page_size, page
        out.extend(page["Versions"])
        marker = page.get("NextMarker")
        if not marker:
            return out
        kw["Marker"] = marker
    raise AssertionError("ListVersionsByFunction never ended")


def version_ids(client, name: str, page_size: int | None = None) -> list[str]:
    return [v["Version"] for v in list_versions(client, name, page_size)]


def list_aliases(client, name: str, page_size: int | None = None, **kw) -> list[dict]:
    """All aliases, following NextMarker by hand; checks page sizes."""
    out: list[dict] = []
    if page_size:
        kw["MaxItems"] = page_size
    for _ in range(1000):
        page = client.list_aliases(FunctionName=name, **kw)
        if page_size:
            assert len(page["Aliases"]) <= page_size, page
        out.extend(page["Aliases"])
        marker = page.get("NextMarker")
        if not marker:
            return out
        kw["Marker"] = marker
    raise AssertionError("ListAliases never ended")


def alias_names(client, name: str, **kw) -> list[str]:
    return [a["Name"] for a in list_aliases(client, name, **kw)]


def state(client, name: str) -> dict:
    """Everything a rejected call must leave alone: $LATEST, each version, each alias."""
    latest = strip(client.get_function_configuration(FunctionName=name))
    return {
        "latest": (latest["RevisionId"], latest["CodeSha256"], latest.get("Description")),
        "versions": [(v["Version"], v["RevisionId"], v["CodeSha256"], v.get("Description"))
                     for v in list_versions(client, name)],
        "aliases": {a["Name"]: a for a in list_aliases(client, name)},
    }


def assert_rejected(client, name: str, call, code_status: tuple, message_contains=None) -> str:
    """call() fails with (code, status) and the function's state is unchanged."""
    before = state(client, name)
    _, _, msg = assert_client_error(call, *code_status, message_contains=message_contains)
    assert state(client, name) == before, "a rejected call changed the function"
    return msg


def routing(version: str, weight: float) -> dict:
    return {"AdditionalVersionWeights": {version: weight}}


def weights(alias: dict) -> dict:
    return (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}


def invoke_as(client, FunctionName: str, **kw):
    """helpers.invoke taking the same keywords as get_function (FunctionName, Qualifier)."""
    return invoke(client, FunctionName, **kw)


def run_many(client, function_name: str, n: int, **kw) -> collections.Counter:
    """Invoke n times; each answer's code must be that of the version that ran.
    Returns a Counter of ExecutedVersion."""
    seen: collections.Counter = collections.Counter()
    for _ in range(n):
        inv = invoke(client, function_name, **kw)
        assert inv.status == 200 and inv.function_error is None, inv
        assert inv.body["tag"] == f"v{inv.executed_version}", inv
        assert inv.body["version"] == inv.executed_version, inv  # AWS_LAMBDA_FUNCTION_VERSION
        seen[inv.executed_version] += 1
    return seen


# --------------------------------------------------------------------------
# PublishVersion
# --------------------------------------------------------------------------


def test_publish_numbers_arns_and_noop(client, make_function):
    name = new_function(make_function, "v1")
    latest = client.get_function_configuration(FunctionName=name)

    v1 = client.publish_version(FunctionName=name)
    assert http_status(v1) == 201
    assert v1["Version"] == "1"
    assert v1["FunctionArn"] == fn_arn(name, "1")
    assert v1["FunctionName"] == name
    assert v1["CodeSha256"] == latest["CodeSha256"] == code_sha256(tagged_zip("v1"))
    assert version_ids(client, name) == ["$LATEST", "1"]

    # nothing changed since: the last version comes back, no new one
    again = client.publish_version(FunctionName=name)
    assert again["Version"] == "1"
    assert again["FunctionArn"] == fn_arn(name, "1")
    assert again["RevisionId"] == v1["RevisionId"]
    assert version_ids(client, name) == ["$LATEST", "1"]

    assert publish_tag(client, name, "v2") == "2"
    v2 = client.get_function_configuration(FunctionName=name, Qualifier="2")
    assert v2["FunctionArn"] == fn_arn(name, "2")
    assert v2["CodeSha256"] == code_sha256(tagged_zip("v2"))
    assert version_ids(client, name) == ["$LATEST", "1", "2"]
    # a configuration change alone is also something to publish
    client.update_function_configuration(FunctionName=name, Timeout=9)
    v3 = client.publish_version(FunctionName=name)
    assert v3["Version"] == "3" and v3["Timeout"] == 9
    assert version_ids(client, name) == ["$LATEST", "1", "2", "3"]


def test_publish_description_is_the_versions(client, make_function):
    name = new_function(make_function, "v1", Description="the function")
    v1 = client.publish_version(FunctionName=name, Description="first release")
    assert v1["Description"] == "first release"
    got = client.get_function_configuration(FunctionName=name, Qualifier="1")
    assert got["Description"] == "first release"
    assert client.get_function_configuration(FunctionName=name)["Description"] == "the function"


def test_publish_code_sha256_precondition(client, make_function):
    name = new_function(make_function, "v1")
    wrong = code_sha256(tagged_zip("something else"))
    assert_rejected(client, name, lambda: client.publish_version(FunctionName=name, CodeSha256=wrong),
                    INVALID, "is different from current CodeSHA256")
    assert version_ids(client, name) == ["$LATEST"]
    ok = client.publish_version(FunctionName=name, CodeSha256=code_sha256(tagged_zip("v1")))
    assert ok["Version"] == "1"


def test_publish_revision_id_precondition(client, make_function):
    name = new_function(make_function, "v1")
    rev = client.get_function_configuration(FunctionName=name)["RevisionId"]
    push_code(client, name, "v2")  # rev is now stale
    assert_rejected(client, name, lambda: client.publish_version(FunctionName=name, RevisionId=rev),
                    PRECONDITION)
    assert version_ids(client, name) == ["$LATEST"]
    current = client.get_function_configuration(FunctionName=name)["RevisionId"]
    assert client.publish_version(FunctionName=name, RevisionId=current)["Version"] == "1"


def test_publish_unknown_function(client):
    assert_client_error(lambda: client.publish_version(FunctionName=unique_name("missing")), *NOT_FOUND)


def test_version_numbers_are_never_reused(client, make_function):
    name = function_with_versions(client, make_function, 2)
    resp = client.delete_function(FunctionName=name, Qualifier="2")
    assert http_status(resp) == 204
    assert version_ids(client, name) == ["$LATEST", "1"]
    assert publish_tag(client, name, "v3") == "3"
    assert version_ids(client, name) == ["$LATEST", "1", "3"]
    assert_client_error(lambda: client.get_function_configuration(FunctionName=name, Qualifier="2"),
                        *NOT_FOUND)


def test_create_with_publish(client, make_function):
    name = unique_name("ver")
    resp = make_function(tagged_zip("v1"), name=name, Publish=True)
    assert resp["Version"] == "1"
    assert resp["FunctionArn"] == fn_arn(name, "1")
    assert version_ids(client, name) == ["$LATEST", "1"]
    assert invoke(client, name, Qualifier="1").body["tag"] == "v1"


def test_update_code_with_publish(client, make_function):
    name = new_function(make_function, "v1")
    client.publish_version(FunctionName=name)
    resp = client.update_function_code(FunctionName=name, ZipFile=tagged_zip("v2"), Publish=True)
    assert resp["Version"] == "2"
    assert resp["FunctionArn"] == fn_arn(name, "2")
    assert resp["CodeSha256"] == code_sha256(tagged_zip("v2"))
    assert version_ids(client, name) == ["$LATEST", "1", "2"]
    assert client.get_function_configuration(FunctionName=name)["CodeSha256"] == resp["CodeSha256"]


# --------------------------------------------------------------------------
# ListVersionsByFunction
# --------------------------------------------------------------------------


def test_list_versions_order_and_paging(client, make_function):
    name = function_with_versions(client, make_function, 5)
    expected = ["$LATEST", "1", "2", "3", "4", "5"]
    assert version_ids(client, name) == expected
    for size in (1, 2, 4, 6, 50):
        assert version_ids(client, name, page_size=size) == expected, size

    listed = {v["Version"]: v for v in list_versions(client, name)}
    assert listed["$LATEST"]["FunctionArn"] == fn_arn(name, "$LATEST") or \
        listed["$LATEST"]["FunctionArn"] == fn_arn(name)
    for k in range(1, 6):
        assert listed[str(k)]["FunctionArn"] == fn_arn(name, str(k))
        assert listed[str(k)]["CodeSha256"] == code_sha256(tagged_zip(f"v{k}"))

    pages = client.get_paginator("list_versions_by_function").paginate(
        FunctionName=name, PaginationConfig={"PageSize": 2})
    assert [v["Version"] for page in pages for v in page["Versions"]] == expected


def test_list_versions_unknown_function(client):
    assert_client_error(lambda: client.list_versions_by_function(FunctionName=unique_name("missing")),
                        *NOT_FOUND)


# --------------------------------------------------------------------------
# immutability of published versions
# --------------------------------------------------------------------------


def test_published_version_is_immutable(client, make_function):
    name = new_function(make_function, "v1", Description="one", Timeout=5,
                        Environment={"Variables": {"MODE": "a"}})
    client.publish_version(FunctionName=name)
    frozen = strip(client.get_function_configuration(FunctionName=name, Qualifier="1"))
    assert frozen["Version"] == "1" and frozen["Environment"]["Variables"] == {"MODE": "a"}

    push_code(client, name, "v2")
    client.update_function_configuration(FunctionName=name, Description="two", Timeout=7,
                                         Environment={"Variables": {"MODE": "b"}})

    assert strip(client.get_function_configuration(FunctionName=name, Qualifier="1")) == frozen
    assert strip(client.get_function(FunctionName=name, Qualifier="1")["Configuration"]) == frozen
    latest = client.get_function_configuration(FunctionName=name)
    assert (latest["Description"], latest["Timeout"], latest["Environment"]["Variables"]) == \
        ("two", 7, {"MODE": "b"})
    assert latest["CodeSha256"] == code_sha256(tagged_zip("v2"))

    old = invoke(client, name, Qualifier="1")
    assert (old.body["tag"], old.body["mode"], old.executed_version) == ("v1", "a", "1")
    new = invoke(client, name)
    assert (new.body["tag"], new.body["mode"], new.executed_version) == ("v2", "b", "$LATEST")


# --------------------------------------------------------------------------
# qualifiers on Get / Invoke
# --------------------------------------------------------------------------


def test_qualified_get_and_invoke(client, make_function):
    name = function_with_versions(client, make_function, 2)
    client.create_alias(FunctionName=name, Name="prod", FunctionVersion="1")

    for kw in ({"FunctionName": name, "Qualifier": "1"}, {"FunctionName": f"{name}:1"},
               {"FunctionName": fn_arn(name, "1")}):
        conf = client.get_function_configuration(**kw)
        assert conf["Version"] == "1" and conf["FunctionArn"] == fn_arn(name, "1"), kw
        assert client.get_function(**kw)["Configuration"]["Version"] == "1", kw
        inv = invoke_as(client, **kw)
        assert (inv.status, inv.executed_version, inv.body["tag"]) == (200, "1", "v1"), kw
        assert inv.body["version"] == "1", kw

    for kw in ({"FunctionName": name, "Qualifier": "prod"}, {"FunctionName": f"{name}:prod"}):
        assert client.get_function_configuration(**kw)["Version"] == "1", kw
        assert client.get_function(**kw)["Configuration"]["Version"] == "1", kw
        inv = invoke_as(client, **kw)
        assert (inv.executed_version, inv.body["tag"]) == ("1", "v1"), kw

    client.update_alias(FunctionName=name, Name="prod", FunctionVersion="2")
    assert client.get_function_configuration(FunctionName=name, Qualifier="prod")["Version"] == "2"
    inv = invoke(client, f"{name}:prod")
    assert (inv.executed_version, inv.body["tag"]) == ("2", "v2")

    for kw in ({"FunctionName": name}, {"FunctionName": name, "Qualifier": "$LATEST"}):
        inv = invoke_as(client, **kw)
        assert (inv.executed_version, inv.body["tag"]) == ("$LATEST", "latest"), kw


def test_unknown_qualifier_is_not_found(client, make_function):
    name = function_with_versions(client, make_function, 1)
    for kw in ({"FunctionName": name, "Qualifier": "9"}, {"FunctionName": f"{name}:9"},
               {"FunctionName": name, "Qualifier": "nosuchalias"},
               {"FunctionName": f"{name}:nosuchalias"}):
        assert_client_error(lambda: client.get_function(**kw), *NOT_FOUND)
        assert_client_error(lambda: client.get_function_configuration(**kw), *NOT_FOUND)
        assert_client_error(lambda: client.invoke(Payload=b"{}", **kw), *NOT_FOUND)


def test_conflicting_qualifiers_rejected(client, make_function):
    name = function_with_versions(client, make_function, 2)
    kw = {"FunctionName": f"{name}:1", "Qualifier": "2"}
    assert_client_error(lambda: client.get_function(**kw), *INVALID)
    assert_client_error(lambda: client.get_function_configuration(**kw), *INVALID,
                        message_contains="does not match the specified qualifier")
    assert_client_error(lambda: client.invoke(Payload=b"{}", **kw), *INVALID)
    assert invoke(client, name, Qualifier="2").body["tag"] == "v2"


# --------------------------------------------------------------------------
# DeleteFunction with a qualifier
# --------------------------------------------------------------------------


def test_delete_one_version(client, make_function):
    name = function_with_versions(client, make_function, 2)
    resp = client.delete_function(FunctionName=name, Qualifier="1")
    assert http_status(resp) == 204
    assert_client_error(lambda: client.get_function(FunctionName=name, Qualifier="1"), *NOT_FOUND)
    assert_client_error(lambda: client.invoke(FunctionName=name, Qualifier="1", Payload=b"{}"),
                        *NOT_FOUND)
    assert version_ids(client, name) == ["$LATEST", "2"]
    assert invoke(client, name, Qualifier="2").body["tag"] == "v2"
    assert invoke(client, name).body["tag"] == "latest"
    assert_rejected(client, name, lambda: client.delete_function(FunctionName=name, Qualifier="1"),
                    NOT_FOUND)


def test_delete_latest_qualifier_rejected(client, make_function):
    name = function_with_versions(client, make_function, 1)
    assert_rejected(client, name, lambda: client.delete_function(FunctionName=name, Qualifier="$LATEST"),
                    INVALID)
    assert invoke(client, name).body["tag"] == "latest"


def test_delete_version_used_by_alias_conflicts(client, make_function):
    name = function_with_versions(client, make_function, 3)
    client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    client.create_alias(FunctionName=name, Name="canary", FunctionVersion="3",
                        RoutingConfig=routing("2", 0.2))

    msg = assert_rejected(client, name, lambda: client.delete_function(FunctionName=name, Qualifier="1"),
                          CONFLICT)
    assert "live" in msg and "canary" not in msg, msg
    msg = assert_rejected(client, name, lambda: client.delete_function(FunctionName=name, Qualifier="2"),
                          CONFLICT)
    assert "canary" in msg and "live" not in msg, msg
    msg = assert_rejected(client, name, lambda: client.delete_function(FunctionName=name, Qualifier="3"),
                          CONFLICT)
    assert "canary" in msg, msg

    # once the alias stops routing to it, the version can go
    client.update_alias(FunctionName=name, Name="canary", RoutingConfig={"AdditionalVersionWeights": {}})
    assert http_status(client.delete_function(FunctionName=name, Qualifier="2")) == 204
    client.delete_alias(FunctionName=name, Name="live")
    assert http_status(client.delete_function(FunctionName=name, Qualifier="1")) == 204
    assert version_ids(client, name) == ["$LATEST", "3"]


def test_delete_function_removes_versions_and_aliases(client, make_function):
    name = function_with_versions(client, make_function, 2)
    client.create_alias(FunctionName=name, Name="prod", FunctionVersion="1",
                        RoutingConfig=routing("2", 0.5))
    assert http_status(client.delete_function(FunctionName=name)) == 204
    for q in ("1", "2", "prod"):
        assert_client_error(lambda: client.get_function(FunctionName=name, Qualifier=q), *NOT_FOUND)
    assert_client_error(lambda: client.get_alias(FunctionName=name, Name="prod"), *NOT_FOUND)
    assert_client_error(lambda: client.list_aliases(FunctionName=name), *NOT_FOUND)

    # a new function of the same name starts from nothing
    make_function(tagged_zip("again"), name=name)
    assert version_ids(client, name) == ["$LATEST"]
    assert alias_names(client, name) == []
    assert client.publish_version(FunctionName=name)["Version"] == "1"
    assert invoke(client, name, Qualifier="1").body["tag"] == "again"


# --------------------------------------------------------------------------
# alias CRUD
# --------------------------------------------------------------------------


def test_create_alias_shape(client, make_function):
    name = function_with_versions(client, make_function, 2)
    resp = client.create_alias(FunctionName=name, Name="prod", FunctionVersion="1",
                               Description="production", RoutingConfig=routing("2", 0.1))
    assert http_status(resp) == 201
    created = strip(resp)
    assert created["AliasArn"] == fn_arn(name, "prod")
    assert created["Name"] == "prod"
    assert created["FunctionVersion"] == "1"
    assert created["Description"] == "production"
    assert created["RoutingConfig"] == routing("2", 0.1)
    assert created["RevisionId"]
    assert strip(client.get_alias(FunctionName=name, Name="prod")) == created
    assert strip(client.get_alias(FunctionName=fn_arn(name), Name="prod")) == created

    plain = client.create_alias(FunctionName=name, Name="plain", FunctionVersion="2")
    assert plain["AliasArn"] == fn_arn(name, "plain") and plain["FunctionVersion"] == "2"
    assert not weights(plain)
    assert plain["RevisionId"] != created["RevisionId"]


def test_alias_on_latest_without_routing(client, make_function):
    name = function_with_versions(client, make_function, 1)
    resp = client.create_alias(FunctionName=name, Name="edge", FunctionVersion="$LATEST")
    assert http_status(resp) == 201 and resp["FunctionVersion"] == "$LATEST"
    inv = invoke(client, name, Qualifier="edge")
    assert (inv.executed_version, inv.body["tag"]) == ("$LATEST", "latest")


def test_create_alias_errors(client, make_function):
    name = function_with_versions(client, make_function, 1)
    client.create_alias(FunctionName=name, Name="prod", FunctionVersion="1")

    assert_rejected(client, name, lambda: client.create_alias(
        FunctionName=name, Name="prod", FunctionVersion="1"), CONFLICT)
    assert_rejected(client, name, lambda: client.create_alias(
        FunctionName=name, Name="ghost", FunctionVersion="7"), NOT_FOUND)
    assert_rejected(client, name, lambda: client.create_alias(
        FunctionName=name, Name="123", FunctionVersion="1"), VALIDATION)
    assert_client_error(lambda: client.create_alias(
        FunctionName=unique_name("missing"), Name="prod", FunctionVersion="1"), *NOT_FOUND)
    assert alias_names(client, name) == ["prod"]


def test_get_alias_missing(client, make_function):
    name = function_with_versions(client, make_function, 1)
    assert_client_error(lambda: client.get_alias(FunctionName=name, Name="nope"), *NOT_FOUND)
    assert_client_error(lambda: client.get_alias(FunctionName=unique_name("missing"), Name="prod"),
                        *NOT_FOUND)


def test_update_alias(client, make_function):
    name = function_with_versions(client, make_function, 3)
    a0 = client.create_alias(FunctionName=name, Name="prod", FunctionVersion="1", Description="d0")

    a1 = client.update_alias(FunctionName=name, Name="prod", FunctionVersion="2",
                             Description="d1", RoutingConfig=routing("3", 0.25))
    assert http_status(a1) == 200
    assert (a1["FunctionVersion"], a1["Description"], weights(a1)) == ("2", "d1", {"3": 0.25})
    assert a1["AliasArn"] == fn_arn(name, "prod")
    assert a1["RevisionId"] != a0["RevisionId"]
    assert strip(client.get_alias(FunctionName=name, Name="prod")) == strip(a1)

    # fields left out are kept
    a2 = client.update_alias(FunctionName=name, Name="prod", Description="d2")
    assert (a2["FunctionVersion"], a2["Description"], weights(a2)) == ("2", "d2", {"3": 0.25})
    assert a2["RevisionId"] != a1["RevisionId"]

    # stale RevisionId: 412, nothing changed
    assert_rejected(client, name, lambda: client.update_alias(
        FunctionName=name, Name="prod", FunctionVersion="1", RevisionId=a1["RevisionId"]), PRECONDITION)
    a3 = client.update_alias(FunctionName=name, Name="prod", FunctionVersion="1",
                             RevisionId=a2["RevisionId"])
    assert (a3["FunctionVersion"], weights(a3)) == ("1", {"3": 0.25})

    # an empty weights map removes the routing
    a4 = client.update_alias(FunctionName=name, Name="prod",
                             RoutingConfig={"AdditionalVersionWeights": {}})
    assert not weights(a4)
    assert not weights(client.get_alias(FunctionName=name, Name="prod"))
    assert a4["FunctionVersion"] == "1"

    assert_rejected(client, name, lambda: client.update_alias(
        FunctionName=name, Name="nope", Description="x"), NOT_FOUND)
    assert_rejected(client, name, lambda: client.update_alias(
        FunctionName=name, Name="prod", FunctionVersion="9"), NOT_FOUND)


def test_delete_alias(client, make_function):
    name = function_with_versions(client, make_function, 1)
    client.create_alias(FunctionName=name, Name="prod", FunctionVersion="1")
    client.create_alias(FunctionName=name, Name="keep", FunctionVersion="1")
    resp = client.delete_alias(FunctionName=name, Name="prod")
    assert http_status(resp) == 204
    assert_client_error(lambda: client.get_alias(FunctionName=name, Name="prod"), *NOT_FOUND)
    assert_client_error(lambda: client.invoke(FunctionName=name, Qualifier="prod", Payload=b"{}"),
                        *NOT_FOUND)
    assert_rejected(client, name, lambda: client.delete_alias(FunctionName=name, Name="prod"), NOT_FOUND)
    assert alias_names(client, name) == ["keep"]
    assert version_ids(client, name) == ["$LATEST", "1"]


def test_list_aliases_filter_and_paging(client, make_function):
    name = function_with_versions(client, make_function, 3)
    specs = {
        "a-one": ("1", None),
        "b-two": ("2", None),
        "c-one-canary-two": ("1", routing("2", 0.3)),
        "d-three": ("3", None),
        "e-three-canary-one": ("3", routing("1", 0.5)),
    }
    for alias, (version, rc) in specs.items():
        client.create_alias(FunctionName=name, Name=alias, FunctionVersion=version,
                            **({"RoutingConfig": rc} if rc else {}))

    everything = list_aliases(client, name)
    assert sorted(a["Name"] for a in everything) == sorted(specs)
    for a in everything:
        assert a["AliasArn"] == fn_arn(name, a["Name"])
        assert a["FunctionVersion"] == specs[a["Name"]][0]

    def names(**kw):
        got = alias_names(client, name, **kw)
        assert len(got) == len(set(got)), got  # each exactly once
        return sorted(got)

    assert names(FunctionVersion="2") == ["b-two", "c-one-canary-two"]
    assert names(FunctionVersion="1") == ["a-one", "c-one-canary-two", "e-three-canary-one"]
    assert names(FunctionVersion="3") == ["d-three", "e-three-canary-one"]
    assert names(FunctionVersion="$LATEST") == []
    for size in (1, 2, 3, 5):
        assert names(page_size=size) == sorted(specs), size
    assert names(page_size=1, FunctionVersion="1") == ["a-one", "c-one-canary-two", "e-three-canary-one"]

    pages = client.get_paginator("list_aliases").paginate(
        FunctionName=name, PaginationConfig={"PageSize": 2})
    paged = [a["Name"] for page in pages for a in page["Aliases"]]
    assert sorted(paged) == sorted(specs) and len(paged) == len(specs)


# --------------------------------------------------------------------------
# RoutingConfig rules (Lambda facts §1): each rejected on create and on update
# --------------------------------------------------------------------------

BAD_ROUTING = [
    # (id, primary, AdditionalVersionWeights, (code, status))
    ("two-entries", "1", {"2": 0.1, "3": 0.1}, VALIDATION),
    ("weight-above-one", "1", {"2": 1.5}, VALIDATION),
    ("weight-below-zero", "1", {"2": -0.1}, VALIDATION),
    ("same-as-primary", "1", {"1": 0.2}, INVALID),
    ("latest-primary", "$LATEST", {"2": 0.2}, INVALID),
    ("missing-version", "1", {"9": 0.2}, NOT_FOUND),
]


@pytest.mark.parametrize("primary,extra,expected", [b[1:] for b in BAD_ROUTING],
                         ids=[b[0] for b in BAD_ROUTING])
def test_bad_routing_rejected(lax_client, make_function, primary, extra, expected):  # noqa: F811
    c = lax_client  # botocore itself would refuse a negative weight
    name = function_with_versions(c, make_function, 3)
    c.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    rc = {"AdditionalVersionWeights": extra}

    assert_rejected(c, name, lambda: c.create_alias(
        FunctionName=name, Name="fresh", FunctionVersion=primary, RoutingConfig=rc), expected)
    assert_rejected(c, name, lambda: c.update_alias(
        FunctionName=name, Name="live", FunctionVersion=primary, RoutingConfig=rc), expected)
    assert alias_names(c, name) == ["live"]


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_boundary_weights_accepted(client, make_function, weight):
    name = function_with_versions(client, make_function, 2)
    resp = client.create_alias(FunctionName=name, Name="edge", FunctionVersion="1",
                               RoutingConfig=routing("2", weight))
    assert weights(resp) == {"2": weight}


# --------------------------------------------------------------------------
# weighted routing
# --------------------------------------------------------------------------


def test_canary_routing_and_rollout(client, make_function):
    name = function_with_versions(client, make_function, 2)
    client.create_alias(FunctionName=name, Name="canary", FunctionVersion="1",
                        RoutingConfig=routing("2", 0.1))

    seen = run_many(client, name, 1000, Qualifier="canary")
    assert set(seen) <= {"1", "2"}, seen
    # Binomial(1000, 0.1): mean 100, sd = sqrt(1000 * 0.1 * 0.9) ~ 9.5;
    # 100 +- 47 is about +-5 sd, so a correct server fails this roughly once in a million runs.
    assert 53 <= seen["2"] <= 147, seen

    # roll out: everything to 2, routing dropped
    client.update_alias(FunctionName=name, Name="canary", FunctionVersion="2",
                        RoutingConfig={"AdditionalVersionWeights": {}})
    assert run_many(client, name, 50, Qualifier="canary") == {"2": 50}
    # roll back
    client.update_alias(FunctionName=name, Name="canary", FunctionVersion="1")
    assert run_many(client, f"{name}:canary", 50) == {"1": 50}


# --------------------------------------------------------------------------
# per-version instances
# --------------------------------------------------------------------------


def test_each_version_keeps_its_own_instance(client, make_function):
    name = new_function(make_function, "v1", Environment={"Variables": {"MODE": "a"}})
    client.publish_version(FunctionName=name)

    one = invoke(client, name, Qualifier="1").body
    latest = invoke(client, name).body
    assert one["instance"] != latest["instance"]  # separate instances per version
    assert invoke(client, name, Qualifier="1").body["instance"] == one["instance"]
    assert invoke(client, name).body["instance"] == latest["instance"]

    client.update_function_configuration(FunctionName=name, Environment={"Variables": {"MODE": "b"}})

    after_one = invoke(client, name, Qualifier="1").body
    assert after_one["instance"] == one["instance"], "updating $LATEST retired version 1's instance"
    assert after_one["mode"] == "a"
    after_latest = invoke(client, name).body
    assert after_latest["instance"] != latest["instance"], "$LATEST kept an instance with old config"
    assert after_latest["mode"] == "b"


# --------------------------------------------------------------------------
# AWS CLI
# --------------------------------------------------------------------------


def test_cli_versions_and_aliases(aws, tmp_path, client, make_function):  # noqa: F811
    name = new_function(make_function, "v1")

    p1 = json.loads(aws("publish-version", "--function-name", name).stdout)
    assert p1["Version"] == "1" and p1["FunctionArn"] == fn_arn(name, "1")
    push_code(client, name, "v2")
    p2 = json.loads(aws("publish-version", "--function-name", name,
                        "--description", "second").stdout)
    assert (p2["Version"], p2["Description"]) == ("2", "second")

    listed = json.loads(aws("list-versions-by-function", "--function-name", name).stdout)
    assert [v["Version"] for v in listed["Versions"]] == ["$LATEST", "1", "2"]

    created = json.loads(aws("create-alias", "--function-name", name, "--name", "prod",
                             "--function-version", "1", "--description", "production").stdout)
    assert created["AliasArn"] == fn_arn(name, "prod")
    assert (created["FunctionVersion"], created["Description"]) == ("1", "production")

    upd = json.loads(aws("update-alias", "--function-name", name, "--name", "prod",
                         "--routing-config", "AdditionalVersionWeights={2=0.5}").stdout)
    assert weights(upd) == {"2": 0.5} and upd["RevisionId"] != created["RevisionId"]
    upd = json.loads(aws("update-alias", "--function-name", name, "--name", "prod",
                         "--routing-config", '{"AdditionalVersionWeights":{"2":0.25}}').stdout)
    assert weights(upd) == {"2": 0.25}
    assert weights(client.get_alias(FunctionName=name, Name="prod")) == {"2": 0.25}

    aws("create-alias", "--function-name", name, "--name", "beta", "--function-version", "2")
    aliases = json.loads(aws("list-aliases", "--function-name", name).stdout)["Aliases"]
    assert sorted(a["Name"] for a in aliases) == ["beta", "prod"]
    only1 = json.loads(aws("list-aliases", "--function-name", name,
                           "--function-version", "1").stdout)["Aliases"]
    assert [a["Name"] for a in only1] == ["prod"]

    out = tmp_path / "out.json"
    meta = json.loads(aws("invoke", "--function-name", name, "--qualifier", "prod",
                          "--payload", "{}", str(out)).stdout)
    assert meta["StatusCode"] == 200 and meta["ExecutedVersion"] in ("1", "2")
    assert json.loads(out.read_text())["tag"] == f"v{meta['ExecutedVersion']}"

    aws("update-alias", "--function-name", name, "--name", "prod", "--function-version", "2",
        "--routing-config", "AdditionalVersionWeights={}")
    meta = json.loads(aws("invoke", "--function-name", name, "--qualifier", "prod",
                          "--payload", "{}", str(out)).stdout)
    assert meta["ExecutedVersion"] == "2"
    assert json.loads(out.read_text())["tag"] == "v2"

    p = aws("delete-alias", "--function-name", name, "--name", "prod")
    assert p.stdout.strip() == ""
    aliases = json.loads(aws("list-aliases", "--function-name", name).stdout)["Aliases"]
    assert [a["Name"] for a in aliases] == ["beta"]
    p = aws("get-alias", "--function-name", name, "--name", "prod", check_rc=None)
    assert p.returncode != 0 and "ResourceNotFoundException" in p.stderr


def test_configuration_through_an_alias_carries_the_alias_arn(client, make_function):
    name = unique_name()
    make_function(name=name, Publish=True)
    client.create_alias(FunctionName=name, Name="prod", FunctionVersion="1")
    by_alias = client.get_function_configuration(FunctionName=name, Qualifier="prod")
    assert by_alias["FunctionArn"] == fn_arn(name, "prod")
    assert by_alias["Version"] == "1"
    assert client.get_function(FunctionName=f"{name}:prod")["Configuration"]["FunctionArn"] == fn_arn(name, "prod")
    assert client.get_function_configuration(FunctionName=name, Qualifier="1")["FunctionArn"] == fn_arn(name, "1")
