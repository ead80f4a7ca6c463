"""As-of dates, the city's school calendar, and the point-in-time views every feature reads.

An **as-of date** is a day on which the city asks "who is drifting toward 不登校?". There are
two kinds:

* ``month_start``: the first school day (a date that has attendance rows) of each month from
  May to March of every school year with history;
* ``latest``: the day after the latest attendance date in staging — "today" for the newest data.

A feature at as-of date ``A`` may use only staging rows whose ``known_date`` is strictly before
``A``. :func:`create_known_views` is the single place where that rule is applied: it creates one
temporary view ``k_<source>`` per staging table, filtered on ``known_date < A``, and the feature,
cohort and calendar SQL read those views only, never ``staging.*`` directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Iterable, Sequence

import duckdb

from toda_platform.catalogue import CATALOGUE

MONTH_START = "month_start"
LATEST = "latest"
# Months (calendar month numbers) that get a month_start as-of date: May to March.
AS_OF_MONTHS = (5, 6, 7, 8, 9, 10, 11, 12, 1, 2, 3)


@dataclass(frozen=True, order=True)
class AsOf:
    date: date
    kind: str  # MONTH_START or LATEST

    @property
    def school_year(self) -> int:
        return school_year_of(self.date)

    @property
    def year_start(self) -> date:
        return date(self.school_year, 4, 1)

    @property
    def prev_year_start(self) -> date:
        return date(self.school_year - 1, 4, 1)

    @property
    def month_key(self) -> str:
        return month_key(self.date)


def school_year_of(d: date) -> int:
    return d.year if d.month >= 4 else d.year - 1


def month_key(d: date) -> str:
    """The Dagster monthly partition key of a date (``YYYY-MM``)."""
    return f"{d.year:04d}-{d.month:02d}"


def sql_date(d: date) -> str:
    return f"DATE '{d.isoformat()}'"


def has_table(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, table]).fetchall()[0][0])


def as_of_dates(con: duckdb.DuckDBPyConnection) -> list[AsOf]:
    """Every as-of date the data supports, oldest first.

    The first school day of a month is the earliest date of that month with attendance rows;
    ``latest`` is the day after the latest attendance date (never itself a school day with rows,
    so it never coincides with a ``month_start``).
    """
    if not has_table(con, "staging", "attendance_daily"):
        return []
    rows = con.execute(
        "SELECT min(date) AS d FROM staging.attendance_daily "
        "GROUP BY date_trunc('month', date) ORDER BY d").fetchall()
    out = [AsOf(r[0], MONTH_START) for r in rows if r[0].month in AS_OF_MONTHS]
    latest = con.execute("SELECT max(date) FROM staging.attendance_daily").fetchall()[0][0]
    if latest is not None:
        out.append(AsOf(latest + timedelta(days=1), LATEST))
    return sorted(out)


def partition_of(as_of: AsOf, first_key: str, last_key: str) -> str:
    """The monthly partition that builds an as-of date: its month, clamped to the partitions
    that exist (history older than the first partition is built by the first one; a ``latest``
    date beyond the wall-clock's current month by the last one)."""
    return min(max(as_of.month_key, first_key), last_key)


def as_of_dates_for_partitions(con: duckdb.DuckDBPyConnection, partition_keys: Iterable[str],
                               first_key: str, last_key: str) -> list[AsOf]:
    keys = set(partition_keys)
    return [a for a in as_of_dates(con) if partition_of(a, first_key, last_key) in keys]


# ---------------------------------------------------------------------------------------------
# Point-in-time views
# ---------------------------------------------------------------------------------------------

def staged_sources(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Catalogue sources whose staging table exists in this warehouse."""
    present = {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'staging'").fetchall()}
    return [k for k in CATALOGUE if k in present]


def create_known_views(con: duckdb.DuckDBPyConnection, as_of: date) -> None:
    """``k_<source>``: the rows of ``staging.<source>`` the city knew strictly before ``as_of``.

    A missing staging table becomes an empty view of the catalogue's columns, so that feature
    SQL always runs (and reports the source as missing) on a warehouse without that source.
    """
    from toda_platform.ingest import table_columns

    present = set(staged_sources(con))
    for key, spec in CATALOGUE.items():
        if key in present:
            con.execute(f"CREATE OR REPLACE TEMP VIEW k_{key} AS "
                        f"SELECT * FROM staging.{key} WHERE known_date < {sql_date(as_of)}")
        else:
            cols = ", ".join(f'CAST(NULL AS {t}) AS "{n}"' for n, t in table_columns(spec))
            con.execute(f"CREATE OR REPLACE TEMP VIEW k_{key} AS SELECT {cols} WHERE false")


@dataclass(frozen=True)
class Windows:
    """Date boundaries of the feature windows at one as-of date, from the known calendar.

    Windows are counted in **school days** (dates with attendance rows known before the as-of
    date), not calendar days: a 30-calendar-day window before the first school day of September
    would hold only the summer break. ``d30`` = the last 30 school days, ``d60_30`` = the 30
    before those, ``d90`` = the last 90; ``lm``/``pm`` = the last two calendar months that had
    school days (month-on-month).
    """

    as_of: date
    year_start: date
    prev_year_start: date
    d30: date | None
    d60: date | None
    d90: date | None
    lm_start: date | None
    lm_end: date | None
    pm_start: date | None
    pm_end: date | None
    school_days_known: int  # school days before as_of in the calendar (up to 90 looked at)


def windows(con: duckdb.DuckDBPyConnection, as_of: AsOf,
            calendar: str = "(SELECT DISTINCT date, date AS known FROM k_attendance_daily)") -> Windows:
    """The windows at ``as_of`` from the school days known before it.

    ``calendar``: a relation of school days (``date``) with the date each became known
    (``known``); by default the known attendance view (needs :func:`create_known_views`).
    """
    days = [r[0] for r in con.execute(
        f"SELECT date FROM {calendar} WHERE known < {sql_date(as_of.date)} "
        f"AND date < {sql_date(as_of.date)} "
        f"AND date >= {sql_date(as_of.date - timedelta(days=400))} ORDER BY date DESC LIMIT 90"
    ).fetchall()]

    def nth(n: int) -> date | None:
        if not days:
            return None
        return days[min(n, len(days)) - 1]

    months = sorted({date(d.year, d.month, 1) for d in days
                     if date(d.year, d.month, 1) < date(as_of.date.year, as_of.date.month, 1)},
                    reverse=True)

    def month_end(m: date) -> date:
        return date(m.year + (m.month == 12), m.month % 12 + 1, 1)

    lm = months[0] if months else None
    pm = months[1] if len(months) > 1 else None
    return Windows(
        as_of=as_of.date, year_start=as_of.year_start, prev_year_start=as_of.prev_year_start,
        d30=nth(30), d60=nth(60) if len(days) > 30 else None, d90=nth(90),
        lm_start=lm, lm_end=month_end(lm) if lm else None,
        pm_start=pm, pm_end=month_end(pm) if pm else None,
        school_days_known=len(days),
    )


def distinct_school_years(as_ofs: Sequence[AsOf]) -> list[int]:
    return sorted({a.school_year for a in as_ofs})


# ---------------------------------------------------------------------------------------------
# Writing per-as-of-date tables
# ---------------------------------------------------------------------------------------------

class maybe_transaction:
    """``BEGIN``/``COMMIT`` (``ROLLBACK`` on error); nothing when ``enabled`` is false (DuckDB
    has no nested transactions, and a failed ``BEGIN`` would abort the caller's)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, enabled: bool = True):
        self.con, self.enabled = con, enabled

    def __enter__(self):
        if self.enabled:
            self.con.execute("BEGIN TRANSACTION")
        return self.con

    def __exit__(self, exc_type, exc, tb):
        if self.enabled:
            self.con.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


def stale_as_of_dates(con: duckdb.DuckDBPyConnection, table: str, building: Sequence[AsOf],
                      partition_keys: Iterable[str], first_key: str, last_key: str) -> list[date]:
    """As-of dates already in ``table`` that a rebuild of these partitions must delete.

    Rows of a partition's months that are no longer as-of dates (the data moved the first school
    day), and — when a ``latest`` date is being built — every older ``latest`` row: the table
    holds one "today" at a time.
    """
    schema, name = table.split(".")
    if not has_table(con, schema, name):
        return []
    keys = set(partition_keys)
    new = {a.date for a in building}
    builds_latest = any(a.kind == LATEST for a in building)
    out = []
    for d, kind in con.execute(f"SELECT DISTINCT as_of_date, as_of_kind FROM {table}").fetchall():
        if d in new:
            continue
        if (kind == LATEST and builds_latest) or partition_of(AsOf(d, kind), first_key, last_key) in keys:
            out.append(d)
    return sorted(out)
