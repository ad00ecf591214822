"""Reserved concurrency through boto3: Put/Get/DeleteFunctionConcurrency, GetFunction's
Concurrency, GetAccountSettings' unreserved figure, and throttling with Lambda's Reason."""

from __future__ import annotations

import threading

from botocore.exceptions import ClientError

from helpers import assert_client_error, make_zip, unique_name

SLEEPY = "import time\ndef handler(event, context):\n    time.sleep(event.get('sleep', 0))\n    return 'ok'\n"


def test_reserved_concurrency_round_trip(client, make_function):
    name = unique_name()
    make_function(name=name)
    before = client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    put = client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
    assert put["ReservedConcurrentExecutions"] == 5
    assert client.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 5
    assert client.get_function(FunctionName=name)["Concurrency"] == {"ReservedConcurrentExecutions": 5}
    after = client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    assert after == before - 5
    resp = client.delete_function_concurrency(FunctionName=name)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert "ReservedConcurrentExecutions" not in client.get_function_concurrency(FunctionName=name)
    assert "Concurrency" not in client.get_function(FunctionName=name)
    assert client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == before


def test_reservation_must_leave_100_unreserved(client, make_function):
    name = unique_name()
    make_function(name=name)
    assert_client_error(
        lambda: client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=901),
        "InvalidParameterValueException", 400, "minimum value of [100]")
    assert "ReservedConcurrentExecutions" not in client.get_function_concurrency(FunctionName=name)


def test_concurrency_of_unknown_function(client):
    name = unique_name()
    assert_client_error(
        lambda: client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1),
        "ResourceNotFoundException", 404)
    assert_client_error(lambda: client.get_function_concurrency(FunctionName=name),
                        "ResourceNotFoundException", 404)


def test_zero_reserved_throttles_with_reason(client, make_function):
    name = unique_name()
    make_function(make_zip({"app.py": SLEEPY}), name=name)
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    try:
        client.invoke(FunctionName=name, Payload=b"{}")
        raise AssertionError("a function with 0 reserved must be throttled")
    except ClientError as e:
        assert e.response["Error"]["Code"] == "TooManyRequestsException"
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert e.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
        assert e.response["ResponseMetadata"]["HTTPHeaders"].get("retry-after")
    client.delete_function_concurrency(FunctionName=name)
    assert client.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200


def test_reserved_one_runs_one_at_a_time(client, make_function):
    name = unique_name()
    make_function(make_zip({"app.py": SLEEPY}), name=name, Timeout=10)
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    results = []

    def call():
        try:
            client.invoke(FunctionName=name, Payload=b'{"sleep": 1.5}')
            results.append(200)
        except ClientError as e:
            results.append(e.response["ResponseMetadata"]["HTTPStatusCode"])

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 429, 429]
