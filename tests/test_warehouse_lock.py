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
    monkeypatch.setenv(warehouse.THREADS_ENV, "1")
    for size in ("4GB", "512 MB", "8GiB", "1.5GB", "80%"):  # DuckDB takes each of these
        monkeypatch.setenv(warehouse.MEMORY_ENV, size)
        warehouse.connect(tmp_path / "w.duckdb").close()
    for wrong in ("lots", "4", "GB", "4 GB please"):  # DuckDB's own error names no setting
        monkeypatch.setenv(warehouse.MEMORY_ENV, wrong)
        with pytest.raises(ValueError, match="TODA_DUCKDB_MEMORY_LIMIT"):
            warehouse.connect(tmp_path / "w.duckdb")


def test_beyond_the_memory_limit_duckdb_spills_beside_the_warehouse_not_into_the_working_folder(
        tmp_path, monkeypatch):
    """Opened as the assets open it (the Dagster resource), with the settings' limit and threads,
    a temp table bigger than the limit is kept, spilled to ``<warehouse>.tmp/`` under the home —
    not to ``.tmp`` in the folder the program was started from (the repository, for a developer)."""
    from resources.toda import warehouse_resource
    from toda_platform import warehouse
    from toda_platform.settings import Paths

    monkeypatch.setenv(warehouse.MEMORY_ENV, "64MB")
    monkeypatch.setenv(warehouse.THREADS_ENV, "1")
    cwd = tmp_path / "started_here"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    home = tmp_path / "home"
    with warehouse_resource(Paths(home)).get_connection() as con:
        limit, threads, temp_dir = con.execute(
            "SELECT current_setting('memory_limit'), current_setting('threads'), "
            "current_setting('temp_directory')").fetchall()[0]
        con.execute("CREATE TEMP TABLE _big AS SELECT range AS i, repeat('x', 40) || range AS s "
                    "FROM range(1500000)")
        spilled = con.execute("SELECT path, size FROM duckdb_temporary_files()").fetchall()
        n, top = con.execute("SELECT count(*), max(i) FROM _big").fetchall()[0]
    assert (limit.replace(" ", ""), threads) in (("61.0MiB", 1), ("64.0MB", 1))
    assert temp_dir == str(home / "warehouse.duckdb.tmp")
    assert (n, top) == (1500000, 1499999)
    assert spilled and sum(size for _, size in spilled) > 8 * 2**20
    assert all(path.startswith(temp_dir + "/") for path, _ in spilled)
    assert not (cwd / ".tmp").exists()
