"""Opening the DuckDB warehouse when another program may hold it.

DuckDB takes a file lock per process: a notebook, a DuckDB shell or another run holding the
warehouse makes a writer fail at once with "Could not set lock on file … Conflicting lock is held
in <program> (PID n)". A run waits instead — up to ``TODA_LOCK_WAIT_SECONDS`` (default 3600) —
saying which program holds the lock, and then fails with a message that names it.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Callable

import duckdb

# Every run that writes the warehouse carries this tag; the Dagster instance's run queue lets one
# such run go at a time (dagster.yaml, written by the CLI: toda_platform/definitions.py).
WRITER_TAG = "toda/writer"
WRITER_TAGS = {WRITER_TAG: "warehouse"}

LOCK_WAIT_ENV = "TODA_LOCK_WAIT_SECONDS"
LOCK_WAIT_SECONDS = 3600.0  # a long step (the marts' whole-range build) holds the lock throughout
_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")


class WarehouseLocked(RuntimeError):
    pass


def lock_wait_seconds() -> float:
    value = os.environ.get(LOCK_WAIT_ENV, "").strip()
    return float(value) if value else LOCK_WAIT_SECONDS


def lock_holder(message: str) -> str | None:
    """'PID 4242 (python -m jupyter lab)' from DuckDB's lock error, or None if it is another error."""
    m = _HOLDER.search(message)
    if m is None:
        return None
    pid = int(m.group("pid"))
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        command = " ".join(a.decode(errors="replace") for a in args if a)[:120]
    except OSError:
        command = m.group("program")
    return f"PID {pid} ({command or m.group('program')})"


MEMORY_ENV, THREADS_ENV = "TODA_DUCKDB_MEMORY_LIMIT", "TODA_DUCKDB_THREADS"


def engine_config() -> dict[str, str]:
    """DuckDB's memory limit (``TODA_DUCKDB_MEMORY_LIMIT``, e.g. ``4GB``: beyond it DuckDB spills
    to ``<warehouse>.tmp/``) and threads (``TODA_DUCKDB_THREADS``) from the settings; unset, DuckDB's
    own defaults (80 % of RAM, one thread per core).

    ``temp_directory`` is deliberately left to DuckDB: for a database file it is
    ``<file>.tmp`` beside it (under ``$TODA_HOME``, never the folder a program starts in), and
    setting it explicitly, even to that same value, makes a plain ``duckdb.connect`` of the file
    in the same process fail with "different configuration" (tests/test_warehouse_lock.py checks
    where spilled blocks go)."""
    out = {}
    memory = os.environ.get(MEMORY_ENV, "").strip()
    if memory:
        # DuckDB's own message ("Memory must have a number") names neither the setting nor the value
        if not re.fullmatch(r"\d+(\.\d+)?\s*([KMGT]i?B|[KMGT]|bytes?)|\d+(\.\d+)?\s*%", memory, re.IGNORECASE):
            raise ValueError(f"{MEMORY_ENV}={memory!r}: a size such as 4GB, 512MB or 8GiB")
        out["memory_limit"] = memory
    threads = os.environ.get(THREADS_ENV, "").strip()
    if threads:
        if not threads.isdigit() or int(threads) < 1:
            raise ValueError(f"{THREADS_ENV}={threads!r}: a whole number of threads, 1 or more")
        out["threads"] = threads
    return out


def connect(database: str | os.PathLike, *, read_only: bool = False, config: dict | None = None,
            wait: float | None = None, log: Callable[[str], None] = lambda _m: None,
            _sleep: Callable[[float], None] = time.sleep) -> duckdb.DuckDBPyConnection:
    """``duckdb.connect``, waiting while another program holds the file's lock."""
    wait = lock_wait_seconds() if wait is None else wait
    started = time.monotonic()
    said_at = None
    attempt = 0
    while True:
        try:
            return duckdb.connect(str(database), read_only=read_only, config={**engine_config(), **(config or {})})
        except duckdb.IOException as error:
            holder = lock_holder(str(error))
            if holder is None:
                raise
            waited = time.monotonic() - started
            name = Path(database).name
            if waited >= wait:
                raise WarehouseLocked(
                    f"{name} is still locked by {holder} after {waited:.0f} s: close that program (a notebook, a "
                    f"DuckDB shell, another `toda` run?) or wait for it to finish, then run again") from error
            if said_at is None or time.monotonic() - said_at >= 30:
                log(f"{name} is locked by {holder}: waiting up to {wait:.0f} s for it to let go")
                said_at = time.monotonic()
            _sleep(min(0.1 * 2 ** attempt, 5.0, max(wait - waited, 0.01)))
            attempt += 1
