"""What each as-of date of a mart was built from, so that a rebuild skips the dates whose
inputs did not change.

A night's new files touch few as-of dates: a new school day's attendance is known only after
every past first-school-day, so the features of those dates cannot change; only "today" (the
``latest`` date) and the labels of the current school year can. Rebuilding every date anyway
cost ~160 s of the nightly run on the default city. Here each built date records a
**fingerprint** of exactly the rows it may read, and a run rebuilds the dates whose fingerprint
differs (or that were never built).

The fingerprint is of row contents, not of files: per staging table, the number of rows and
the sum of a 64-bit hash of each row's staged columns (``_file_sha256`` and ``_line`` left out:
the same rows re-sent in another file build the same features). It changes with any row added,
removed or changed — a late correction, an erasure, a key rotation (new pseudonyms), a
retention sweep — and with the code of ``ml/`` (its ``.py`` and ``.toml`` files). Summing the
hashes rather than XOR-ing them keeps duplicated rows from cancelling out.

What each mart may read (a superset is safe: it only rebuilds more):

* ``marts.pupil_features`` at ``A``: rows of every staging table with ``known_date < A``
  (the knowledge-date rule, ``ml/asof.py``);
* ``marts.labels`` at ``A`` of school year ``Y``: the registry of ``Y``, the attendance dated in
  ``Y`` (the date of the 30th absence is future information by design), the long-absence
  surveys of ``Y - 1`` and ``Y``, and which survey files are applied (``ml/labels.py``).
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Iterable

import duckdb

from ml.asof import AsOf, has_table, school_year_of

INPUTS_DDL = """CREATE SCHEMA IF NOT EXISTS marts;
CREATE TABLE IF NOT EXISTS marts.as_of_inputs (
    mart VARCHAR NOT NULL,
    as_of_date DATE NOT NULL,
    fingerprint VARCHAR NOT NULL,
    built_at TIMESTAMP NOT NULL DEFAULT current_timestamp
)"""
EXCLUDED = ("_file_sha256", "_line")
ML = Path(__file__).resolve().parent


def code_fingerprint() -> str:
    """The code that turns staging rows into marts and models: every ``.py`` and ``.toml`` of ml/."""
    h = hashlib.sha256()
    for path in sorted(ML.glob("*.py")) + sorted(ML.glob("*.toml")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Sums:
    """One staging table summed by a date or a year: keys ascending, with rows and hash sums."""

    keys: list
    rows: list[int]
    hashes: list[int]

    def before(self, key) -> tuple[int, int]:
        """Rows and hash sum of every group whose key is strictly before ``key``."""
        i = bisect.bisect_left(self.keys, key)
        return sum(self.rows[:i]), sum(self.hashes[:i])

    def at(self, key) -> tuple[int, int]:
        i = bisect.bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            return self.rows[i], self.hashes[i]
        return 0, 0


def staged_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [t for (t,) in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'staging' "
        "AND table_name IN (SELECT table_name FROM information_schema.columns WHERE table_schema = 'staging' "
        "AND column_name = 'known_date') ORDER BY 1").fetchall()]


def sums(con: duckdb.DuckDBPyConnection, table: str, by: str = "known_date", where: str = "true") -> Sums:
    """Rows and hash sums of ``staging.<table>`` grouped by the SQL expression ``by``."""
    cols = [c for (c,) in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'staging' AND table_name = ? "
        "ORDER BY ordinal_position", [table]).fetchall() if c not in EXCLUDED]
    rows = con.execute(
        f"SELECT {by} AS k, count(*), sum(hash({', '.join(f'{chr(34)}{c}{chr(34)}' for c in cols)}))::HUGEINT "
        f"FROM staging.{table} WHERE {where} GROUP BY 1 HAVING k IS NOT NULL ORDER BY 1").fetchall()
    return Sums([r[0] for r in rows], [int(r[1]) for r in rows], [int(r[2]) for r in rows])


def _digest(parts: Iterable[object]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode())
        h.update(b"\x00")
    return h.hexdigest()


def features_fingerprints(con: duckdb.DuckDBPyConnection, as_ofs: list[AsOf]) -> dict[date, str]:
    """Per as-of date: the rows of every staging table known strictly before it, and the code."""
    code = code_fingerprint()
    by_table = {t: sums(con, t) for t in staged_tables(con)}
    return {a.date: _digest([code, a.kind, *((t, s.before(a.date)) for t, s in by_table.items())])
            for a in as_ofs}


def labels_fingerprints(con: duckdb.DuckDBPyConnection, as_ofs: list[AsOf]) -> dict[date, str]:
    """Per as-of date: the registry of its school year, the attendance dated in it, the surveys of
    it and the year before, which survey files are applied, and the code."""
    code = code_fingerprint()
    year_of_date = "(year(date) - CASE WHEN month(date) < 4 THEN 1 ELSE 0 END)"
    present = set(staged_tables(con))
    registry = sums(con, "pupil_registry", by="school_year") if "pupil_registry" in present else Sums([], [], [])
    attendance = (sums(con, "attendance_daily", by=year_of_date) if "attendance_daily" in present
                  else Sums([], [], []))
    survey = (sums(con, "long_absence_survey", by="school_year") if "long_absence_survey" in present
              else Sums([], [], []))
    applied = ([p for (p,) in con.execute(
        "SELECT DISTINCT period FROM staging.file_manifest WHERE source_key = 'long_absence_survey' "
        "AND outcome = 'applied' ORDER BY 1").fetchall()] if has_table(con, "staging", "file_manifest") else [])
    out = {}
    for a in as_ofs:
        y = school_year_of(a.date)
        out[a.date] = _digest([code, a.kind, y, registry.at(y), attendance.at(y), survey.at(y - 1), survey.at(y),
                               [p for p in applied if p in (str(y - 1), str(y))]])
    return out


def unchanged(con: duckdb.DuckDBPyConnection, mart: str, fingerprints: dict[date, str]) -> set[date]:
    """The as-of dates whose rows in ``mart`` were built from exactly these inputs."""
    con.execute(INPUTS_DDL)
    schema, name = mart.split(".")
    if not has_table(con, schema, name):
        return set()
    built = {d for (d,) in con.execute(f"SELECT DISTINCT as_of_date FROM {mart}").fetchall()}
    stored = dict(con.execute(
        "SELECT as_of_date, arg_max(fingerprint, built_at) FROM marts.as_of_inputs WHERE mart = ? GROUP BY 1",
        [mart]).fetchall())
    return {d for d, fp in fingerprints.items() if d in built and stored.get(d) == fp}


def remember(con: duckdb.DuckDBPyConnection, mart: str, as_of_date: date, fingerprint: str) -> None:
    """Record what ``as_of_date`` was built from (in the transaction that wrote its rows)."""
    con.execute(INPUTS_DDL)
    con.execute("DELETE FROM marts.as_of_inputs WHERE mart = ? AND as_of_date = ?", [mart, as_of_date])
    con.execute("INSERT INTO marts.as_of_inputs VALUES (?, ?, ?, now())", [mart, as_of_date, fingerprint])


def forget(con: duckdb.DuckDBPyConnection, mart: str, dates: Iterable[date] | None = None) -> None:
    """The rows of these dates (all, when None) were removed or can no longer be trusted."""
    con.execute(INPUTS_DDL)
    if dates is None:
        con.execute("DELETE FROM marts.as_of_inputs WHERE mart = ?", [mart])
    else:
        for d in dates:
            con.execute("DELETE FROM marts.as_of_inputs WHERE mart = ? AND as_of_date = ?", [mart, d])
