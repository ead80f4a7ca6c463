"""Another program holding the warehouse: a run waits, says who holds it, and fails clearly."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from toda_platform.warehouse import WarehouseLocked, connect

HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def _holder(path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding"
    return proc


def test_a_lock_held_too_long_fails_naming_the_program(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    proc = _holder(path, 30)
    said = []
    try:
        started = time.monotonic()
        with pytest.raises(WarehouseLocked) as raised:
            connect(path, wait=1.5, log=said.append)
        assert 1.4 < time.monotonic() - started < 10
    finally:
        proc.kill()
        proc.wait()
    message = str(raised.value)
    assert f"PID {proc.pid}" in message and "python" in message and "still locked" in message
    assert said and said[0].startswith(f"warehouse.duckdb is locked by PID {proc.pid}") and "waiting" in said[0]


def test_a_run_waits_for_a_lock_that_is_let_go(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    proc = _holder(path, 1.0)
    said = []
    try:
        con = connect(path, wait=30, log=said.append)
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
        con.close()
    finally:
        proc.wait()
    assert len(said) == 1 and "waiting up to 30 s" in said[0]


def test_memory_limit_and_threads_come_from_the_settings(tmp_path, monkeypatch):
    from toda_platform import warehouse

    monkeypatch.setenv(warehouse.MEMORY_ENV, "1GB")
    monkeypatch.setenv(warehouse.THREADS_ENV, "1")
    con = warehouse.connect(tmp_path / "w.duckdb")
    try:
        limit, threads = con.execute("SELECT current_setting('memory_limit'), current_setting('threads')").fetchall()[0]
    finally:
        con.close()
    assert threads == 1 and limit.replace(" ", "").upper() in ("953.6MIB", "1.0GB", "1GB", "953.6MB")
    monkeypatch.setenv(warehouse.THREADS_ENV, "two")
    with pytest.raises(ValueError, match="TODA_DUCKDB_THREADS"):
        warehouse.connect(tmp_path / "w.duckdb")
