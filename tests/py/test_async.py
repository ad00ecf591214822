"""Async (Event) invocation through boto3: durable acceptance, delivery, retries, dead
letters, destinations and EventInvokeConfig. The test server retries after 0.2 s, 0.4 s…"""

from __future__ import annotations

import json
import time
import urllib.request

from helpers import POST_TO_SINK, assert_client_error, fn_arn, make_zip, unique_name

RECORDER = POST_TO_SINK + '''
import json
def handler(event, context):
    post(json.dumps(event))
    return {"recorded": True}
'''
FAILING = "def handler(event, context):\n    raise ValueError('not today')\n"


def recorder(make_function, sink):
    """A function that posts every event it gets to `sink`."""
    name = unique_name()
    make_function(make_zip({"app.py": RECORDER}), name=name,
                  Environment={"Variables": {"SINK": sink.url}})
    return name


def records(sink, count):
    return [json.loads(body) for body in sink.wait_for(count)]


def dead_letters(nimbus, function):
    with urllib.request.urlopen(f"{nimbus.endpoint}/nimbus/v1/dead-letters?function={function}") as r:
        return json.load(r)["dead_letters"]


def post(nimbus, path):
    req = urllib.request.Request(f"{nimbus.endpoint}{path}", method="POST", data=b"")
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def test_event_invocations_are_accepted_then_delivered(client, make_function, sink):
    name = recorder(make_function, sink)
    for n in range(5):
        resp = client.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"n": n}).encode())
        assert resp["StatusCode"] == 202
        assert resp["Payload"].read() == b""
    got = sorted(r["n"] for r in records(sink, 5))
    assert got == [0, 1, 2, 3, 4]


def test_event_bad_inputs(client, make_function):
    name = unique_name()
    make_function(name=name)
    assert_client_error(
        lambda: client.invoke(FunctionName=name, InvocationType="Event", Payload=b'"' + b"x" * 1_048_600 + b'"'),
        ("RequestEntityTooLargeException", "RequestTooLargeException"), 413,
        "byte payload is too large for the Event invocation type (limit 1048576 bytes)")
    assert_client_error(lambda: client.invoke(FunctionName=name, InvocationType="Event", Payload=b"{not json"),
                        "InvalidRequestContentException", 400)
    assert_client_error(lambda: client.invoke(FunctionName=unique_name(), InvocationType="Event", Payload=b"{}"),
                        "ResourceNotFoundException", 404)
    assert client.invoke(FunctionName=name, InvocationType="DryRun")["StatusCode"] == 204


def test_retries_then_dead_letter_and_on_failure_record(nimbus, client, make_function, sink):
    target = recorder(make_function, sink)
    name = unique_name()
    make_function(make_zip({"app.py": FAILING}), name=name)
    client.put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": fn_arn(target)}})
    resp = client.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"order": 7}')
    request_id = resp["ResponseMetadata"]["RequestId"]
    [record] = records(sink, 1)
    assert record["version"] == "1.0"
    ctx = record["requestContext"]
    assert ctx == {"requestId": request_id, "functionArn": fn_arn(name, "$LATEST"),
                   "condition": "RetriesExhausted", "approximateInvokeCount": 2}
    assert record["requestPayload"] == {"order": 7}
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["responsePayload"]["errorType"] == "ValueError"
    [letter] = dead_letters(nimbus, name)
    assert letter["id"] == request_id and letter["condition"] == "RetriesExhausted"
    assert letter["attempts"] == 2 and letter["payload"] == {"order": 7}
    assert "not today" in letter["error"]


def test_on_success_destination(client, make_function, sink):
    target = recorder(make_function, sink)
    name = unique_name()
    make_function(name=name)
    client.put_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": fn_arn(target)}})
    client.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"hello": "async"}')
    [record] = records(sink, 1)
    assert record["requestContext"]["condition"] == "Success"
    assert record["requestPayload"] == {"hello": "async"}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}


def test_redrive_and_delete_dead_letters(nimbus, client, make_function, sink):
    name = unique_name()
    make_function(make_zip({"app.py": FAILING}), name=name)
    client.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    for n in range(2):
        client.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"n": n}).encode())
    deadline = time.time() + 10
    while time.time() < deadline and len(dead_letters(nimbus, name)) < 2:
        time.sleep(0.05)
    letters = dead_letters(nimbus, name)
    assert [l["attempts"] for l in letters] == [1, 1]
    # Fix the function, re-drive one, delete the other.
    client.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": RECORDER}))
    client.update_function_configuration(FunctionName=name, Environment={"Variables": {"SINK": sink.url}})
    assert post(nimbus, f"/nimbus/v1/dead-letters/{letters[0]['id']}/redrive") == {"redriven": 1}
    [record] = records(sink, 1)
    assert record == letters[0]["payload"]
    req = urllib.request.Request(f"{nimbus.endpoint}/nimbus/v1/dead-letters/{letters[1]['id']}", method="DELETE")
    with urllib.request.urlopen(req) as r:
        assert r.status == 204
    assert dead_letters(nimbus, name) == []


def test_event_invoke_config_api(client, make_function):
    name = unique_name()
    target = unique_name()
    make_function(name=name)
    make_function(name=target)
    put = client.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0, MaximumEventAgeInSeconds=120)
    assert put["MaximumRetryAttempts"] == 0 and put["MaximumEventAgeInSeconds"] == 120
    assert put["FunctionArn"] == fn_arn(name)
    updated = client.update_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": fn_arn(target)}})
    assert updated["MaximumRetryAttempts"] == 0, "update keeps what it does not set"
    assert updated["DestinationConfig"]["OnSuccess"]["Destination"] == fn_arn(target)
    got = client.get_function_event_invoke_config(FunctionName=name)
    assert got["MaximumEventAgeInSeconds"] == 120
    listed = client.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"]
    assert len(listed) == 1
    for bad in ({"MaximumRetryAttempts": 3}, {"MaximumEventAgeInSeconds": 30000},
                {"DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sqs:us-east-1:000000000000:q"}}},
                {"DestinationConfig": {"OnFailure": {"Destination": fn_arn(unique_name())}}}):
        assert_client_error(lambda: client.put_function_event_invoke_config(FunctionName=name, **bad),
                            ("ValidationException", "InvalidParameterValueException"), 400)
    assert client.get_function_event_invoke_config(FunctionName=name)["MaximumEventAgeInSeconds"] == 120
    client.delete_function_event_invoke_config(FunctionName=name)
    assert_client_error(lambda: client.get_function_event_invoke_config(FunctionName=name),
                        "ResourceNotFoundException", 404)
    assert_client_error(lambda: client.update_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1),
                        "ResourceNotFoundException", 404)
