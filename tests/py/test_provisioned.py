"""Provisioned concurrency through boto3: instances started ahead for a version or alias,
ready before the first call, used first, and gone when the configuration is deleted."""

from __future__ import annotations

import base64
import json
import time
import urllib.request

from helpers import assert_client_error, make_zip, unique_name

INIT_TYPE = ("import os\nINIT = os.environ['AWS_LAMBDA_INITIALIZATION_TYPE']\n"
             "def handler(event, context):\n    return INIT\n")


def instances(nimbus, name):
    with urllib.request.urlopen(f"{nimbus.endpoint}/nimbus/v1/instances?function={name}") as r:
        return json.load(r)


def wait_ready(client, name, qualifier, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = client.get_provisioned_concurrency_config(FunctionName=name, Qualifier=qualifier)
        if got["Status"] == "READY":
            return got
        time.sleep(0.1)
    raise AssertionError(f"provisioned concurrency of {name}:{qualifier} never became READY")


def test_provisioned_alias_answers_its_first_call_warm(nimbus, client, make_function):
    name = unique_name()
    make_function(make_zip({"app.py": INIT_TYPE}), name=name, Publish=True)
    client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    put = client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=2)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert put["RequestedProvisionedConcurrentExecutions"] == 2
    assert put["Status"] in ("IN_PROGRESS", "READY")
    ready = wait_ready(client, name, "live")
    assert ready["AvailableProvisionedConcurrentExecutions"] == 2
    assert ready["AllocatedProvisionedConcurrentExecutions"] == 2
    seen = instances(nimbus, name)
    assert [i["provisioned"] for i in seen["instances"]] == [True, True]
    assert all(i["state"] == "idle" and i["invocations"] == 0 for i in seen["instances"])

    first = client.invoke(FunctionName=name, Qualifier="live", LogType="Tail")
    assert json.loads(first["Payload"].read()) == "provisioned-concurrency"
    assert first["ExecutedVersion"] == "1"
    assert "Init Duration" not in base64.b64decode(first["LogResult"]).decode()
    after = instances(nimbus, name)
    assert len(after["instances"]) == 2, "the call was served by a provisioned instance"
    assert sum(i["invocations"] for i in after["instances"]) == 1
    assert after["functions"][0]["cold_starts"] == 0

    listed = client.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"]
    assert [c["FunctionArn"].rsplit(":", 1)[1] for c in listed] == ["live"]

    client.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
    deadline = time.time() + 5
    while time.time() < deadline and any(i["provisioned"] for i in instances(nimbus, name)["instances"]):
        time.sleep(0.1)
    assert not any(i["provisioned"] for i in instances(nimbus, name)["instances"])
    assert_client_error(
        lambda: client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="live"),
        "ProvisionedConcurrencyConfigNotFoundException", 404)


def test_on_demand_instances_say_so(client, make_function):
    name = unique_name()
    make_function(make_zip({"app.py": INIT_TYPE}), name=name)
    out = client.invoke(FunctionName=name)
    assert json.loads(out["Payload"].read()) == "on-demand"


def test_provisioned_concurrency_bad_inputs(client, make_function):
    name = unique_name()
    make_function(make_zip({"app.py": INIT_TYPE}), name=name, Publish=True)
    assert_client_error(
        lambda: client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="$LATEST", ProvisionedConcurrentExecutions=1),
        "InvalidParameterValueException", 400, "unpublished function versions")
    assert_client_error(
        lambda: client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="7", ProvisionedConcurrentExecutions=1),
        "ResourceNotFoundException", 404)
    assert_client_error(
        lambda: client.put_provisioned_concurrency_config(
            FunctionName=unique_name(), Qualifier="1", ProvisionedConcurrentExecutions=1),
        "ResourceNotFoundException", 404)
    assert_client_error(
        lambda: client.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="1"),
        "ProvisionedConcurrencyConfigNotFoundException", 404)
    assert client.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"] == []
