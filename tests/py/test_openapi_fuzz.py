"""Schemathesis against `/nimbus/v1/openapi.json`: every documented operation, fed generated
requests (valid and invalid), signed with SigV4 like any client, answers as the document says.

The checks are the stateless ones: no 5xx, only documented status codes, bodies that match
the documented schema and content type.  A dedicated server with credentials holds a real
function, schedule and dead letters, so the `{name}` and `{id}` paths often reach real
resources and answer 2xx.  Examples are bounded and derandomized (same cases every run) and
nothing but 127.0.0.1 is contacted.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from pathlib import Path

import hypothesis
import pytest
import requests
import schemathesis
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import strategies as st
from schemathesis import GenerationMode

from helpers import (
    ACCESS_KEY,
    REGION,
    ROLE,
    SECRET_KEY,
    NimbusServer,
    make_client,
    py_zip,
    raw_request,
    unique_name,
)

# Per operation: with 14 operations the whole file stays well under two minutes on a shared
# two-core machine.
MAX_EXAMPLES = 50
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
]
VALID_EXPRESSIONS = ["rate(5 minutes)", "rate(1 day)", "0 3 * * *", "*/10 * * * * *",
                     "cron(15 2 1 * *)"]
OPENAPI = Path(__file__).resolve().parents[2] / "crates/api/src/nimbus/openapi.json"
FAILING = "def handler(event, context):\n    raise RuntimeError('fuzz target fails on purpose')\n"


def _canonical_query(query: str) -> str:
    """The query as SigV4 spells it: each name and value percent-encoded except `A-Za-z0-9-._~`
    (a space as %20, not requests' `+`).  botocore signs the query exactly as it finds it in
    the URL (it builds its own URLs that way), so the URL sent must already be spelled so."""
    pairs = []
    for pair in query.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            pairs.append("=".join(urllib.parse.quote(urllib.parse.unquote_plus(part), safe="-_.~")
                                  for part in (name, value)))
    return "&".join(pairs)


class SigV4(requests.auth.AuthBase):
    """Signs a prepared `requests` request as botocore signs the Lambda API's."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        url = urllib.parse.urlsplit(request.url)
        request.url = urllib.parse.urlunsplit(url._replace(query=_canonical_query(url.query)))
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        signed = AWSRequest(method=request.method, url=request.url, data=body,
                            headers={k: v for k, v in request.headers.items()
                                     if k.lower() in ("content-type",)})
        SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "lambda", REGION).add_auth(signed)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Content-SHA256"):
            if name in signed.headers:
                request.headers[name] = signed.headers[name]
        return request


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """A server with credentials: every request must be signed."""
    base = tmp_path_factory.mktemp("nimbus-fuzz")
    srv = NimbusServer(base / "data", base / "server.log",
                       env_extra={"NIMBUS_ACCESS_KEY_ID": ACCESS_KEY,
                                  "NIMBUS_SECRET_ACCESS_KEY": SECRET_KEY}).start()
    yield srv
    srv.cleanup()


@pytest.fixture(scope="module")
def targets(secured):
    """Real resources for the path parameters: a function that always fails (so it leaves
    dead letters), a schedule on it (disabled: it never fires) and two dead letters."""
    client = make_client(secured.endpoint)
    name = unique_name("fuzz")
    client.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE,
                           Handler="app.handler", Code={"ZipFile": py_zip(FAILING)})
    client.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    for _ in range(2):
        client.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")
    status, _, _ = raw_request(secured.endpoint, "POST", "/nimbus/v1/schedules", json.dumps(
        {"name": name, "function": name, "expression": "rate(1 day)", "enabled": False}).encode())
    assert status == 201
    deadline = time.monotonic() + 30
    letters: list = []
    while time.monotonic() < deadline and len(letters) < 2:
        status, _, body = raw_request(secured.endpoint, "GET",
                                      f"/nimbus/v1/dead-letters?function={name}")
        assert status == 200
        letters = json.loads(body)["dead_letters"]
        time.sleep(0.2)
    assert len(letters) == 2, "the failing async invokes left no dead letters within 30 s"
    # One dead letter to delete, one to re-drive.
    return {"name": name, "ids": [letter["id"] for letter in letters]}


@pytest.fixture(scope="module")
def api_schema(secured):
    """The document as the server serves it (fetched signed), fuzzing that server."""
    schema = schemathesis.openapi.from_url(f"{secured.endpoint}/nimbus/v1/openapi.json",
                                           auth=SigV4(), timeout=10)
    schema.config.update(base_url=secured.endpoint)
    schema.config.checks.update(included_check_names=CHECKS)
    return schema


def _operations_in_the_checked_in_document():
    """(method, path) of every documented operation, to name one test per operation; the
    test itself fuzzes the document the server serves."""
    doc = json.loads(OPENAPI.read_text())
    return [(method.upper(), path) for path, item in doc["paths"].items()
            for method in item if method in ("get", "put", "post", "delete", "patch")]


def _with_real_schedule(case, function: str, expression: str):
    """A generated valid schedule, for the real function, with an expression that parses;
    disabled, so it never fires."""
    case.body = {**case.body, "function": function, "expression": expression, "enabled": False}
    return case


def _cases(operation, targets):
    """Valid and invalid requests; half of them name a real resource in the path, and half
    the valid new schedules are for the real function (the rest are 400s and 404s)."""
    real = {"name": targets["name"]} if "{name}" in operation.path else {}
    if "{id}" in operation.path:
        real["id"] = targets["ids"][operation.path.endswith("/redrive")]
    strategies = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategies.append(operation.as_strategy(mode))
        if real:
            strategies.append(operation.as_strategy(mode, path_parameters=real))
    if operation.method.upper() == "POST" and operation.path == "/nimbus/v1/schedules":
        strategies.append(st.builds(_with_real_schedule, operation.as_strategy(),
                                    st.just(targets["name"]), st.sampled_from(VALID_EXPRESSIONS)))
    # `follow=true` streams logs for as long as the client listens: tested on its own below.
    return st.one_of(strategies).filter(
        lambda case: str((case.query or {}).get("follow")).lower() != "true")


@pytest.mark.parametrize("method,path", _operations_in_the_checked_in_document(),
                         ids=lambda v: v)
def test_every_operation_answers_signed_generated_requests_as_documented(
        api_schema, targets, method, path):
    operation = api_schema[path][method]
    assert operation is not None, f"{method} {path} is not in the served document"

    @hypothesis.settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None,
                         database=None, suppress_health_check=list(hypothesis.HealthCheck),
                         phases=[hypothesis.Phase.generate])
    @hypothesis.given(case=_cases(operation, targets))
    def answers_as_documented(case):
        response = case.call_and_validate(auth=SigV4(), timeout=30)
        # Signed with the server's own credentials: a refusal is a signing bug, not an answer.
        assert response.status_code != 403, (case.as_curl_command(), response.text)

    answers_as_documented()


def _documented_operations(secured, targets):
    status, _, body = raw_request(secured.endpoint, "GET", "/nimbus/v1/openapi.json")
    assert status == 200
    for path, item in json.loads(body)["paths"].items():
        concrete = path.replace("{name}", targets["name"]).replace("{id}", targets["ids"][0])
        for method in item:
            if method in ("get", "put", "post", "delete"):
                yield method.upper(), concrete


def test_unsigned_requests_are_refused_on_every_documented_operation(secured, targets):
    operations = list(_documented_operations(secured, targets))
    assert len(operations) >= 14
    for method, path in operations:
        status, headers, body = raw_request(secured.endpoint, method, path, b"{}", sign=False,
                                            headers={"Content-Type": "application/json"})
        assert status == 403, (method, path, status, body)
        assert headers["x-amzn-errortype"] == "MissingAuthenticationTokenException", (method, path)
        assert headers["content-type"].startswith("application/json")
        assert json.loads(body)["Type"] == "User"


def test_following_logs_is_an_event_stream(secured, targets):
    url = (f"{secured.endpoint}/nimbus/v1/functions/{urllib.parse.quote(targets['name'])}/logs"
           "?follow=true")
    with requests.get(url, auth=SigV4(), stream=True, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
    status, headers, _ = raw_request(secured.endpoint, "GET",
                                     f"/nimbus/v1/functions/{unique_name()}/logs?follow=true")
    assert status == 404 and headers["content-type"].startswith("application/json")


def test_a_zip_download_is_a_zip(secured, targets):
    status, headers, body = raw_request(secured.endpoint, "GET",
                                        f"/nimbus/v1/functions/{targets['name']}/code")
    assert status == 200 and headers["content-type"] == "application/zip"
    assert body == py_zip(FAILING), "the package as deployed"
