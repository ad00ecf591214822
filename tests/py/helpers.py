"""Helpers for the Nimbus end-to-end suite (imported by conftest and tests).

The suite drives a real `nimbus server` binary (path in $NIMBUS_BIN) through
boto3, the AWS CLI and raw HTTP.  Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import base64
import collections
import functools
import hashlib
import http.client
import io
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
import uuid
import zipfile
from pathlib import Path

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

# --------------------------------------------------------------------------
# constants
# --------------------------------------------------------------------------

ACCOUNT = "000000000000"
REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/lambda-role"
PY_RUNTIME = "python3.11"  # /usr/bin/python3 on the dev/CI image is 3.11
NODE_RUNTIME = "nodejs20.x"
ACCESS_KEY = "test"
SECRET_KEY = "test"

# Set in the server's environment only; functions must not see it.
SERVER_MARKER_VAR = "NIMBUS_E2E_SERVER_ONLY_MARKER"
SERVER_MARKER_VALUE = "server-secret-" + uuid.uuid4().hex

LISTEN_RE = re.compile(r"^nimbus listening on http://127\.0\.0\.1:(\d+)$")
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0

FIXED_DATE = (2020, 1, 1, 0, 0, 0)

SIX_MB = 6 * 1024 * 1024  # 6291456, Lambda's sync payload limit
UNZIPPED_LIMIT = 262144000


def fn_arn(name: str, qualifier: str | None = None) -> str:
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


def partial_arn(name: str) -> str:
    return f"{ACCOUNT}:function:{name}"


def unique_name(prefix: str = "fn") -> str:
    """A fresh, valid function name (<= 64 chars, [A-Za-z0-9_-])."""
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


def code_sha256(zip_bytes: bytes) -> str:
    """Lambda's CodeSha256: base64 of the raw SHA-256 digest."""
    return base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode()


# --------------------------------------------------------------------------
# zip building
# --------------------------------------------------------------------------


def make_zip(
    files: dict,
    modes: dict | None = None,
    symlinks: dict | None = None,
) -> bytes:
    """Build a zip in memory.

    files:    {path: str | bytes}
    modes:    {path: unix permission bits, e.g. 0o755}; default 0o644
    symlinks: {path: target} stored as unix symlink entries
    Deterministic (fixed timestamps) so CodeSha256 is stable for equal input.
    """
    modes = modes or {}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            zi = zipfile.ZipInfo(path, date_time=FIXED_DATE)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.create_system = 3  # unix, so external_attr is honoured
            mode = modes.get(path, 0o644)
            zi.external_attr = (mode | 0o100000) << 16
            zf.writestr(zi, data)
        for path, target in (symlinks or {}).items():
            zi = zipfile.ZipInfo(path, date_time=FIXED_DATE)
            zi.compress_type = zipfile.ZIP_STORED
            zi.create_system = 3
            zi.external_attr = (0o120777) << 16  # S_IFLNK | 0777
            zf.writestr(zi, target.encode())
    return buf.getvalue()


def _zeros_entry(zf: zipfile.ZipFile, name: str, size: int) -> None:
    zi = zipfile.ZipInfo(name, date_time=FIXED_DATE)
    zi.compress_type = zipfile.ZIP_DEFLATED
    chunk = bytes(1 << 20)
    with zf.open(zi, "w") as f:  # streamed: never holds `size` bytes in memory
        remaining = size
        while remaining > 0:
            n = min(remaining, len(chunk))
            f.write(chunk[:n] if n < len(chunk) else chunk)
            remaining -= n


@functools.lru_cache(maxsize=None)
def zip_bomb_single(size: int = 300 * 1024 * 1024) -> bytes:
    """One entry of `size` zero bytes (honest headers), ~300 KB compressed."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo("app.py", date_time=FIXED_DATE), "def handler(e, c):\n    return 1\n")
        _zeros_entry(zf, "zeros.bin", size)
    return buf.getvalue()


@functools.lru_cache(maxsize=None)
def zip_bomb_many(entries: int = 14, each: int = 20 * 1024 * 1024) -> bytes:
    """Many entries, each well under the limit, together over 250 MB."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo("app.py", date_time=FIXED_DATE), "def handler(e, c):\n    return 1\n")
        for i in range(entries):
            _zeros_entry(zf, f"data/zeros{i:02d}.bin", each)
    return buf.getvalue()


@functools.lru_cache(maxsize=None)
def zip_bomb_lying_header(size: int = 300 * 1024 * 1024, declared: int = 1024) -> bytes:
    """A single high-ratio entry whose headers claim it is only `declared`
    bytes unpacked while the deflate stream really inflates to `size`.
    A server that trusts the headers instead of counting bytes it inflates
    would extract 300 MB."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        _zeros_entry(zf, "zeros.bin", size)
    data = bytearray(buf.getvalue())
    # local file header: signature at 0, uncompressed size at offset 22
    assert data[0:4] == b"PK\x03\x04"
    assert int.from_bytes(data[22:26], "little") == size
    data[22:26] = declared.to_bytes(4, "little")
    # central directory header: uncompressed size at offset 24
    cd = data.find(b"PK\x01\x02")
    assert cd > 0 and int.from_bytes(data[cd + 24 : cd + 28], "little") == size
    data[cd + 24 : cd + 28] = declared.to_bytes(4, "little")
    return bytes(data)


# --------------------------------------------------------------------------
# function source templates
# --------------------------------------------------------------------------

PY_ECHO = """\
import os, uuid
COUNT = 0
INSTANCE = uuid.uuid4().hex

def handler(event, context):
    global COUNT
    COUNT += 1
    return {"event": event, "count": COUNT, "pid": os.getpid(), "instance": INSTANCE}
"""


def py_zip(source: str = PY_ECHO, module: str = "app", extra: dict | None = None) -> bytes:
    files = {f"{module}.py": source}
    files.update(extra or {})
    return make_zip(files)


# --------------------------------------------------------------------------
# server process management
# --------------------------------------------------------------------------

_RUNNING_SERVERS: list = []


def _nimbus_bin() -> str:
    b = os.environ.get("NIMBUS_BIN")
    if not b:
        pytest.fail(
            "NIMBUS_BIN is not set: point it at the nimbus binary, "
            "e.g. NIMBUS_BIN=target/debug/nimbus",
            pytrace=False,
        )
    p = Path(b)
    if not p.is_file() or not os.access(p, os.X_OK):
        pytest.fail(f"NIMBUS_BIN={b!r} is not an executable file", pytrace=False)
    return str(p.resolve())


_PG_SCHEMAS: dict[str, str] = {}


def postgres_schema_url(key) -> str | None:
    """A URL of the test PostgreSQL (NIMBUS_TEST_POSTGRES_URL) selecting a schema of its
    own for `key` (the same key, the same schema: a restarted server finds its data), or
    None without a test PostgreSQL."""
    base = os.environ.get("NIMBUS_TEST_POSTGRES_URL")
    if not base:
        return None
    key = str(key)
    if key not in _PG_SCHEMAS:
        schema = "e2e_" + uuid.uuid4().hex
        subprocess.run(["psql", base, "-v", "ON_ERROR_STOP=1", "-q", "-c", f"CREATE SCHEMA {schema}"],
                       check=True, capture_output=True, timeout=30)
        _PG_SCHEMAS[key] = schema
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options[search_path]={_PG_SCHEMAS[key]}"


def s3_blob_args(key) -> tuple[list[str], dict]:
    """The flags (and environment) that put a server's code in the test S3 server, under a
    prefix of its own for `key`, or nothing without one (NIMBUS_TEST_S3_*)."""
    endpoint = os.environ.get("NIMBUS_TEST_S3_ENDPOINT")
    if not endpoint:
        return [], {}
    prefix = "e2e-" + hashlib.sha256(str(key).encode()).hexdigest()[:16]
    return (["--blobs", f"s3://{os.environ['NIMBUS_TEST_S3_BUCKET']}/{prefix}",
             "--s3-endpoint", endpoint, "--s3-region", os.environ.get("NIMBUS_TEST_S3_REGION", "us-east-1")],
            {"AWS_ACCESS_KEY_ID": os.environ["NIMBUS_TEST_S3_ACCESS_KEY_ID"],
             "AWS_SECRET_ACCESS_KEY": os.environ["NIMBUS_TEST_S3_SECRET_ACCESS_KEY"]})


def on_postgres() -> bool:
    """Whether this run's servers keep their metadata in PostgreSQL
    (NIMBUS_TEST_BACKEND=postgres, as scripts/test's second pass sets)."""
    return os.environ.get("NIMBUS_TEST_BACKEND") == "postgres"


def sqlite_only():
    """Skips a test that reads or damages a server's SQLite file, on a PostgreSQL run."""
    if on_postgres():
        pytest.skip("reads the server's SQLite file: this run keeps metadata in PostgreSQL")


def local_blobs_only():
    """Skips a test about code blobs on the data dir's own disk, on a run that keeps them
    in S3."""
    if on_postgres() and os.environ.get("NIMBUS_TEST_S3_ENDPOINT"):
        pytest.skip("about blobs on the data dir's disk: this run keeps them in S3")


def server_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    if Path("/usr/bin/python3").exists():
        env["NIMBUS_PYTHON"] = "/usr/bin/python3"
    node = shutil.which("node")
    if node:
        env["NIMBUS_NODE"] = node
    env[SERVER_MARKER_VAR] = SERVER_MARKER_VALUE
    # Async retries after 0.2 s, 0.4 s… instead of Lambda's minute, so retry tests are quick.
    env["NIMBUS_ASYNC_RETRY_DELAY"] = "200"
    env.update(extra or {})
    return env


def make_client(endpoint: str, **config_kw):
    cfg = dict(
        retries={"total_max_attempts": 1, "mode": "standard"},
        read_timeout=60,
        connect_timeout=10,
    )
    cfg.update(config_kw)
    return boto3.client(
        "lambda",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(**cfg),
    )


class NimbusServer:
    """One `nimbus server` process on 127.0.0.1:<ephemeral port>."""

    def __init__(self, data_dir: Path, log_path: Path, env_extra: dict | None = None,
                 args: list[str] | None = None, user: int | None = None):
        self.data_dir = Path(data_dir)
        self.extra_args = list(args or [])
        self.user = user  # run the server as this uid (and gid), not as the suite's user
        self.log_path = Path(log_path)
        self.env_extra = env_extra or {}
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.endpoint: str | None = None
        self.stdout_lines: list[str] = []
        self._lines: queue.Queue = queue.Queue()
        self._client = None

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> "NimbusServer":
        binary = _nimbus_bin()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        args = [binary, "server", "--listen", "127.0.0.1:0", "--data-dir", str(self.data_dir)]
        if "NIMBUS_ACCESS_KEY_ID" not in self.env_extra:
            args.append("--no-auth")  # the suite's clients sign with made-up keys
        env_extra = dict(self.env_extra)
        if on_postgres() and "--metadata" not in self.extra_args:
            args += ["--metadata", postgres_schema_url(self.data_dir)]
        if on_postgres() and "--blobs" not in self.extra_args:
            blob_args, blob_env = s3_blob_args(self.data_dir)
            args += blob_args
            env_extra.update(blob_env)
        args += self.extra_args
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=server_env(env_extra),
            start_new_session=True,
            **({} if self.user is None else {"user": self.user, "group": self.user, "extra_groups": []}),
        )
        _RUNNING_SERVERS.append(self)
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                pytest.fail(
                    f"nimbus did not print its listening line within {STARTUP_TIMEOUT}s; "
                    f"stdout={self.stdout_lines!r}\n--- stderr tail ---\n{self.log_tail()}",
                    pytrace=False,
                )
            try:
                line = self._lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line is None:  # EOF: process died
                rc = self.proc.wait(timeout=5)
                pytest.fail(
                    f"nimbus exited (rc={rc}) before listening; stdout={self.stdout_lines!r}\n"
                    f"--- stderr tail ---\n{self.log_tail()}",
                    pytrace=False,
                )
            m = LISTEN_RE.match(line)
            if m:
                self.port = int(m.group(1))
                self.endpoint = f"http://127.0.0.1:{self.port}"
                return self

    def _pump_stdout(self) -> None:
        assert self.proc and self.proc.stdout
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            self.stdout_lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait; SIGKILL if it does not stop. Returns the exit code
        (negative for a signal, as subprocess reports it)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise AssertionError(f"nimbus did not stop within {timeout}s of SIGTERM")
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def cleanup(self) -> None:
        """Teardown: stop the server, then end anything left in the process
        group we created for it (only processes this suite started)."""
        try:
            if self.alive():
                try:
                    self.stop()
                except AssertionError:
                    pass
        finally:
            if self.proc is not None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            try:
                self._log.close()
            except Exception:
                pass
            if self in _RUNNING_SERVERS:
                _RUNNING_SERVERS.remove(self)

    # -- access --------------------------------------------------------------
    @property
    def client(self):
        if self._client is None:
            self._client = make_client(self.endpoint)
        return self._client

    def new_client(self, **config_kw):
        return make_client(self.endpoint, **config_kw)

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "<no log>"
        return "\n".join(lines[-n:])

    def raw_request(self, method: str, path: str, body: bytes = b"", headers: dict | None = None,
                    sign: bool = True, timeout: float = 60):
        return raw_request(self.endpoint, method, path, body, headers, sign, timeout)


def raw_request(endpoint: str, method: str, path: str, body: bytes = b"",
                headers: dict | None = None, sign: bool = True, timeout: float = 60):
    """Send one SigV4-signed HTTP request; tolerate the server answering
    (and closing) before the whole body was sent.  Returns (status, headers, body)."""
    url = endpoint + path
    hdrs = dict(headers or {})
    if sign:
        req = AWSRequest(method=method, url=url, data=body, headers=hdrs)
        SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "lambda", REGION).add_auth(req)
        hdrs = dict(req.headers.items())
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.putrequest(method, u.path + (("?" + u.query) if u.query else ""),
                        skip_accept_encoding=True)
        for k, v in hdrs.items():
            conn.putheader(k, v)
        if "Content-Length" not in hdrs and "content-length" not in {k.lower() for k in hdrs}:
            conn.putheader("Content-Length", str(len(body)))
        try:
            conn.endheaders()
            view = memoryview(body)
            for i in range(0, len(body), 1 << 16):
                conn.send(view[i : i + (1 << 16)])
        except (BrokenPipeError, ConnectionResetError):
            pass  # server answered early; read what it said
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


# --------------------------------------------------------------------------
# invoke / error helpers
# --------------------------------------------------------------------------

Invocation = collections.namedtuple(
    "Invocation", "status function_error executed_version request_id raw body response"
)


def invoke(client, name: str, event=None, *, payload: bytes | None = None, **kw) -> Invocation:
    if payload is None:
        payload = json.dumps({} if event is None else event).encode()
    resp = client.invoke(FunctionName=name, Payload=payload, **kw)
    raw = resp["Payload"].read()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = raw
    return Invocation(
        status=resp["StatusCode"],
        function_error=resp.get("FunctionError"),
        executed_version=resp.get("ExecutedVersion"),
        request_id=resp["ResponseMetadata"].get("RequestId"),
        raw=raw,
        body=body,
        response=resp,
    )


def invoke_ok(client, name: str, event=None, **kw):
    inv = invoke(client, name, event, **kw)
    assert inv.status == 200, inv
    assert inv.function_error is None, f"unexpected function error: {inv.body!r}"
    return inv.body


def client_error(excinfo) -> tuple[str, int, str]:
    """(code, http status, message) of a botocore ClientError."""
    e = excinfo.value if hasattr(excinfo, "value") else excinfo
    assert isinstance(e, ClientError), repr(e)
    err = e.response.get("Error", {})
    return (err.get("Code"), e.response["ResponseMetadata"]["HTTPStatusCode"],
            err.get("Message") or "")


def assert_client_error(fn, code, status, message_contains: str | None = None):
    """Call fn(); it must raise ClientError with the given code(s) and status."""
    with pytest.raises(ClientError) as ei:
        fn()
    got_code, got_status, msg = client_error(ei)
    codes = (code,) if isinstance(code, str) else tuple(code)
    assert got_code in codes, f"code {got_code!r} not in {codes}; status {got_status}; message {msg!r}"
    assert got_status == status, f"status {got_status} != {status}; code {got_code}; message {msg!r}"
    if message_contains is not None:
        assert message_contains in msg, f"{message_contains!r} not in {msg!r}"
    return got_code, got_status, msg


def list_all_function_names(client) -> list[str]:
    names: list[str] = []
    kw: dict = {}
    for _ in range(10000):
        page = client.list_functions(**kw)
        names.extend(f["FunctionName"] for f in page.get("Functions", []))
        marker = page.get("NextMarker")
        if not marker:
            return names
        kw = {"Marker": marker}
    raise AssertionError("ListFunctions never ended")


def pid_gone(pid: int) -> bool:
    """True if the process no longer exists or is a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return True
    # state is the field after the parenthesised comm
    state = stat.rsplit(")", 1)[1].split()[0]
    return state in ("Z", "X")


def tagged_pids(tag: str, var: str = "NIMBUS_E2E_TAG") -> set[int]:
    """Host pids of live processes whose environment holds var=tag.

    Works whatever pid namespace the instance runs in (os.getpid() inside a
    sandbox may not be a host pid).  Zombies have an empty environ and are
    therefore not counted."""
    needle = f"{var}={tag}".encode()
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            pid = int(entry)
            if not pid_gone(pid):
                found.add(pid)
    return found


def kill_tagged(tag: str) -> None:
    """Test cleanup: SIGKILL leftovers of a function this suite created
    (found by the unique tag in their environment)."""
    for pid in tagged_pids(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def wait_tagged_gone(pids: set[int], timeout: float = 5.0) -> set[int]:
    """Wait until none of `pids` is alive; returns the ones still alive."""
    deadline = time.monotonic() + timeout
    while True:
        alive = {p for p in pids if not pid_gone(p)}
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)


def wait_pid_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid_gone(pid):
            return True
        time.sleep(0.1)
    return pid_gone(pid)


class Sink:
    """An HTTP endpoint on loopback that functions post what they saw to (an instance
    sees only its own root view, never the test's files). Bodies are kept as text."""

    def __init__(self):
        import http.server

        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                received.append(self.rfile.read(length).decode())
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 15.0) -> list[str]:
        """The first `count` bodies, once that many have arrived."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.received) >= count, f"expected {count} posts, got {self.received!r}"
        return list(self.received)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# Python for a function: post(text) sends text to the sink named by $SINK.
POST_TO_SINK = '''
import os, urllib.request
def post(text):
    request = urllib.request.Request(os.environ["SINK"], data=text.encode(), method="POST")
    urllib.request.urlopen(request, timeout=10).read()
'''
