"""The cohort (who is predicted for at an as-of date) and the 不登校 label.

**Cohort** at as-of date ``A`` (school year ``Y``), from what was known strictly before ``A``:

* enrolled in a city school: a registry row of year ``Y`` known before ``A`` (the roll from
  April 1, a transfer-in from its date) whose transfer-out date has not passed
  (``left_on`` blank or ``left_on >= A`` — a transfer-out date is only known once it has passed,
  and treating a future one as "still enrolled" is exactly what the city knew);
* not already meeting the MEXT definition: fewer than 30 days absent in ``Y`` for reasons other
  than illness (``absent_other``; ``absent_sick`` is illness; ``suspended`` and ``mourning`` are
  not absences). Attendance has no economic-reason code: such days are recorded as
  ``absent_other`` and counted, which is the conservative side (the pupil is listed as a known
  case rather than predicted). A pupil whose 30th such absence was on day ``D`` leaves the
  cohort on ``D + 1``.

Pupils who meet the definition are **known cases**: listed in ``marts.labels`` with
``known_case = true`` and ``in_cohort = false``, never predicted.

**Label** (``marts.labels.label``): the pupil is counted under main reason 不登校 in the
long-absence survey of ``Y``. It exists only for completed years — when the survey of ``Y`` is in
staging; the current year's rows have ``label = NULL``. The label is future information by
design: ``marts.labels`` is the one table that reads staging without the knowledge-date rule, and
nothing in ``marts.pupil_features`` reads it.
"""

from __future__ import annotations

from datetime import date

import duckdb

from ml.asof import AsOf, create_known_views, maybe_transaction, sql_date

DEFINITION_DAYS = 30

LABELS_DDL = """
CREATE TABLE IF NOT EXISTS marts.labels (
    pupil_id VARCHAR NOT NULL,
    as_of_date DATE NOT NULL,
    as_of_kind VARCHAR NOT NULL,
    school_year INTEGER NOT NULL,
    school_code VARCHAR NOT NULL,
    grade TINYINT NOT NULL,
    in_cohort BOOLEAN NOT NULL,
    known_case BOOLEAN NOT NULL,
    nonillness_absent_days INTEGER NOT NULL,
    futoukou_prev_year BOOLEAN,
    label BOOLEAN,
    label_available BOOLEAN NOT NULL,
    survey_main_reason VARCHAR,
    survey_absent_days INTEGER,
    date_30th_nonillness_absence DATE,
    PRIMARY KEY (pupil_id, as_of_date)
)"""

LABEL_COLUMNS = {
    "pupil_id": "pseudonymous pupil key",
    "as_of_date": "the as-of date",
    "as_of_kind": "month_start (first school day of a month) or latest (day after the newest data)",
    "school_year": "school year containing as_of_date",
    "school_code": "school the pupil is enrolled in on as_of_date",
    "grade": "city-wide grade 1-9",
    "in_cohort": "predicted for: enrolled and not already meeting the definition",
    "known_case": "already 30+ non-illness absent days before as_of_date: listed, not predicted",
    "nonillness_absent_days": "absent_other days in the school year before as_of_date",
    "futoukou_prev_year": "counted 不登校 in the previous year's survey (NULL: no survey for that "
                          "year); for reporting results on new cases alone",
    "label": "counted under main reason 不登校 in this school year's long-absence survey "
             "(NULL until the year's survey exists)",
    "label_available": "the survey of this school year is in staging",
    "survey_main_reason": "main reason in this year's survey, 'not_listed' if absent from it "
                          "(NULL until the survey exists)",
    "survey_absent_days": "absent days in this year's survey",
    "date_30th_nonillness_absence": "date of the 30th absent_other day of the year (any time in "
                                    "the year, for lead-time metrics; future information)",
}


def nonillness_sql(as_of: AsOf, absent_other: str | None = None) -> str:
    """Per pupil, absent_other days of the school year known before ``as_of`` (``k_*`` views).

    ``absent_other``: a table of the staging attendance rows with that status (``pupil_id``,
    ``date``, ``known_date``; see :func:`build_labels`), read with the knowledge-date rule
    itself — the same count without a scan of the whole attendance table per as-of date."""
    if absent_other:
        return f"""
        SELECT pupil_id, count(*)::INTEGER AS n
        FROM {absent_other}
        WHERE known_date < {sql_date(as_of.date)} AND date >= {sql_date(as_of.year_start)}
        GROUP BY pupil_id"""
    return f"""
        SELECT pupil_id, count(*)::INTEGER AS n
        FROM k_attendance_daily
        WHERE status = 'absent_other' AND date >= {sql_date(as_of.year_start)}
        GROUP BY pupil_id"""


def enrolled_sql(as_of: AsOf, nonillness: str | None = None) -> str:
    """Pupils enrolled on ``as_of`` (one row each), with their non-illness absence count.

    Reads only the ``k_*`` views of :func:`ml.asof.create_known_views` (``nonillness``: an
    equivalent relation of ``pupil_id, n`` — the feature builder passes its per-segment sums,
    which the cohort test checks against this one).
    """
    a, y = sql_date(as_of.date), as_of.school_year
    nonillness = nonillness or nonillness_sql(as_of)
    return f"""
    WITH reg AS (
        SELECT *, row_number() OVER (
            PARTITION BY pupil_id ORDER BY known_date DESC, school_code) AS rn
        FROM k_pupil_registry
        WHERE school_year = {y} AND (left_on IS NULL OR left_on >= {a})
    ), nonillness AS ({nonillness}
    )
    SELECT reg.pupil_id, {a} AS as_of_date, '{as_of.kind}' AS as_of_kind,
           {y}::INTEGER AS school_year, reg.school_code, reg.grade, reg.class_name,
           reg.resident_id, reg.sex, reg.birth_month, reg.enrolled_on,
           coalesce(nonillness.n, 0)::INTEGER AS nonillness_absent_days,
           coalesce(nonillness.n, 0) >= {DEFINITION_DAYS} AS known_case,
           coalesce(nonillness.n, 0) < {DEFINITION_DAYS} AS in_cohort
    FROM reg LEFT JOIN nonillness USING (pupil_id)
    WHERE reg.rn = 1
    """


def build_enrolled(con: duckdb.DuckDBPyConnection, as_of: AsOf, nonillness: str | None = None) -> None:
    """Temp table ``_enrolled`` for ``as_of`` (needs the known views for ``as_of``)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _enrolled AS {enrolled_sql(as_of, nonillness)}")


# Every absent_other row of staging (with its knowledge date; the label's 30th absence ignores it):
# read once per build instead of two scans of the attendance table per as-of date.
ABSENT_OTHER = "_absent_other"
ABSENT_OTHER_SQL = (f"CREATE OR REPLACE TEMP TABLE {ABSENT_OTHER} AS SELECT pupil_id, date, known_date "
                    "FROM staging.attendance_daily WHERE status = 'absent_other'")


def _survey_available(con: duckdb.DuckDBPyConnection, year: int) -> bool:
    """Whether the long-absence survey of ``year`` is in staging (ignoring knowledge dates)."""
    n = con.execute(
        "SELECT count(*) FROM staging.long_absence_survey WHERE school_year = ?", [year]).fetchall()[0][0]
    if n:
        return True
    return bool(con.execute(
        "SELECT count(*) FROM staging.file_manifest WHERE source_key = 'long_absence_survey' "
        "AND outcome = 'applied' AND period = ?", [str(year)]).fetchall()[0][0])


def _label_sql(as_of: AsOf, cur_available: bool, prev_available: bool,
               absent_other: str = ABSENT_OTHER) -> str:
    y = as_of.school_year
    cur = "TRUE" if cur_available else "FALSE"
    prev = "TRUE" if prev_available else "FALSE"
    return f"""
    WITH survey AS (
        SELECT pupil_id, school_year,
               bool_or(main_reason = 'futoukou') AS futoukou,
               arg_max(main_reason, absent_days) AS main_reason,
               sum(absent_days)::INTEGER AS absent_days
        FROM staging.long_absence_survey
        WHERE school_year IN ({y}, {y - 1})
        GROUP BY ALL
    ), nth AS (
        SELECT pupil_id, date
        FROM (SELECT pupil_id, date,
                     row_number() OVER (PARTITION BY pupil_id ORDER BY date) AS rn
              FROM {absent_other}
              WHERE date >= {sql_date(date(y, 4, 1))} AND date < {sql_date(date(y + 1, 4, 1))})
        WHERE rn = {DEFINITION_DAYS}
    )
    SELECT e.pupil_id, e.as_of_date, e.as_of_kind, e.school_year, e.school_code, e.grade,
           e.in_cohort, e.known_case, e.nonillness_absent_days,
           CASE WHEN {prev} THEN coalesce(p.futoukou, false) END AS futoukou_prev_year,
           CASE WHEN {cur} THEN coalesce(c.futoukou, false) END AS label,
           {cur} AS label_available,
           CASE WHEN {cur} THEN coalesce(c.main_reason, 'not_listed') END AS survey_main_reason,
           CASE WHEN {cur} THEN c.absent_days END AS survey_absent_days,
           nth.date AS date_30th_nonillness_absence
    FROM _enrolled e
    LEFT JOIN survey c ON c.pupil_id = e.pupil_id AND c.school_year = {y}
    LEFT JOIN survey p ON p.pupil_id = e.pupil_id AND p.school_year = {y - 1}
    LEFT JOIN nth ON nth.pupil_id = e.pupil_id
    """


def ensure_labels_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS marts")
    con.execute(LABELS_DDL)
    con.execute("CREATE OR REPLACE VIEW marts.cohort AS "
                "SELECT pupil_id, as_of_date, as_of_kind, school_year, school_code, grade "
                "FROM marts.labels WHERE in_cohort")
    con.execute("CREATE OR REPLACE VIEW marts.known_cases AS "
                "SELECT pupil_id, as_of_date, as_of_kind, school_year, school_code, grade, "
                "nonillness_absent_days FROM marts.labels WHERE known_case")


def build_labels(con: duckdb.DuckDBPyConnection, as_ofs: list[AsOf], *,
                 stale: list[date] = (), fingerprints: dict[date, str] | None = None) -> dict[str, dict]:
    """Delete-then-insert the rows of ``marts.labels`` for each as-of date, each in its own
    short transaction (see :func:`ml.features.build_features`).

    ``stale``: further as-of dates whose rows are deleted (see :func:`ml.asof.stale_as_of_dates`).
    ``fingerprints`` (``ml.inputs.labels_fingerprints``): a date whose rows were built from the
    same inputs is left as it is (its counts are read back, marked ``"unchanged": True``).
    Returns per as-of date the cohort size, known cases and positive labels.
    """
    from ml import inputs

    ensure_labels_table(con)
    available: dict[int, bool] = {}

    def avail(y: int) -> bool:
        if y not in available:
            available[y] = _survey_available(con, y)
        return available[y]

    counts: dict[str, dict] = {}
    with maybe_transaction(con):
        for d in stale:
            con.execute("DELETE FROM marts.labels WHERE as_of_date = ?", [d])
        inputs.forget(con, "marts.labels", stale)
    same = inputs.unchanged(con, "marts.labels", fingerprints) if fingerprints else set()
    if any(a.date not in same for a in as_ofs):
        con.execute(ABSENT_OTHER_SQL)
    for a in as_ofs:
        if a.date not in same:
            create_known_views(con, a.date)
            build_enrolled(con, a, nonillness_sql(a, ABSENT_OTHER))
            with maybe_transaction(con):
                con.execute("DELETE FROM marts.labels WHERE as_of_date = ?", [a.date])
                con.execute(f"INSERT INTO marts.labels BY NAME "
                            f"{_label_sql(a, avail(a.school_year), avail(a.school_year - 1))}")
                if fingerprints:
                    inputs.remember(con, "marts.labels", a.date, fingerprints[a.date])
        n = con.execute(
            "SELECT count(*) FILTER (in_cohort), count(*) FILTER (known_case), "
            "count(*) FILTER (label), count(*) FILTER (label_available) "
            "FROM marts.labels WHERE as_of_date = ?", [a.date]).fetchall()[0]
        counts[a.date.isoformat()] = {"cohort": n[0], "known_cases": n[1], "label_true": n[2],
                                      "labelled": n[3], **({"unchanged": True} if a.date in same else {})}
    con.execute("DROP TABLE IF EXISTS _enrolled")
    con.execute(f"DROP TABLE IF EXISTS {ABSENT_OTHER}")
    return counts
