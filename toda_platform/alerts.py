"""Operational alerts (``ops.alerts``): one row per failed run, open until someone closes it.

Written by the run-failure sensor (``assets/sensors.py``), listed by ``toda alerts`` and on the
portal's operations page for the system administrator. The store is its own small SQLite file,
``$TODA_HOME/ops.sqlite3`` (table ``alerts``), not the warehouse: the portal never opens the
warehouse, and an alert about a failed run must not wait for the next run's DuckDB lock.

An alert names the run, the job, the assets and the failed check — never a value of the data:
:func:`safe_message` keeps only the first line of an error, drops any non-ASCII text (names,
kana, free text) and masks long digit and hex runs (registry numbers, pseudonyms).
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from toda_platform.settings import Paths

MAX_MESSAGE = 300
TOKYO = timezone(timedelta(hours=9), "JST")
DDL = """CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    raised_at TEXT NOT NULL,
    run_id TEXT NOT NULL UNIQUE,
    job_name TEXT NOT NULL,
    assets TEXT NOT NULL,
    failed_check TEXT NOT NULL,
    error TEXT NOT NULL,
    message TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    closed_at TEXT,
    closed_by TEXT,
    note TEXT
)"""

_NON_ASCII = re.compile(r"[^\x20-\x7e]+")
_LONG_NUMBER = re.compile(r"\d{6,}")
_LONG_HEX = re.compile(r"\b[0-9a-fA-F]{12,}\b")


def safe_message(text: str | None) -> str:
    """The first line of ``text`` with nothing personal left in it, at most 300 characters."""
    line = next((ln.strip() for ln in (text or "").splitlines() if ln.strip()), "")
    line = _NON_ASCII.sub("…", line)
    line = _LONG_HEX.sub("<hex>", line)
    line = _LONG_NUMBER.sub("<number>", line)
    return line[:MAX_MESSAGE]


def step_asset(step_key: str) -> str:
    """``staging__attendance_daily`` -> ``staging/attendance_daily`` (an asset's op name is its
    key joined by ``__``)."""
    return step_key.replace("__", "/")


@dataclass(frozen=True)
class Alert:
    run_id: str
    job_name: str
    assets: list[str] = field(default_factory=list)  # the assets whose steps failed
    failed_check: str = ""  # asset/check of a failed blocking check, if one stopped the run
    error: str = ""  # the error's class, e.g. WarehouseLocked
    message: str = ""

    @classmethod
    def of_failure(cls, run_id: str, job_name: str, step_errors: list[tuple[str, str, str]],
                   failed_checks: list[tuple[str, str]], run_message: str = "") -> "Alert":
        """From a failed run: ``step_errors`` = (step key, error class, error message) of each
        failed step, ``failed_checks`` = (asset key, check name) of each failed ERROR check."""
        assets = sorted({step_asset(s) for s, _, _ in step_errors})
        _, error, message = step_errors[0] if step_errors else ("", "", run_message)
        message = message or run_message
        if error and message.startswith(f"{error}: "):  # Dagster's error text repeats the class
            message = message[len(error) + 2:]
        return cls(run_id=run_id, job_name=job_name, assets=assets,
                   failed_check=", ".join(f"{a}:{c}" for a, c in failed_checks),
                   error=_NON_ASCII.sub("", error)[:80], message=safe_message(message))


def _connect(paths: Paths) -> sqlite3.Connection:
    paths.home.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(paths.ops_db, timeout=30)
    con.row_factory = sqlite3.Row
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(DDL)
    return con


def record(paths: Paths, alert: Alert, now: datetime | None = None) -> bool:
    """Store an open alert; False when this run already has one (a sensor tick retried)."""
    row = asdict(alert)
    row["assets"] = ", ".join(alert.assets)
    row["raised_at"] = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    with closing(_connect(paths)) as con, con:
        cur = con.execute("INSERT OR IGNORE INTO alerts (raised_at, run_id, job_name, assets, failed_check, "
                          "error, message) VALUES (:raised_at, :run_id, :job_name, :assets, :failed_check, "
                          ":error, :message)", row)
        return cur.rowcount == 1


def listed(paths: Paths, *, status: str = "open", limit: int = 100) -> list[dict]:
    """Alerts with ``status`` ('open', 'closed' or 'all'), newest first."""
    if not Path(paths.ops_db).exists():
        return []
    where, params = ("", []) if status == "all" else ("WHERE status = ?", [status])
    with closing(_connect(paths)) as con:
        rows = [dict(r) for r in con.execute(
            f"SELECT * FROM alerts {where} ORDER BY raised_at DESC, id DESC LIMIT ?", [*params, limit])]
    for r in rows:  # stored in UTC; shown in the city's time
        r["raised_at_jst"] = in_tokyo(r["raised_at"])
    return rows


def in_tokyo(stamp: str | None) -> str:
    """An ISO time stamp (UTC) as the city reads it: '2026-11-30 20:05 JST'."""
    if not stamp:
        return ""
    at = datetime.fromisoformat(stamp)
    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    return at.astimezone(TOKYO).strftime("%Y-%m-%d %H:%M JST")


def close(paths: Paths, alert_id: int, by: str, note: str) -> bool:
    """Close an open alert with who and why; False if there is no such open alert."""
    with closing(_connect(paths)) as con, con:
        cur = con.execute("UPDATE alerts SET status = 'closed', closed_at = ?, closed_by = ?, note = ? "
                          "WHERE id = ? AND status = 'open'",
                          [datetime.now(timezone.utc).isoformat(timespec="seconds"), by[:64], note[:500], alert_id])
        return cur.rowcount == 1
