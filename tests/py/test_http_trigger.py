"""The HTTP trigger (function URLs): the URL configuration API through boto3, and real HTTP
requests round-tripping through a function as payload 2.0 events and responses."""

from __future__ import annotations

import base64
import http.client
import json
import urllib.parse

from helpers import assert_client_error, make_zip, raw_request, unique_name

ECHO = '''
import base64, json
def handler(event, context):
    mode = (event.get("queryStringParameters") or {}).get("mode")
    if mode == "fail":
        raise RuntimeError("boom")
    if mode == "bare":
        return "Hello"
    if mode == "binary":
        return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
                "body": base64.b64encode(bytes(range(256))).decode(), "isBase64Encoded": True}
    if mode == "teapot":
        return {"statusCode": 418, "headers": {"x-tea": "earl grey"},
                "cookies": ["c1=v1", "c2=v2; Path=/"], "body": "short and stout"}
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(event)}
'''


def send(nimbus, method, path, body=b"", headers=()):
    """One plain HTTP request; headers is a list of (name, value) so names may repeat."""
    u = urllib.parse.urlsplit(nimbus.endpoint)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in headers:
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


def header(headers, name):
    values = [v for k, v in headers if k.lower() == name]
    return values[0] if values else None


def echo_function(client, make_function, auth="NONE", **url_kw):
    name = unique_name()
    make_function(make_zip({"app.py": ECHO}), name=name)
    client.create_function_url_config(FunctionName=name, AuthType=auth, **url_kw)
    return name


def test_no_url_config_no_trigger(nimbus, make_function):
    name = unique_name()
    make_function(make_zip({"app.py": ECHO}), name=name)
    status, _, _ = send(nimbus, "GET", f"/fn/{name}/")
    assert status == 404


def test_request_becomes_a_payload_2_event(nimbus, client, make_function):
    name = echo_function(client, make_function)
    status, headers, body = send(
        nimbus, "POST", f"/fn/{name}/orders/42?a=1&a=2&b=x%20y",
        body=b'{"item": "tea"}',
        headers=[("Content-Type", "application/json"), ("X-Multi", "one"), ("X-Multi", "two"),
                 ("Cookie", "session=abc; theme=dark"), ("User-Agent", "nimbus-test")])
    assert status == 200, body
    assert header(headers, "content-type") == "application/json"
    event = json.loads(body)
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/orders/42"
    assert event["rawQueryString"] == "a=1&a=2&b=x%20y"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert event["headers"]["x-multi"] == "one,two"
    assert "cookie" not in event["headers"]
    assert event["cookies"] == ["session=abc", "theme=dark"]
    assert event["body"] == '{"item": "tea"}' and event["isBase64Encoded"] is False
    http_ctx = event["requestContext"]["http"]
    assert http_ctx == {"method": "POST", "path": "/orders/42", "protocol": "HTTP/1.1",
                        "sourceIp": "127.0.0.1", "userAgent": "nimbus-test"}
    ctx = event["requestContext"]
    assert ctx["accountId"] == "000000000000" and ctx["stage"] == "$default"
    assert ctx["requestId"] and isinstance(ctx["timeEpoch"], int)


def test_binary_bodies_travel_as_base64_both_ways(nimbus, client, make_function):
    name = echo_function(client, make_function)
    payload = bytes(range(256))
    status, _, body = send(nimbus, "PUT", f"/fn/{name}/blob", body=payload,
                           headers=[("Content-Type", "application/octet-stream")])
    event = json.loads(body)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload
    status, headers, body = send(nimbus, "GET", f"/fn/{name}/?mode=binary")
    assert status == 200 and body == payload
    assert header(headers, "content-type") == "application/octet-stream"


def test_status_headers_and_cookies_come_back(nimbus, client, make_function):
    name = echo_function(client, make_function)
    status, headers, body = send(nimbus, "GET", f"/fn/{name}/?mode=teapot")
    assert status == 418 and body == b"short and stout"
    assert header(headers, "x-tea") == "earl grey"
    assert [v for k, v in headers if k.lower() == "set-cookie"] == ["c1=v1", "c2=v2; Path=/"]


def test_bare_results_and_errors(nimbus, client, make_function):
    name = echo_function(client, make_function)
    status, headers, body = send(nimbus, "GET", f"/fn/{name}/?mode=bare")
    assert status == 200 and body == b'"Hello"'
    assert header(headers, "content-type") == "application/json"
    status, _, body = send(nimbus, "GET", f"/fn/{name}/?mode=fail")
    assert status == 502
    assert b"Internal Server Error" in body


def test_aws_iam_urls_need_a_signature(nimbus, client, make_function):
    name = echo_function(client, make_function, auth="AWS_IAM")
    status, _, _ = send(nimbus, "GET", f"/fn/{name}/")
    assert status == 403
    status, _, body = raw_request(nimbus.endpoint, "GET", f"/fn/{name}/", sign=True)
    assert status == 200, body


def test_cors_preflight_and_headers(nimbus, client, make_function):
    cors = {"AllowOrigins": ["https://shop.example"], "AllowMethods": ["GET", "POST"],
            "AllowHeaders": ["content-type"], "ExposeHeaders": ["x-tea"], "MaxAge": 600}
    name = echo_function(client, make_function, Cors=cors)
    status, headers, _ = send(nimbus, "OPTIONS", f"/fn/{name}/", headers=[
        ("Origin", "https://shop.example"), ("Access-Control-Request-Method", "POST")])
    assert status == 200
    assert header(headers, "access-control-allow-origin") == "https://shop.example"
    assert header(headers, "access-control-allow-methods") == "GET,POST"
    assert header(headers, "access-control-max-age") == "600"
    status, headers, _ = send(nimbus, "GET", f"/fn/{name}/?mode=teapot",
                              headers=[("Origin", "https://shop.example")])
    assert header(headers, "access-control-allow-origin") == "https://shop.example"
    assert header(headers, "access-control-expose-headers") == "x-tea"
    _, headers, _ = send(nimbus, "GET", f"/fn/{name}/", headers=[("Origin", "https://evil.example")])
    assert header(headers, "access-control-allow-origin") is None


def test_alias_urls_invoke_the_alias(nimbus, client, make_function):
    name = unique_name()
    make_function(make_zip({"app.py": ECHO}), name=name, Publish=True)
    client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    url = client.create_function_url_config(FunctionName=name, Qualifier="live", AuthType="NONE")
    assert url["FunctionUrl"].endswith(f"/fn/{name}:live/")
    assert url["FunctionArn"].endswith(f":{name}:live")
    status, _, body = send(nimbus, "GET", f"/fn/{name}:live/")
    assert status == 200 and json.loads(body)["rawPath"] == "/"
    status, _, _ = send(nimbus, "GET", f"/fn/{name}/")
    assert status == 404, "the unqualified function has no URL of its own"


def test_url_config_api(nimbus, client, make_function):
    name = unique_name()
    make_function(make_zip({"app.py": ECHO}), name=name, Publish=True)
    created = client.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["AuthType"] == "NONE" and created["InvokeMode"] == "BUFFERED"
    assert created["FunctionUrl"] == f"{nimbus.endpoint}/fn/{name}/"
    assert_client_error(lambda: client.create_function_url_config(FunctionName=name, AuthType="NONE"),
                        "ResourceConflictException", 409)
    got = client.get_function_url_config(FunctionName=name)
    assert got["FunctionUrl"] == created["FunctionUrl"] and "LastModifiedTime" in got
    updated = client.update_function_url_config(FunctionName=name, AuthType="AWS_IAM")
    assert updated["AuthType"] == "AWS_IAM"
    listed = client.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]
    assert [u["AuthType"] for u in listed] == ["AWS_IAM"]
    assert_client_error(lambda: client.create_function_url_config(FunctionName=name, AuthType="SOMETIMES"),
                        ("ValidationException", "InvalidParameterValueException"), 400)
    assert_client_error(lambda: client.create_function_url_config(FunctionName=name, Qualifier="1", AuthType="NONE"),
                        ("ValidationException", "InvalidParameterValueException"), 400)
    assert_client_error(lambda: client.create_function_url_config(FunctionName=name, Qualifier="nope", AuthType="NONE"),
                        "ResourceNotFoundException", 404)
    assert client.get_function_url_config(FunctionName=name)["AuthType"] == "AWS_IAM", "refusals changed nothing"
    assert client.delete_function_url_config(FunctionName=name)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert_client_error(lambda: client.get_function_url_config(FunctionName=name), "ResourceNotFoundException", 404)
    status, _, _ = send(nimbus, "GET", f"/fn/{name}/")
    assert status == 404
