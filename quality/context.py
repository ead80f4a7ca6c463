"""Building a :class:`FileContext` from the warehouse: what the ingestion engine knows of a file.

The references (registry, school master) are read once per source batch with
:func:`load_references`, not once per file; :func:`file_context` then adds the file's own
facts: its headers as they appeared, its export date and the volumes of the files before it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb

from quality.model import FileContext
from quality.rules import REGISTRY_KEY, SCHOOL_MASTER_KEY

TOKYO = ZoneInfo("Asia/Tokyo")


@dataclass(frozen=True)
class References:
    known_pupils: dict[int, set[str]] | None  # None: no registry loaded yet
    known_residents: set[str] | None
    known_schools: set[str] | None  # None: no school master loaded yet


def _rows(con, table: str) -> bool:
    exists = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'staging' "
                         "AND table_name = ?", [table]).fetchall()[0][0]
    return bool(exists) and bool(con.execute(f"SELECT EXISTS (SELECT 1 FROM staging.{table})").fetchall()[0][0])


def load_references(con: duckdb.DuckDBPyConnection) -> References:
    pupils = residents = schools = None
    if _rows(con, REGISTRY_KEY):
        pupils = {int(y): set(ids) for y, ids in con.execute(
            f"SELECT school_year, list(DISTINCT pupil_id) FROM staging.{REGISTRY_KEY} "
            f"WHERE pupil_id IS NOT NULL AND school_year IS NOT NULL GROUP BY 1").fetchall()}
        residents = {r for (r,) in con.execute(
            f"SELECT DISTINCT resident_id FROM staging.{REGISTRY_KEY} WHERE resident_id IS NOT NULL").fetchall()}
    if _rows(con, SCHOOL_MASTER_KEY):
        schools = {s for (s,) in con.execute(
            f"SELECT DISTINCT school_code FROM staging.{SCHOOL_MASTER_KEY} WHERE school_code IS NOT NULL").fetchall()}
    return References(pupils, residents, schools)


def previous_volumes(con: duckdb.DuckDBPyConnection, source_key: str, before_period: str | None = None,
                     scopes: list[str] | None = None) -> list[float]:
    """Rows kept by the applied file of each earlier period, in period order (oldest first).

    For monthly files of daily records the volume is rows per record date: a month cut short
    (the current month, a month with a long holiday) is not mistaken for a truncated export.

    One number per period (a corrected re-export replaces its original), and the period of the
    file being validated left out, so a re-export is compared with the other months.

    With ``scopes`` (the schools a file covers), only those schools' rows of each earlier period
    count: a correction for one school is compared with that school's earlier months, not with
    the whole city's.
    """
    exists = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'staging' "
                         "AND table_name = 'file_manifest'").fetchall()[0][0]
    if not exists:
        return []
    if scopes is not None:
        rows = con.execute("""
            WITH cells AS (
                SELECT c.period, c.scope, c.rows / coalesce(nullif(m.days, 0), 1) AS per_day,
                       row_number() OVER (PARTITION BY c.period, c.scope ORDER BY c.exported_at DESC, c.sha256) AS rn
                FROM staging.file_coverage c
                JOIN (SELECT sha256, max(days) AS days FROM staging.file_manifest WHERE source_key = ?
                      AND outcome IN ('applied', 'superseded') GROUP BY 1) m USING (sha256)
                WHERE c.source_key = ? AND c.scope IN (SELECT unnest(?)) AND (? IS NULL OR c.period <> ?))
            SELECT period, sum(per_day) FROM cells WHERE rn = 1 GROUP BY period ORDER BY period""",
                           [source_key, source_key, scopes, before_period, before_period]).fetchall()
        if rows:
            return [float(n) for _, n in rows]
    rows = con.execute(
        "SELECT period, arg_max(rows_kept / coalesce(nullif(days, 0), 1), processed_at) FROM staging.file_manifest "
        "WHERE source_key = ? AND outcome = 'applied' AND rows_kept IS NOT NULL "
        "AND (? IS NULL OR period <> ?) GROUP BY period ORDER BY period",
        [source_key, before_period, before_period]).fetchall()
    return [float(n) for _, n in rows]


def export_date(path: Path) -> dt.date:
    """The day (in Tokyo) the department's system wrote the file: its modification date."""
    return dt.datetime.fromtimestamp(Path(path).stat().st_mtime, TOKYO).date()


def file_context(con: duckdb.DuckDBPyConnection, source_key: str, file_name: str, *,
                 headers: dict[str, str] | None = None, exported_on: dt.date | None = None,
                 period: str | None = None, references: References | None = None,
                 scopes: list[str] | None = None) -> FileContext:
    refs = references if references is not None else load_references(con)
    return FileContext(
        file_name=file_name, headers=dict(headers or {}), exported_on=exported_on,
        known_pupils=refs.known_pupils, known_residents=refs.known_residents,
        known_schools=refs.known_schools,
        previous_volumes=previous_volumes(con, source_key, period, scopes),
    )
