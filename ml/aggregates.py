"""``marts.school_aggregates``: one row per (school, school year), small cells suppressed.

Every cell that describes pupils says how many pupils it comes from; a cell from fewer than
:data:`MIN_CELL` pupils is NULL with ``<cell>_suppressed = true``:

* a mean or rate over pupils (attendance rate, achievement, mood, Q-U shares' denominator)
  needs at least 10 pupils behind it;
* a count of pupils with a property (long absence, 不登校, a Q-U group) is shown only if it is 0
  or at least 10 — a count of 3 *is* a cell from 3 pupils — and the rate derived from it follows
  the count;
* the published context ratios are counts in disguise (就学援助率 × 児童生徒数): a ratio standing
  for 1–9 pupils is suppressed;
* teacher figures (stress check, questionnaire, overtime) follow the same rule on the number of
  teachers (the stress-check group analysis is not given for fewer than 10 staff);
* a school-year with fewer than 10 pupils enrolled shows no pupil figure at all.

Secondary suppression, so that a hidden cell cannot be recovered by subtraction: the long-absence
count is hidden when it exceeds the 不登校 count by 1–9 (the difference would be a cell of 1–9
pupils), likewise "30+ days absent" against "30+ days absent, not ill", and when exactly one of
the four Q-U group shares that partition the class is hidden, all four are.

The table is descriptive, not point-in-time: a completed year uses that year's long-absence
survey (``year_complete``); the current year shows what is known up to ``data_until``.
"""

from __future__ import annotations

import time

import duckdb

MIN_CELL = 10
TABLE = "marts.school_aggregates"


def _ok_mean(n: str) -> str:
    return f"coalesce({n}, 0) >= {MIN_CELL}"


def _ok_count(k: str, denominator: str) -> str:
    return f"(coalesce({denominator}, 0) >= {MIN_CELL} AND ({k} = 0 OR {k} >= {MIN_CELL}))"


def _ok_ratio(rate: str, base: str) -> str:
    count = f"round({rate} * {base} / 100.0)"
    return f"(coalesce({base}, 0) >= {MIN_CELL} AND ({count} = 0 OR {count} >= {MIN_CELL}))"


# (cell, value expression over the raw aggregates, publishable when ...)
CELLS: list[tuple[str, str, str]] = [
    ("enrolment", "enrolment", _ok_mean("enrolment")),
    ("attendance_rate", "attended_days / nullif(required_days, 0)", _ok_mean("att_pupils")),
    ("absence_rate", "absent_days / nullif(required_days, 0)", _ok_mean("att_pupils")),
    ("absent30_to_date", "absent30", _ok_count("absent30", "att_pupils")),
    ("nonillness30_to_date", "nonillness30", _ok_count("nonillness30", "att_pupils")),
    ("long_absent_count", "long_absent", _ok_count("long_absent", "enrolment")),
    ("long_absent_rate", "100.0 * long_absent / nullif(enrolment, 0)", _ok_count("long_absent", "enrolment")),
    ("futoukou_count", "futoukou", _ok_count("futoukou", "enrolment")),
    ("futoukou_rate", "100.0 * futoukou / nullif(enrolment, 0)", _ok_count("futoukou", "enrolment")),
    ("ach_level_mean", "ach_mean", _ok_mean("ach_pupils")),
    ("ach_level_japanese", "ach_japanese", _ok_mean("ach_pupils")),
    ("ach_level_math", "ach_math", _ok_mean("ach_pupils")),
    ("ach_growth_same_pupils", "ach_growth", _ok_mean("growth_pupils")),
    *[(f"qu_share_{g}", f"qu_{g} / nullif(qu_pupils, 0)", _ok_count(f"qu_{g}", "qu_pupils"))
      for g in ("satisfied", "unrecognised", "infringed", "dissatisfied", "needs_support")],
    ("mood_mean", "mood_mean", _ok_mean("mood_pupils")),
    ("mood_body_mean", "body_mean", _ok_mean("mood_pupils")),
    ("mood_sleep_mean", "sleep_mean", _ok_mean("mood_pupils")),
    ("mood_bad_day_share", "bad_share", _ok_mean("mood_pupils")),
    *[(f"ctx_{r}", f"ctx_{r}", _ok_ratio(f"ctx_{r}", "ctx_enrolment"))
      for r in ("school_aid_rate", "child_allowance_rate", "welfare_rate", "special_needs_rate",
                "japanese_support_rate")],
    *[(f"stress_{s}", f"stress_{s}", _ok_mean("examinees"))
      for s in ("stressors", "reactions", "support", "satisfaction", "high_stress_rate")],
    *[(f"teacher_{s}", f"ts_{s}", _ok_mean("respondents"))
      for s in ("lesson_improvement", "collaboration", "shared_guidance", "school_climate", "ict_use")],
    ("overtime_mean_hours", "ot_mean_hours", _ok_mean("ot_teachers")),
    ("overtime_over_45h_rate", "ot_over45", _ok_mean("ot_teachers")),
    ("overtime_over_80h_person_months", "ot_over80", _ok_count("ot_over80", "ot_teachers")),
]
SUPPRESSIBLE = [c for c, _, _ in CELLS]

RAW_SQL = """
WITH reg AS (
    SELECT school_code, school_year,
           count(DISTINCT pupil_id) FILTER (
               coalesce(enrolled_on, make_date(school_year, 4, 1)) <= make_date(school_year, 5, 1)
               AND (left_on IS NULL OR left_on > make_date(school_year, 5, 1))) AS enrolment
    FROM staging.pupil_registry GROUP BY ALL
), att_pupil AS (
    SELECT school_code, pupil_id,
           year(date) - CASE WHEN month(date) < 4 THEN 1 ELSE 0 END AS school_year,
           count(*) FILTER (status NOT IN ('suspended', 'mourning')) AS required,
           count(*) FILTER (status IN ('present', 'late', 'early_leave')) AS attended,
           count(*) FILTER (status IN ('absent_sick', 'absent_other')) AS absent,
           count(*) FILTER (status = 'absent_other') AS nonillness,
           max(date) AS last_date
    FROM staging.attendance_daily GROUP BY ALL
), att AS (
    SELECT school_code, school_year, count(*) AS att_pupils,
           sum(required) AS required_days, sum(attended) AS attended_days,
           sum(absent) AS absent_days,
           count(*) FILTER (absent >= 30) AS absent30,
           count(*) FILTER (nonillness >= 30) AS nonillness30,
           max(last_date) AS data_until
    FROM att_pupil GROUP BY ALL
), survey_years AS (
    SELECT DISTINCT school_year FROM staging.long_absence_survey
), survey AS (
    SELECT school_code, school_year, count(DISTINCT pupil_id) AS long_absent,
           count(DISTINCT pupil_id) FILTER (main_reason = 'futoukou') AS futoukou
    FROM staging.long_absence_survey GROUP BY ALL
), ach_pupil AS (
    SELECT school_code, school_year, pupil_id, avg(level) AS mean_level,
           avg(level) FILTER (subject IN ('japanese', 'math')) AS jm,
           any_value(level) FILTER (subject = 'japanese') AS japanese,
           any_value(level) FILTER (subject = 'math') AS math
    FROM staging.prefectural_achievement GROUP BY ALL
), ach AS (
    SELECT school_code, school_year, count(*) AS ach_pupils, avg(mean_level) AS ach_mean,
           avg(japanese) AS ach_japanese, avg(math) AS ach_math
    FROM ach_pupil GROUP BY ALL
), growth AS (
    -- the same pupils a year apart: this year's school, japanese and math (english starts in 中2)
    SELECT cur.school_code, cur.school_year, count(*) AS growth_pupils,
           avg(cur.jm - prev.jm) AS ach_growth
    FROM ach_pupil cur JOIN (SELECT pupil_id, school_year, avg(jm) AS jm FROM ach_pupil GROUP BY ALL) prev
      ON prev.pupil_id = cur.pupil_id AND prev.school_year = cur.school_year - 1
    GROUP BY ALL
), qu_last AS (
    SELECT *, year(survey_date) - CASE WHEN month(survey_date) < 4 THEN 1 ELSE 0 END AS school_year
    FROM staging.qu_survey
), qu AS (
    SELECT q.school_code, q.school_year, count(DISTINCT q.pupil_id) AS qu_pupils,
           count(DISTINCT q.pupil_id) FILTER (q."group" = 'satisfied') AS qu_satisfied,
           count(DISTINCT q.pupil_id) FILTER (q."group" = 'unrecognised') AS qu_unrecognised,
           count(DISTINCT q.pupil_id) FILTER (q."group" = 'infringed') AS qu_infringed,
           count(DISTINCT q.pupil_id) FILTER (q."group" IN ('dissatisfied', 'needs_support')) AS qu_dissatisfied,
           count(DISTINCT q.pupil_id) FILTER (q."group" = 'needs_support') AS qu_needs_support
    FROM qu_last q
    JOIN (SELECT school_code, school_year, max(round) AS round FROM qu_last GROUP BY ALL) r
      USING (school_code, school_year, round)
    GROUP BY ALL
), mood_pupil AS (
    SELECT school_code, pupil_id,
           year(checkin_date) - CASE WHEN month(checkin_date) < 4 THEN 1 ELSE 0 END AS school_year,
           avg(mood) AS mood, avg(body) AS body, avg(sleep) AS sleep, avg(CAST(mood <= 2 AS INTEGER)) AS bad
    FROM staging.mood_checkin GROUP BY ALL
), mood AS (
    SELECT school_code, school_year, count(*) AS mood_pupils, avg(mood) AS mood_mean,
           avg(body) AS body_mean, avg(sleep) AS sleep_mean, avg(bad) AS bad_share
    FROM mood_pupil GROUP BY ALL
), ot AS (
    SELECT school_code,
           year(month) - CASE WHEN month(month) < 4 THEN 1 ELSE 0 END AS school_year,
           min(teachers) AS ot_teachers, avg(mean_overtime_hours) AS ot_mean_hours,
           avg(over_45h_rate) AS ot_over45, sum(over_80h_count) AS ot_over80
    FROM staging.teacher_overtime GROUP BY ALL
), grid AS (
    SELECT school_code, school_year FROM reg
    UNION SELECT school_code, school_year FROM att
)
SELECT g.school_code, m.school_name, m.school_type, g.school_year,
       g.school_year IN (SELECT school_year FROM survey_years) AS year_complete,
       att.data_until,
       reg.enrolment, att.att_pupils, att.required_days, att.attended_days, att.absent_days,
       att.absent30, att.nonillness30,
       CASE WHEN g.school_year IN (SELECT school_year FROM survey_years)
            THEN coalesce(survey.long_absent, 0) END AS long_absent,
       CASE WHEN g.school_year IN (SELECT school_year FROM survey_years)
            THEN coalesce(survey.futoukou, 0) END AS futoukou,
       ach.ach_pupils, ach.ach_mean, ach.ach_japanese, ach.ach_math,
       growth.growth_pupils, growth.ach_growth,
       qu.qu_pupils, qu.qu_satisfied, qu.qu_unrecognised, qu.qu_infringed, qu.qu_dissatisfied,
       qu.qu_needs_support,
       mood.mood_pupils, mood.mood_mean, mood.body_mean, mood.sleep_mean, mood.bad_share,
       ctx.enrolment AS ctx_enrolment, ctx.school_aid_rate AS ctx_school_aid_rate,
       ctx.child_allowance_rate AS ctx_child_allowance_rate, ctx.welfare_rate AS ctx_welfare_rate,
       ctx.special_needs_rate AS ctx_special_needs_rate,
       ctx.japanese_support_rate AS ctx_japanese_support_rate,
       sc.examinees, sc.stressors AS stress_stressors, sc.reactions AS stress_reactions,
       sc.support AS stress_support, sc.satisfaction AS stress_satisfaction,
       sc.high_stress_rate AS stress_high_stress_rate,
       ts.respondents, ts.lesson_improvement AS ts_lesson_improvement,
       ts.collaboration AS ts_collaboration, ts.shared_guidance AS ts_shared_guidance,
       ts.school_climate AS ts_school_climate, ts.ict_use AS ts_ict_use,
       ot.ot_teachers, ot.ot_mean_hours, ot.ot_over45, ot.ot_over80
FROM grid g
LEFT JOIN staging.school_master m USING (school_code)
LEFT JOIN reg USING (school_code, school_year)
LEFT JOIN att USING (school_code, school_year)
LEFT JOIN survey USING (school_code, school_year)
LEFT JOIN ach USING (school_code, school_year)
LEFT JOIN growth USING (school_code, school_year)
LEFT JOIN qu USING (school_code, school_year)
LEFT JOIN mood USING (school_code, school_year)
LEFT JOIN staging.school_context ctx USING (school_code, school_year)
LEFT JOIN staging.teacher_stress_check sc USING (school_code, school_year)
LEFT JOIN staging.teacher_survey ts USING (school_code, school_year)
LEFT JOIN ot USING (school_code, school_year)
"""

SOURCES_READ = ("pupil_registry", "attendance_daily", "long_absence_survey",
                "prefectural_achievement", "qu_survey", "mood_checkin", "school_master",
                "school_context", "teacher_stress_check", "teacher_survey", "teacher_overtime")


def raw_aggregates(con: duckdb.DuckDBPyConnection, into: str = "_school_raw") -> None:
    """Unsuppressed figures with the number of pupils (or teachers) behind each — a temp table
    that never leaves this connection."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {into} AS {RAW_SQL}")


TEACHER_CELLS = tuple(c for c in SUPPRESSIBLE if c.startswith(("stress_", "teacher_", "overtime_")))
QU_PARTITION = ("qu_share_satisfied", "qu_share_unrecognised", "qu_share_infringed",
                "qu_share_dissatisfied")
# (cell hidden, when its count exceeds this other shown count by 1-9)
DIFFERENCES = (("long_absent_count", "long_absent", "futoukou_count", "futoukou"),
               ("long_absent_rate", "long_absent", "futoukou_count", "futoukou"),
               ("absent30_to_date", "absent30", "nonillness30_to_date", "nonillness30"))


def suppressed_select(raw: str = "_school_raw") -> str:
    values = {name: value for name, value, _ in CELLS}
    first = []
    for name, value, ok in CELLS:
        school = "" if name in TEACHER_CELLS or name == "enrolment" else f" AND {_ok_mean('enrolment')}"
        first.append(f"coalesce(({ok}){school}, false) AS ok_{name}")
    second = []
    for cell, big, other, small in DIFFERENCES:
        second.append(f"ok_{cell} AND NOT (ok_{other} AND coalesce({big} - {small} BETWEEN 1 AND "
                      f"{MIN_CELL - 1}, false)) AS ok_{cell}")
    hidden = " + ".join(f"CAST(({values[c]}) IS NOT NULL AND NOT ok_{c} AS INTEGER)" for c in QU_PARTITION)
    second += [f"ok_{c} AND ({hidden}) <> 1 AS ok_{c}" for c in QU_PARTITION]
    cells = []
    for name, value, _ in CELLS:
        cells.append(f"CASE WHEN ok_{name} THEN {value} END AS {name}")
        cells.append(f"(({value}) IS NOT NULL AND NOT ok_{name}) AS {name}_suppressed")
    return f"""
    WITH first AS (SELECT *, {", ".join(first)} FROM {raw}),
    second AS (SELECT * REPLACE ({", ".join(second)}) FROM first)
    SELECT school_code, school_name, school_type, school_year, year_complete, data_until,
           {", ".join(cells)}
    FROM second ORDER BY school_year, school_code"""


def build_school_aggregates(con: duckdb.DuckDBPyConnection, table: str = TABLE) -> dict:
    """Rebuild the whole table (all schools and years) in one transaction."""
    started = time.perf_counter()
    con.execute("CREATE SCHEMA IF NOT EXISTS marts")
    raw_aggregates(con)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"CREATE OR REPLACE TABLE {table} AS {suppressed_select()}")
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    finally:
        con.execute("DROP TABLE IF EXISTS _school_raw")
    rows, years = con.execute(f"SELECT count(*), count(DISTINCT school_year) FROM {table}").fetchall()[0]
    flags = " + ".join(f"count(*) FILTER ({c}_suppressed)" for c in SUPPRESSIBLE)
    suppressed = con.execute(f"SELECT {flags} FROM {table}").fetchall()[0][0]
    return {"rows": rows, "school_years": years, "cells_suppressed": suppressed,
            "seconds": round(time.perf_counter() - started, 2)}
