"""The identity store: names, kana, class and seat number, apart from the warehouse.

The warehouse and the serving snapshots never hold a name. The registry's 氏名/ふりがな/出席番号
are written here at ingestion (``$TODA_HOME/identity/identity.sqlite``, folder 0700, file 0600)
and only the portal joins them to a ``pupil_id``, for roles entitled to it, with an audit entry.

One row per (pupil_id, school_year, school_code), the registry's own key. A registry file
replaces exactly what it covers — the (school_year, school_code) pairs of its rows — in one
transaction, so that a correction for one school leaves the other schools' names in place, as it
does in ``staging.pupil_registry``.

SQLite, not DuckDB: the portal reads it while a pipeline run may be writing it, and SQLite's WAL
mode lets one writer and many readers work at once.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing, contextmanager
from dataclasses import astuple, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

STORE_NAME = "identity.sqlite"

_DDL = """
CREATE TABLE IF NOT EXISTS pupil_identity (
    pupil_id TEXT NOT NULL,
    school_year INTEGER NOT NULL,
    school_code TEXT NOT NULL,
    grade INTEGER,
    class_name TEXT,
    seat_number INTEGER,
    name TEXT,
    kana TEXT,
    file_sha256 TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (pupil_id, school_year, school_code)
)"""


@dataclass(frozen=True)
class IdentityRecord:
    pupil_id: str
    school_year: int
    school_code: str
    grade: int | None = None
    class_name: str | None = None
    seat_number: int | None = None
    name: str | None = None
    kana: str | None = None
    file_sha256: str | None = None


_COLUMNS = [f.name for f in fields(IdentityRecord)]


class IdentityStore:
    """``IdentityStore(paths.identity)``; ``read_only=True`` for the portal."""

    def __init__(self, folder: Path, *, read_only: bool = False):
        self.folder = Path(folder)
        self.path = self.folder / STORE_NAME
        self.read_only = read_only

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            if not self.path.exists():
                raise FileNotFoundError(f"no identity store at {self.path}")
            con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            os.chmod(self.folder, 0o700)
            fresh = not self.path.exists()
            if fresh:  # create it private before anything is written into it
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            con = sqlite3.connect(self.path, timeout=30)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(_DDL)
        with closing(con):
            yield con

    def replace(self, scope: Iterable[tuple[int, str]], records: Iterable[IdentityRecord]) -> int:
        """Delete every row of the (school_year, school_code) pairs in ``scope`` and insert
        ``records``, in one transaction. Returns the rows inserted."""
        rows = [astuple(r) + (_now(),) for r in records]
        with self._connect() as con, con:
            con.executemany("DELETE FROM pupil_identity WHERE school_year = ? AND school_code = ?",
                            [(int(y), s) for y, s in scope])
            con.executemany(
                f"INSERT OR REPLACE INTO pupil_identity ({', '.join(_COLUMNS)}, updated_at) "
                f"VALUES ({', '.join('?' * (len(_COLUMNS) + 1))})", rows)
        return len(rows)

    def lookup(self, pupil_ids: Iterable[str]) -> dict[str, IdentityRecord]:
        """Each pupil's latest record (newest school year; on a tie, the latest update)."""
        ids = list(dict.fromkeys(pupil_ids))
        if not ids or (self.read_only and not self.path.exists()):
            return {}
        found: dict[str, IdentityRecord] = {}
        with self._connect() as con:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                cur = con.execute(
                    f"SELECT {', '.join(_COLUMNS)} FROM pupil_identity WHERE pupil_id IN "
                    f"({', '.join('?' * len(chunk))}) ORDER BY school_year, updated_at", chunk)
                for row in cur:
                    found[row[0]] = IdentityRecord(*row)
        return found

    def for_school(self, school_code: str, school_year: int) -> list[IdentityRecord]:
        if self.read_only and not self.path.exists():
            return []
        with self._connect() as con:
            cur = con.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM pupil_identity WHERE school_code = ? AND "
                f"school_year = ? ORDER BY grade, class_name, seat_number", [school_code, school_year])
            return [IdentityRecord(*row) for row in cur]

    def erase(self, pupil_id: str) -> int:
        """Remove every record of one pupil; returns how many went."""
        with self._connect() as con, con:
            return con.execute("DELETE FROM pupil_identity WHERE pupil_id = ?", [pupil_id]).rowcount

    def count(self) -> int:
        if not self.path.exists():
            return 0
        with self._connect() as con:
            return con.execute("SELECT count(*) FROM pupil_identity").fetchone()[0]


def _now() -> str:
    return datetime.now(timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")
