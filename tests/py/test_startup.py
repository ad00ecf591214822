"""Start-up integrity: one server per data dir, and no start over a lost or damaged
catalogue (the server refuses and says how to recover)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess

from helpers import (_nimbus_bin, invoke_ok, py_zip, server_env, sqlite_only, unique_name, ROLE,
                     PY_RUNTIME)


def start_fails(data_dir) -> str:
    """Starts a server on `data_dir` that must refuse to start; returns what it said."""
    done = subprocess.run(
        [_nimbus_bin(), "server", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir), "--no-auth"],
        stdin=subprocess.DEVNULL, capture_output=True, env=server_env(), timeout=30)
    assert done.returncode != 0, done
    assert b"nimbus listening" not in done.stdout, done.stdout
    return done.stderr.decode()


def test_a_second_server_on_one_data_dir_is_refused_and_names_the_first(server_factory, tmp_path):
    first = server_factory(tmp_path / "data")
    said = start_fails(tmp_path / "data")
    assert f"pid {first.proc.pid}" in said, said
    assert "in use" in said, said
    assert first.alive()
    first.client.list_functions()


def test_a_lost_catalogue_next_to_stored_code_is_refused_with_how_to_recover(server_factory, tmp_path):
    sqlite_only()
    data = tmp_path / "data"
    srv = server_factory(data)
    name = unique_name()
    srv.client.create_function(FunctionName=name, Runtime=PY_RUNTIME, Role=ROLE,
                               Handler="app.handler", Code={"ZipFile": py_zip()})
    srv.stop()
    # A backup as SQLite makes one (the WAL's last writes included).
    source, backup = sqlite3.connect(data / "nimbus.db"), sqlite3.connect(tmp_path / "backup.db")
    source.backup(backup)
    source.close()
    backup.close()
    for leftover in ("nimbus.db-wal", "nimbus.db-shm"):
        (data / leftover).unlink(missing_ok=True)
    (data / "nimbus.db").write_bytes(b"")
    said = start_fails(data)
    assert "nimbus.db is empty" in said and "code package" in said and "backup" in said, said
    (data / "nimbus.db").write_bytes(b"this is not a database, " * 200)
    said = start_fails(data)
    assert "damaged or not a Nimbus database" in said and "backup" in said, said
    (data / "nimbus.db").unlink()
    said = start_fails(data)
    assert "nimbus.db is missing" in said, said
    # Restored from the backup, everything is there again.
    shutil.copy(tmp_path / "backup.db", data / "nimbus.db")
    srv = server_factory(data)
    assert invoke_ok(srv.client, name, {"x": 1}) is not None


def test_a_damaged_log_database_is_refused(server_factory, tmp_path):
    data = tmp_path / "data"
    server_factory(data).stop()
    for leftover in ("logs.db-wal", "logs.db-shm"):
        (data / leftover).unlink(missing_ok=True)
    (data / "logs.db").write_bytes(b"\x00garbage" * 1000)
    said = start_fails(data)
    assert "logs.db is damaged" in said, said
