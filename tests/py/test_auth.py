"""API authentication: a server with credentials accepts only requests SigV4-signed with
them (boto3, the AWS CLI and the nimbus CLI sign), and refuses the rest with AWS's errors."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import subprocess
import urllib.request

import boto3
import pytest
from botocore.config import Config
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


def lambda_client(endpoint, key=KEY, secret=SECRET):
    return boto3.client("lambda", endpoint_url=endpoint, region_name="us-east-1",
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
