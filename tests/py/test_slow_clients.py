"""Unauthenticated, oversized and slow clients cost the server nothing: heads that cannot be
authentic are refused before any body is read, a declared body over the operation's limit
is refused from its Content-Length, bodies and heads that stall are cut off, malformed
framing is a 400, and connections over the cap are refused cleanly. Raw sockets throughout,
since well-behaved clients cannot send these requests."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from helpers import ROLE, NimbusServer, make_client, make_zip, unique_name

KEY, SECRET = "test", "test"
HEADER_TIMEOUT_S = 1
BODY_IDLE_S = 2
ANSWER_WITHIN_S = 8  # a bound on waiting, not a speed assertion: today's server never answers


def start(base, *args):
    return NimbusServer(base / "data", base / "server.log", args=list(args),
                        env_extra={"NIMBUS_ACCESS_KEY_ID": KEY, "NIMBUS_SECRET_ACCESS_KEY": SECRET}).start()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    srv = start(tmp_path_factory.mktemp("nimbus-slow"),
                "--header-read-timeout", str(HEADER_TIMEOUT_S), "--body-idle-timeout", str(BODY_IDLE_S))
    yield srv
    srv.cleanup()


@pytest.fixture(scope="module")
def invocations(guarded):
    name = unique_name()
    make_client(guarded.endpoint).create_function(
        FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return e\n"})})
    return f"/2015-03-31/functions/{name}/invocations"


def signed_head(srv, method, path, extra):
    """A request head signed by botocore that claims some body's hash: it passes every
    check a head allows, so what follows is up to the body."""
    request = AWSRequest(method=method, url=srv.endpoint + path, data=b"",
                         headers={"X-Amz-Content-SHA256": hashlib.sha256(b"{}").hexdigest()})
    SigV4Auth(Credentials(KEY, SECRET), "lambda", "us-east-1").add_auth(request)
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{srv.port}"]
    lines += [f"{k}: {v}" for k, v in request.headers.items()]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def unsigned_head(srv, method, path, extra):
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{srv.port}"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def connect(srv, timeout=ANSWER_WITHIN_S):
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def wait_served_again(srv):
    """Waits until a new connection is answered 200 again (the held ones were closed)."""
    deadline = time.monotonic() + ANSWER_WITHIN_S
    while True:
        with connect(srv) as sock:
            sock.sendall(unsigned_head(srv, "GET", "/metrics", {"Connection": "close"}))
            answer = read_answer(sock)
        if answer is not None and answer[0] == 200:
            return
        assert time.monotonic() < deadline, f"the server did not recover: {answer}"
        time.sleep(0.1)


def read_answer(sock):
    """(status, headers, body) of the answer on `sock`, or None if it was closed without
    one. A socket timeout (no answer at all) raises."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return None if not data else _parse(data)
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    headers = _headers(head)
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split()[1]), headers, body


def _headers(head):
    return {k.strip().lower(): v.strip() for k, _, v in
            (line.partition(":") for line in head.decode().split("\r\n")[1:])}


def _parse(data):
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), _headers(head), body


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@pytest.mark.parametrize("path,operation", [
    ("/2015-03-31/functions", "CreateFunction"),
    ("/2015-03-31/functions/f/code", "UpdateFunctionCode"),
    ("/2015-03-31/functions/f/invocations", "InvokeFunction"),
])
def test_an_oversize_content_length_is_refused_without_reading_the_body(guarded, path, operation):
    method = "PUT" if path.endswith("/code") else "POST"
    limit = 6291456 if operation == "InvokeFunction" else 70167211
    for length in (limit + 1, 10 ** 12):
        with connect(guarded) as sock:
            sock.sendall(signed_head(guarded, method, path, {"Content-Length": str(length)}))
            answer = read_answer(sock)  # headers only: the body is never sent
        assert answer is not None, "closed without an answer"
        status, headers, body = answer
        assert status == 413 and headers["x-amzn-errortype"] == "RequestEntityTooLargeException", body
        assert json.loads(body)["message"] == \
            f"Request must be smaller than {limit} bytes for the {operation} operation"


def test_unauthenticated_uploads_are_refused_at_once_and_cost_no_memory(guarded):
    """20 concurrent 70 MB uploads with no Authorization: each is answered 403 from its
    head; none is read (today each was read whole: 1.4 GB)."""
    for _ in range(3):  # warm up the paths the test takes
        with connect(guarded) as sock:
            sock.sendall(unsigned_head(guarded, "POST", "/2015-03-31/functions", {"Content-Length": "2"}) + b"{}")
            read_answer(sock)
    before = rss_kb(guarded.proc.pid)
    size = 70_000_000
    payload = memoryview(b"\0" * size)
    answers = [None] * 20

    def upload(i):
        with connect(guarded) as sock:
            sock.sendall(unsigned_head(guarded, "POST", "/2015-03-31/functions",
                                       {"Content-Length": str(size), "Content-Type": "application/json"}))
            try:
                for start_at in range(0, size, 1 << 20):
                    sock.sendall(payload[start_at:start_at + (1 << 20)])
            except (BrokenPipeError, ConnectionResetError, socket.timeout):
                pass  # refused and closed mid-body, as it should be
            try:
                answers[i] = read_answer(sock)
            except (OSError, ValueError):
                answers[i] = "reset"

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    after = rss_kb(guarded.proc.pid)
    grown_mb = (after - before) / 1024
    assert grown_mb < 24, f"RSS grew {grown_mb:.0f} MB for unauthenticated uploads ({before} -> {after} kB)"
    statuses = [a[0] for a in answers if isinstance(a, tuple)]
    assert statuses and set(statuses) == {403}, answers
    assert make_client(guarded.endpoint).list_functions()["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_a_chunked_body_that_stalls_is_cut_off(guarded, invocations):
    with connect(guarded) as sock:
        sock.sendall(signed_head(guarded, "POST", invocations, {"Transfer-Encoding": "chunked"}))
        sock.sendall(b"1\r\n{\r\n")  # and never another byte
        answer = read_answer(sock)
    assert answer is None or answer[0] == 408, answer
    if answer is not None:
        assert answer[1]["x-amzn-errortype"] == "RequestTimeoutException"
        assert b"Send the whole body without pausing" in answer[2]


def test_a_chunked_body_that_never_ends_is_refused_at_the_limit(guarded, invocations):
    chunk = b"%x\r\n%s\r\n" % (1 << 16, b" " * (1 << 16))
    with connect(guarded) as sock:
        sock.sendall(signed_head(guarded, "POST", invocations, {"Transfer-Encoding": "chunked"}))
        sent = 0
        try:
            while sent < 64 << 20:  # bounded: well past the 6 MiB limit
                sock.sendall(chunk)
                sent += 1 << 16
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_answer(sock)
    assert answer is not None and answer[0] == 413, answer
    assert answer[1]["x-amzn-errortype"] == "RequestEntityTooLargeException"


def test_a_half_sent_head_is_cut_off(guarded):
    with connect(guarded) as sock:
        sock.sendall(b"POST /2015-03-31/functions HTTP/1.1\r\nHost: x\r\nContent-Le")
        answer = read_answer(sock)  # raises on a socket timeout: the connection stayed open
    assert answer is None or answer[0] == 408, answer


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "no-auth"])
def test_malformed_chunked_encoding_is_a_400(guarded, invocations, nimbus, signed):
    srv = guarded if signed else nimbus
    path = invocations if signed else "/2015-03-31/functions/nobody/invocations"
    head = signed_head if signed else unsigned_head
    with connect(srv) as sock:
        sock.sendall(head(srv, "POST", path, {"Transfer-Encoding": "chunked"}) + b"zz\r\n{}\r\n0\r\n\r\n")
        answer = read_answer(sock)
    assert answer is not None and answer[0] == 400, answer
    assert answer[1]["x-amzn-errortype"] == "InvalidRequestContentException"


def test_connections_over_the_cap_are_refused_cleanly_and_the_server_recovers(tmp_path):
    srv = start(tmp_path, "--max-connections", "4", "--header-read-timeout", "10")
    try:
        held = [connect(srv) for _ in range(4)]
        time.sleep(0.3)  # let the server accept them
        with connect(srv) as sock:
            sock.sendall(unsigned_head(srv, "GET", "/metrics", {}))
            answer = read_answer(sock)
        assert answer is not None, "closed without an answer"
        status, headers, body = answer
        assert status == 503 and headers["x-amzn-errortype"] == "ServiceException"
        assert headers.get("retry-after") == "1"
        assert "--max-connections" in json.loads(body)["Message"]
        for sock in held:
            sock.close()
        wait_served_again(srv)
        assert make_client(srv.endpoint).list_functions()["Functions"] == []
    finally:
        srv.cleanup()


def test_bodies_that_can_only_be_verified_at_their_end_share_a_bounded_budget(tmp_path):
    """botocore signs the body's hash without sending it, so the signature is known good
    only once the whole body is in: someone who knows the access key id but not the secret
    can make the server hold bodies. Node-wide they hold at most the budget; the rest wait
    briefly, then get a 429 (which clients retry)."""
    srv = start(tmp_path, "--unverified-body-budget", "8", "--body-idle-timeout", str(BODY_IDLE_S))
    try:
        size = 20_000_000
        payload = memoryview(b"\0" * size)
        path = "/2015-03-31/functions"
        request = AWSRequest(method="POST", url=srv.endpoint + path, data=b"{}")
        SigV4Auth(Credentials(KEY, "not-the-secret"), "lambda", "us-east-1").add_auth(request)
        assert "X-Amz-Content-SHA256" not in request.headers
        head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{srv.port}", f"Content-Length: {size}"]
        head = ("\r\n".join(head + [f"{k}: {v}" for k, v in request.headers.items()]) + "\r\n\r\n").encode()
        make_client(srv.endpoint).list_functions()  # warm up
        before = rss_kb(srv.proc.pid)
        answers = [None] * 10

        def upload(i):
            with connect(srv, timeout=15) as sock:
                sock.sendall(head)
                try:
                    for at in range(0, size, 1 << 20):
                        sock.sendall(payload[at:at + (1 << 20)])
                except (BrokenPipeError, ConnectionResetError):
                    pass
                try:
                    answers[i] = read_answer(sock)
                except (OSError, ValueError):
                    answers[i] = "reset"

        threads = [threading.Thread(target=upload, args=(i,)) for i in range(len(answers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        after = rss_kb(srv.proc.pid)
        codes = {a[1].get("x-amzn-errortype") for a in answers if isinstance(a, tuple)}
        assert codes <= {"InvalidSignatureException", "TooManyRequestsException"}, answers
        assert "TooManyRequestsException" in codes, "ten 20 MB bodies do not fit an 8 MB budget at once"
        grown_mb = (after - before) / 1024
        assert grown_mb < 80, f"RSS grew {grown_mb:.0f} MB ({before} -> {after} kB)"
        assert make_client(srv.endpoint).list_functions()["Functions"] == []
    finally:
        srv.cleanup()


def test_requests_without_a_body_never_wait_for_the_budget(tmp_path):
    """A body held on trust fills the whole budget; calls that carry no body (botocore's
    GETs) owe it nothing and are served at once, not refused with a 429."""
    srv = start(tmp_path, "--unverified-body-budget", "8", "--body-idle-timeout", "20")
    try:
        size = 20_000_000
        path = "/2015-03-31/functions"
        request = AWSRequest(method="POST", url=srv.endpoint + path, data=b"{}")
        SigV4Auth(Credentials(KEY, "not-the-secret"), "lambda", "us-east-1").add_auth(request)
        head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{srv.port}", f"Content-Length: {size}"]
        head = ("\r\n".join(head + [f"{k}: {v}" for k, v in request.headers.items()]) + "\r\n\r\n").encode()
        with connect(srv, timeout=30) as holder:
            holder.sendall(head + b"\0" * (1 << 20))  # then it stalls, holding the budget
            time.sleep(0.5)
            # Well inside the 20 s the held body may stall: it still holds the budget.
            client = make_client(srv.endpoint, read_timeout=5)
            for _ in range(3):
                assert client.list_functions()["Functions"] == []
    finally:
        srv.cleanup()


def test_a_body_that_trickles_in_is_cut_off_though_it_never_stalls(guarded, invocations):
    # A byte every half second never trips the 2 s idle timeout; falling behind 4 KiB/s
    # after that grace does.
    with connect(guarded, timeout=15) as sock:
        sock.sendall(signed_head(guarded, "POST", invocations, {"Content-Length": "100000"}))
        answer = None
        for _ in range(24):  # at most 12 s of trickling
            try:
                sock.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.5)
            try:
                answer = read_answer(sock)
                break
            except socket.timeout:
                continue
        sock.settimeout(5)
        if answer is None:
            answer = read_answer(sock)
    assert answer is not None and answer[0] == 408, answer
    assert answer[1]["x-amzn-errortype"] == "RequestTimeoutException"
    assert b"slower than" in answer[2], answer[2]


def test_one_client_cannot_take_every_connection(tmp_path):
    srv = start(tmp_path, "--max-connections", "50", "--max-connections-per-client", "3")
    try:
        held = [connect(srv) for _ in range(3)]
        time.sleep(0.3)  # let the server accept them
        with connect(srv) as sock:
            sock.sendall(unsigned_head(srv, "GET", "/metrics", {}))
            answer = read_answer(sock)
        assert answer is not None and answer[0] == 503, answer
        assert "--max-connections-per-client" in json.loads(answer[2])["Message"]
        # Another client address (still loopback) is served meanwhile.
        other = socket.socket()
        other.bind(("127.0.0.2", 0))
        other.settimeout(ANSWER_WITHIN_S)
        other.connect(("127.0.0.1", srv.port))
        with other:
            other.sendall(unsigned_head(srv, "GET", "/metrics", {"Connection": "close"}))
            answer = read_answer(other)
        assert answer is not None and answer[0] == 200, answer
        for sock in held:
            sock.close()
        wait_served_again(srv)
    finally:
        srv.cleanup()
