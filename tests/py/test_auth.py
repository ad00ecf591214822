"""API authentication: a server with credentials accepts only requests SigV4-signed with
them (boto3, the AWS CLI and the nimbus CLI sign), and refuses the rest with AWS's errors."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import re
import subprocess
import urllib.request

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from helpers import NimbusServer, _nimbus_bin, make_zip, py_zip, raw_request, unique_name
from test_awscli import _aws_cmd

KEY, SECRET = "test", "test"  # what the suite's clients sign with


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    base = tmp_path_factory.mktemp("nimbus-auth")
    srv = NimbusServer(base / "data", base / "server.log",
                       env_extra={"NIMBUS_ACCESS_KEY_ID": KEY, "NIMBUS_SECRET_ACCESS_KEY": SECRET}).start()
    yield srv
    srv.cleanup()


def lambda_client(endpoint, key=KEY, secret=SECRET, region="us-east-1"):
    return boto3.client("lambda", endpoint_url=endpoint, region_name=region,
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=Config(retries={"total_max_attempts": 1}))


def refused(call, code):
    with pytest.raises(ClientError) as e:
        call()
    assert e.value.response["Error"]["Code"] == code
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def sign(endpoint, method, path, body, when, key=KEY, secret=SECRET):
    """SigV4 by hand, at a chosen time (botocore always signs with now)."""
    host = endpoint.split("://", 1)[1]
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    payload = hashlib.sha256(body).hexdigest()
    canonical = f"{method}\n{path}\n\nhost:{host}\nx-amz-date:{amz_date}\n\nhost;x-amz-date\n{payload}"
    scope = f"{date}/us-east-1/lambda/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    k = ("AWS4" + secret).encode()
    for part in (date, "us-east-1", "lambda", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    return {"X-Amz-Date": amz_date,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders=host;x-amz-date, Signature={signature}"}


def test_signed_clients_are_served(secured):
    client = lambda_client(secured.endpoint)
    name = unique_name()
    client.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler",
                           Role="arn:aws:iam::123456789012:role/x", Code={"ZipFile": py_zip()})
    assert client.invoke(FunctionName=name, Payload=b'{"a": 1}')["StatusCode"] == 200
    arn = f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert client.get_function(FunctionName=arn)["Configuration"]["FunctionName"] == name


def test_wrong_secret_unknown_key_and_no_signature_are_refused(secured):
    refused(lambda: lambda_client(secured.endpoint, secret="wrong").list_functions(), "InvalidSignatureException")
    refused(lambda: lambda_client(secured.endpoint, key="nobody").list_functions(), "UnrecognizedClientException")
    status, headers, _ = raw_request(secured.endpoint, "GET", "/2015-03-31/functions/", sign=False)
    assert status == 403 and headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"


def test_stale_and_tampered_requests_are_refused(secured):
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=20)
    path = "/2015-03-31/functions/"
    status, headers, body = raw_request(secured.endpoint, "GET", path, sign=False,
                                        headers=sign(secured.endpoint, "GET", path, b"", old))
    assert status == 403 and headers["x-amzn-errortype"] == "InvalidSignatureException"
    assert b"Signature expired" in body
    now = datetime.datetime.now(datetime.timezone.utc)
    status, _, _ = raw_request(secured.endpoint, "GET", path, sign=False,
                               headers=sign(secured.endpoint, "GET", path, b"", now))
    assert status == 200, "the hand signer is right when nothing is tampered with"
    name = unique_name()
    invoke = f"/2015-03-31/functions/{name}/invocations"
    headers = sign(secured.endpoint, "POST", invoke, b'{"amount": 1}', now)
    status, answer, _ = raw_request(secured.endpoint, "POST", invoke, b'{"amount": 1000}', headers=headers, sign=False)
    assert status == 403 and answer["x-amzn-errortype"] == "InvalidSignatureException"


def test_the_aws_cli_and_the_nimbus_cli_sign(secured, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION="us-east-1",
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    aws = _aws_cmd()
    ok = subprocess.run(aws + ["--endpoint-url", secured.endpoint, "lambda", "list-functions"],
                        env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    env["AWS_SECRET_ACCESS_KEY"] = "wrong"
    bad = subprocess.run(aws + ["--endpoint-url", secured.endpoint, "lambda", "list-functions"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "InvalidSignatureException" in bad.stderr
    cli_env = dict(os.environ, NIMBUS_ENDPOINT=secured.endpoint)
    unsigned = subprocess.run([_nimbus_bin(), "ls"], env=cli_env, capture_output=True, text=True)
    assert unsigned.returncode == 1 and "MissingAuthenticationTokenException" in unsigned.stderr
    cli_env.update(NIMBUS_ACCESS_KEY_ID=KEY, NIMBUS_SECRET_ACCESS_KEY=SECRET)
    src = tmp_path / "fn"
    src.mkdir()
    (src / "app.py").write_text("def handler(event, context):\n    return 'signed'\n")
    name = unique_name()
    deployed = subprocess.run([_nimbus_bin(), "deploy", str(src), "--name", name, "--runtime", "python3.11",
                               "--handler", "app.handler"], env=cli_env, capture_output=True, text=True)
    assert deployed.returncode == 0, deployed.stderr
    out = subprocess.run([_nimbus_bin(), "invoke", name], env=cli_env, capture_output=True, text=True)
    assert out.returncode == 0 and json.loads(out.stdout) == "signed"


def test_public_urls_and_metrics_need_no_signature(secured):
    client = lambda_client(secured.endpoint)
    name = unique_name()
    client.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler",
                           Role="arn:aws:iam::123456789012:role/x",
                           Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return 'public'\n"})})
    client.create_function_url_config(FunctionName=name, AuthType="NONE")
    with urllib.request.urlopen(f"{secured.endpoint}/fn/{name}/") as r:
        assert json.load(r) == "public"
    with urllib.request.urlopen(f"{secured.endpoint}/metrics") as r:
        assert r.status == 200
    client.update_function_url_config(FunctionName=name, AuthType="AWS_IAM")
    status, _, _ = raw_request(secured.endpoint, "GET", f"/fn/{name}/", sign=False)
    assert status == 403
    status, _, body = raw_request(secured.endpoint, "GET", f"/fn/{name}/", sign=True)
    assert status == 200 and json.loads(body) == "public"
    now = datetime.datetime.now(datetime.timezone.utc)
    headers = sign(secured.endpoint, "GET", f"/fn/{name}/", b"", now, secret="wrong")
    status, _, _ = raw_request(secured.endpoint, "GET", f"/fn/{name}/", headers=headers, sign=False)
    assert status == 403


def test_a_function_cannot_use_the_control_plane_without_credentials(secured):
    client = lambda_client(secured.endpoint)
    name = unique_name()
    code = ("import os, urllib.request, urllib.error\n"
            "def handler(event, context):\n"
            "    try:\n"
            "        urllib.request.urlopen(os.environ['API'] + '/2015-03-31/functions/')\n"
            "        return 'listed'\n"
            "    except urllib.error.HTTPError as e:\n"
            "        return e.code\n")
    client.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler",
                           Role="arn:aws:iam::123456789012:role/x", Code={"ZipFile": make_zip({"app.py": code})},
                           Environment={"Variables": {"API": secured.endpoint}})
    out = client.invoke(FunctionName=name, Payload=b"{}")
    assert json.loads(out["Payload"].read()) == 403


def botocore_signed(endpoint, method, path, body, headers=None, service="lambda", region="us-east-1"):
    """Headers botocore's own signer (the reference) gives a request; any extra `headers`
    (e.g. X-Amz-Content-SHA256) are signed with it."""
    request = AWSRequest(method=method, url=endpoint + path, data=body, headers=dict(headers or {}))
    SigV4Auth(Credentials(KEY, SECRET), service, region).add_auth(request)
    return dict(request.headers.items())


@pytest.fixture(scope="module")
def echo(secured):
    name = unique_name()
    lambda_client(secured.endpoint).create_function(
        FunctionName=name, Runtime="python3.11", Handler="app.handler",
        Role="arn:aws:iam::123456789012:role/x",
        Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return e\n"})})
    return f"/2015-03-31/functions/{name}/invocations"


def test_a_tampered_body_under_its_original_content_hash_is_refused(secured, echo):
    body = b'{"amount": 1}'
    headers = botocore_signed(secured.endpoint, "POST", echo, body,
                              {"X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()})
    status, _, answer = raw_request(secured.endpoint, "POST", echo, body, headers=headers, sign=False)
    assert status == 200 and json.loads(answer) == {"amount": 1}, "positive control: the untouched request"
    status, answer_headers, answer = raw_request(secured.endpoint, "POST", echo, b'{"amount": 1000}',
                                                 headers=headers, sign=False)
    assert status == 403 and answer_headers["x-amzn-errortype"] == "InvalidSignatureException", answer
    assert b"The provided 'x-amz-content-sha256' header does not match what was computed." in answer
    # Without the header (as botocore signs Lambda requests) the body's own hash is checked.
    plain = botocore_signed(secured.endpoint, "POST", echo, body)
    assert "X-Amz-Content-SHA256" not in plain
    status, _, _ = raw_request(secured.endpoint, "POST", echo, body, headers=plain, sign=False)
    assert status == 200
    status, answer_headers, _ = raw_request(secured.endpoint, "POST", echo, b'{"amount": 1000}',
                                            headers=plain, sign=False)
    assert status == 403 and answer_headers["x-amzn-errortype"] == "InvalidSignatureException"


def test_unsigned_and_streaming_payloads_are_refused(secured, echo):
    for claim in ("UNSIGNED-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"):
        headers = botocore_signed(secured.endpoint, "POST", echo, b"{}", {"X-Amz-Content-SHA256": claim})
        status, answer_headers, answer = raw_request(secured.endpoint, "POST", echo, b'{"other": 1}',
                                                     headers=headers, sign=False)
        assert status == 403 and answer_headers["x-amzn-errortype"] == "InvalidSignatureException", answer
        assert f"not '{claim}'".encode() in answer and b"Sign the payload" in answer


def test_a_date_more_than_15_minutes_ahead_is_refused(secured):
    path = "/2015-03-31/functions/"
    ahead = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=16)
    status, headers, body = raw_request(secured.endpoint, "GET", path, sign=False,
                                        headers=sign(secured.endpoint, "GET", path, b"", ahead))
    assert status == 403 and headers["x-amzn-errortype"] == "InvalidSignatureException"
    message = json.loads(body)["message"]
    stamp = r"\d{8}T\d{6}Z"
    assert re.fullmatch(rf"Signature not yet current: {stamp} is still later than {stamp} \({stamp} \+ 15 min\.\)",
                        message), message
    assert message.split()[4] == ahead.strftime("%Y%m%dT%H%M%SZ")
    slightly = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=14)
    status, _, _ = raw_request(secured.endpoint, "GET", path, sign=False,
                               headers=sign(secured.endpoint, "GET", path, b"", slightly))
    assert status == 200, "a clock 14 minutes ahead is within AWS's window"
    behind = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=16)
    status, _, body = raw_request(secured.endpoint, "GET", path, sign=False,
                                  headers=sign(secured.endpoint, "GET", path, b"", behind))
    assert status == 403
    assert re.fullmatch(rf"Signature expired: {stamp} is now earlier than {stamp} \({stamp} - 15 min\.\)",
                        json.loads(body)["message"])


def test_credentials_must_be_scoped_to_the_servers_region_and_lambda(secured):
    with pytest.raises(ClientError) as e:
        lambda_client(secured.endpoint, region="eu-west-1").list_functions()
    error = e.value.response["Error"]
    assert error["Code"] == "InvalidSignatureException"
    assert error["Message"].startswith("Credential should be scoped to a valid region. ")
    assert "'us-east-1'" in error["Message"], "says which region to sign for"
    path = "/2015-03-31/functions/"
    headers = botocore_signed(secured.endpoint, "GET", path, b"", service="s3")
    status, answer_headers, body = raw_request(secured.endpoint, "GET", path, headers=headers, sign=False)
    assert status == 403 and answer_headers["x-amzn-errortype"] == "InvalidSignatureException"
    assert json.loads(body)["message"] == "Credential should be scoped to correct service: 'lambda'. "


def test_a_server_in_another_region_wants_signatures_for_it(tmp_path):
    srv = NimbusServer(tmp_path / "data", tmp_path / "server.log", args=["--region", "eu-west-1"],
                       env_extra={"NIMBUS_ACCESS_KEY_ID": KEY, "NIMBUS_SECRET_ACCESS_KEY": SECRET}).start()
    try:
        assert lambda_client(srv.endpoint, region="eu-west-1").list_functions()["Functions"] == []
        refused(lambda: lambda_client(srv.endpoint).list_functions(), "InvalidSignatureException")
        env = dict(os.environ, NIMBUS_ENDPOINT=srv.endpoint, NIMBUS_ACCESS_KEY_ID=KEY,
                   NIMBUS_SECRET_ACCESS_KEY=SECRET, NIMBUS_REGION="eu-west-1")
        listed = subprocess.run([_nimbus_bin(), "ls"], env=env, capture_output=True, text=True)
        assert listed.returncode == 0, listed.stderr
    finally:
        srv.cleanup()


@pytest.mark.parametrize("path", [
    "/2015-03-31/functions/?MaxItems=5&FunctionVersion=ALL",
    "/2015-03-31/functions/?Marker=a%2Fb%20c%2B%3D%26&MaxItems=1",
    "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Anone?Qualifier=%24LATEST",
    "/2015-03-31/functions/none~x.y_z-1/configuration",
    "/2019-09-25/functions/none/event-invoke-config/list?Marker=%E2%82%AC",
])
def test_botocores_signatures_verify_for_awkward_paths_and_queries(secured, path):
    """botocore is the reference signer: whatever the server answers, it is not a refusal
    of the signature; the same request with another body is refused."""
    headers = botocore_signed(secured.endpoint, "GET", path, b"")
    status, answer_headers, body = raw_request(secured.endpoint, "GET", path, headers=headers, sign=False)
    assert status != 403, body
    headers = botocore_signed(secured.endpoint, "GET", path, b"")
    status, answer_headers, _ = raw_request(secured.endpoint, "GET", path, b"x", headers=headers, sign=False)
    assert status == 403 and answer_headers["x-amzn-errortype"] == "InvalidSignatureException"


def test_the_nimbus_cli_signs_a_streamed_upload(secured, tmp_path):
    """Packages over 1 MiB are uploaded as a stream with a progress bar: the CLI signs
    their hash rather than UNSIGNED-PAYLOAD."""
    src = tmp_path / "big"
    src.mkdir()
    (src / "app.py").write_text("def handler(event, context):\n    return 'big'\n")
    (src / "noise.bin").write_bytes(os.urandom(1536 * 1024))  # incompressible
    env = dict(os.environ, NIMBUS_ENDPOINT=secured.endpoint, NIMBUS_ACCESS_KEY_ID=KEY,
               NIMBUS_SECRET_ACCESS_KEY=SECRET)
    name = unique_name()
    deployed = subprocess.run([_nimbus_bin(), "deploy", str(src), "--name", name, "--runtime", "python3.11",
                               "--handler", "app.handler"], env=env, capture_output=True, text=True)
    assert deployed.returncode == 0, deployed.stderr
    out = subprocess.run([_nimbus_bin(), "invoke", name], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and json.loads(out.stdout) == "big"
