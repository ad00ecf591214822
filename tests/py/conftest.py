"""Fixtures for the Nimbus end-to-end suite.

The suite drives a real `nimbus server` binary (path in $NIMBUS_BIN) through
boto3, the AWS CLI and raw HTTP.  Nothing here talks to anything but 127.0.0.1.
Helpers live in helpers.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import (
    PY_RUNTIME,
    ROLE,
    _RUNNING_SERVERS,
    NimbusServer,
    Sink,
    _nimbus_bin,
    py_zip,
    unique_name,
)


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def nimbus(tmp_path_factory):
    """The shared server for most tests."""
    base = tmp_path_factory.mktemp("nimbus-session")
    srv = NimbusServer(base / "data", base / "server.log").start()
    yield srv
    srv.cleanup()


@pytest.fixture(scope="session")
def client(nimbus):
    return nimbus.client


@pytest.fixture
def server_factory(tmp_path):
    """Start dedicated servers (restart / kill tests).  Call with an optional
    data_dir to reuse one.  All are cleaned up after the test."""
    _nimbus_bin()  # error (not fail inside the test) when NIMBUS_BIN is unset
    started: list[NimbusServer] = []

    def start(data_dir: Path | None = None, env: dict | None = None,
              args: list[str] | None = None) -> NimbusServer:
        i = len(started)
        srv = NimbusServer(data_dir or (tmp_path / "data"), tmp_path / f"server{i}.log", env, args)
        started.append(srv)
        return srv.start()

    yield start
    for srv in started:
        srv.cleanup()


class FunctionFactory:
    """Creates functions and deletes them after the test."""

    def __init__(self, client):
        self.client = client
        self.names: list[str] = []

    def __call__(self, zip_bytes: bytes | None = None, *, name: str | None = None,
                 runtime: str = PY_RUNTIME, handler: str = "app.handler",
                 client=None, **kw) -> dict:
        c = client or self.client
        name = name or unique_name()
        if zip_bytes is None:
            zip_bytes = py_zip()
        resp = c.create_function(
            FunctionName=name, Runtime=runtime, Role=ROLE, Handler=handler,
            Code={"ZipFile": zip_bytes}, **kw,
        )
        self.names.append(name)
        return resp

    def cleanup(self):
        names, self.names = self.names, []
        for n in names:
            try:
                self.client.delete_function(FunctionName=n)
            except Exception:
                pass


@pytest.fixture
def sink():
    """An HTTP endpoint functions report to (see helpers.Sink)."""
    s = Sink()
    yield s
    s.close()


@pytest.fixture
def make_function(client):
    f = FunctionFactory(client)
    yield f
    f.cleanup()


# --------------------------------------------------------------------------
# reporting: attach the server log tail to failures
# --------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and _RUNNING_SERVERS:
        for srv in list(_RUNNING_SERVERS):
            rep.sections.append((f"nimbus server log tail ({srv.log_path})", srv.log_tail(40)))
