"""The integrated pupil table ``marts.pupil_features``: one row per (pupil, as-of date), built
only from what the city knew strictly before the as-of date.

How point-in-time correctness is enforced
  For each as-of date ``A``, :func:`ml.asof.create_known_views` creates ``k_<source>`` views
  (``staging.<source> WHERE known_date < A``). Every per-date query in this module reads those
  views and temp tables built from them — never ``staging.*``. The one exception is
  :func:`prepare_batch`, which reads the big daily sources once per school year and carries the
  rule itself: each row is counted only in timeline segments that end after its
  ``known_date``, and the calendar and coverage tables keep the date each fact became known so
  that every as-of date filters them. The school calendar (windows in school days), a source's
  coverage ("has this source begun?") and whether a survey round has happened are therefore
  point-in-time too: a record known on or after ``A`` cannot change anything at ``A`` (see the
  property tests in ``tests/test_features.py``).

Missing data
  Never a silent zero for "no data yet": counts are NULL when the source had not begun for the
  window (e.g. mood check-ins before FY2023, the previous year in the first year of history) or
  the pupil was not in the city then; "latest record" features are NULL with ``<prefix>_missing``
  when no record is known; ``*_grade_not_surveyed`` marks grades a test does not cover
  (県学調 and its questionnaire from 小4, RST from 小6, AiGROW in junior high). A zero means
  "the source was there and recorded nothing", e.g. no nurse visits.

Everything is SQL in DuckDB; Python only loops over school years and as-of dates (about ten
per school year), never over pupils.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, timedelta

import duckdb

from ml.asof import (AsOf, Windows, create_known_views, maybe_transaction, sql_date,
                     staged_sources, windows)
from ml import inputs
from ml.labels import build_enrolled

FEATURES_TABLE = "marts.pupil_features"
ID_COLUMNS = ("pupil_id", "as_of_date", "as_of_kind", "school_year", "school_code", "grade",
              "class_name")
NEVER = date(9999, 12, 31)  # start of an empty window


def _d(d: date | None) -> str:
    return sql_date(d or NEVER)


def _b(flag: bool) -> str:
    return "TRUE" if flag else "FALSE"


@dataclass
class Batch:
    """As-of dates of one school year built together.

    The two big daily sources (attendance, mood check-ins) are read **once per batch**: every
    row is summed into the segment of the timeline it falls in, where the segments are cut at
    every boundary of every window of every as-of date in the batch (and at the as-of dates
    themselves). A window at as-of date ``A`` is then a union of whole segments that end on or
    before ``A``. A row enters a segment only if its ``known_date`` is before the segment's end,
    so whatever reaches ``A`` was known before ``A`` — the same rule as the ``k_*`` views.
    """

    as_ofs: list[AsOf]
    bounds: list[date]
    windows: dict[date, Windows]
    periods: dict[str, list[tuple[date, date]]] = field(default_factory=dict)

    def seg_case(self, col: str) -> str:
        b = self.bounds
        return "CASE " + " ".join(f"WHEN {col} >= {sql_date(d)} THEN {i}"
                                  for i, d in reversed(list(enumerate(b[:-1])))) + " ELSE -1 END"

    def seg_end_case(self, col: str) -> str:
        b = self.bounds
        return "CASE " + " ".join(f"WHEN {col} >= {sql_date(d)} THEN {sql_date(b[i + 1])}"
                                  for i, d in reversed(list(enumerate(b[:-1])))) + " END"

    def segment_ids(self, start: date | None, end: date) -> list[int]:
        """The segments making up ``[start, end)``."""
        if start is None:
            return []
        b = self.bounds
        return [i for i in range(len(b) - 1) if b[i] >= start and b[i + 1] <= end]

    def segments_in(self, start: date | None, end: date) -> str:
        """SQL predicate on ``seg``: the segments making up ``[start, end)``."""
        ids = self.segment_ids(start, end)
        return f"seg IN ({', '.join(map(str, ids))})" if ids else "FALSE"


@dataclass
class Ctx:
    """Everything a feature block needs for one as-of date."""

    as_of: AsOf
    w: Windows
    batch: Batch
    coverage: dict[str, date | None] = field(default_factory=dict)

    @property
    def a(self) -> str:
        return sql_date(self.as_of.date)

    @property
    def y(self) -> int:
        return self.as_of.school_year

    def window(self, name: str, col: str) -> str:
        """SQL predicate: ``col`` falls in the named window (upper bound: known before A)."""
        w = self.w
        return {
            "d30": f"{col} >= {_d(w.d30)}",
            "d60_30": f"{col} >= {_d(w.d60)} AND {col} < {_d(w.d30)}",
            "d90": f"{col} >= {_d(w.d90)}",
            "ytd": f"{col} >= {_d(w.year_start)}",
            "prev": f"{col} >= {_d(w.prev_year_start)} AND {col} < {_d(w.year_start)}",
            "lm": f"{col} >= {_d(w.lm_start)} AND {col} < {_d(w.lm_end)}",
            "pm": f"{col} >= {_d(w.pm_start)} AND {col} < {_d(w.pm_end)}",
        }[name]

    def window_start(self, name: str) -> date | None:
        w = self.w
        return {"d30": w.d30, "d60_30": w.d60, "d90": w.d90, "ytd": w.year_start,
                "prev": w.prev_year_start, "lm": w.lm_start, "pm": w.pm_start}[name]

    def covered(self, source: str, window: str) -> bool:
        """Whether the source had begun (its first file's period) by the window's start."""
        start, cov = self.window_start(window), self.coverage.get(source)
        return start is not None and cov is not None and cov <= start

    @property
    def lower_bound(self) -> str:
        """Oldest event date any window looks at (a pruning hint for the big daily tables)."""
        return _d(min(d for d in (self.w.prev_year_start, self.w.d90) if d is not None))


# Event date column and file cadence of the event sources whose counts have windows.
EVENT_SOURCES = {
    "attendance_daily": ("date", "monthly"),
    "mood_checkin": ("checkin_date", "monthly"),
    "nurse_office_visits": ("visit_date", "monthly"),
    "bullying_records": ("recognised_on", "school_year"),
    "counseling_records": ("session_date", "school_year"),
    "support_records": ("decided_on", "school_year"),
}


def period_knowledge(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[date, date]]]:
    """Per event source: each period (month or school year) it has data for, with the first date
    a record of that period became known. Read once per batch; see :func:`coverage_at`."""
    out: dict[str, list[tuple[date, date]]] = {}
    present = set(staged_sources(con))
    for key, (col, cadence) in EVENT_SOURCES.items():
        if key not in present:
            out[key] = []
            continue
        period = (f"date_trunc('month', {col})::DATE" if cadence == "monthly" else
                  f"make_date(year({col}) - CASE WHEN month({col}) < 4 THEN 1 ELSE 0 END, 4, 1)")
        out[key] = [tuple(r) for r in con.execute(
            f"SELECT {period} AS p, min(known_date) FROM staging.{key} "
            f"WHERE {col} IS NOT NULL GROUP BY p ORDER BY p").fetchall()]
    return out


def coverage_at(periods: dict[str, list[tuple[date, date]]], as_of: date) -> dict[str, date | None]:
    """First day of the first period each event source had data for, counting only records
    known before ``as_of`` — the same as ``min(period of col)`` over the ``k_*`` view."""
    return {key: min((p for p, known in rows if known < as_of), default=None)
            for key, rows in periods.items()}


# ---------------------------------------------------------------------------------------------
# Feature blocks: each returns SQL selecting one row per cohort pupil (FROM _cohort c ...)
# ---------------------------------------------------------------------------------------------

def registry_block(x: Ctx) -> str:
    return f"""
    WITH years AS (
        SELECT pupil_id,
               count(DISTINCT school_code) FILTER (school_year = {x.y}) AS schools_this_year,
               bool_or(school_year = {x.y - 1}) AS in_city_prev_year,
               count(DISTINCT school_year) FILTER (school_year < {x.y}) AS years_before
        FROM k_pupil_registry WHERE pupil_id IN (SELECT pupil_id FROM _cohort) GROUP BY pupil_id
    ), class AS (
        SELECT school_code, grade, class_name, count(*) AS class_size
        FROM _enrolled GROUP BY ALL
    )
    SELECT c.pupil_id,
           (c.sex = 'F') AS reg_female,
           datediff('month', c.birth_month, {x.a}) AS reg_age_months,
           (c.grade >= 7) AS reg_junior_high,
           (c.enrolled_on IS NOT NULL) AS reg_transferred_in_this_year,
           years.schools_this_year AS reg_schools_this_year,
           coalesce(years.in_city_prev_year, false) AS reg_in_city_prev_year,
           years.years_before AS reg_years_in_city_before,
           class.class_size AS reg_class_size
    FROM _cohort c
    LEFT JOIN years USING (pupil_id)
    LEFT JOIN class USING (school_code, grade, class_name)
    """


ATT_MEASURES = {
    "absent": "absent",
    "absent_sick": "status = 'absent_sick'",
    "absent_other": "status = 'absent_other'",
    "late": "status = 'late'",
    "early_leave": "status = 'early_leave'",
    "nurse_room": "room = 'nurse_room'",
    "separate_room": "room = 'separate_room'",
}
ATT_YEAR_MEASURES = {
    **ATT_MEASURES,
    "suspended": "status = 'suspended'",
    "mourning": "status = 'mourning'",
    "reluctant": "status = 'absent_other' AND sub_reason = 'reluctant'",
    "monday_absent": "absent AND monday",
    "after_break_absent": "absent AND after_break",
}


def window_spans(x: Ctx) -> dict[str, tuple[date | None, date]]:
    w, a = x.w, x.as_of.date
    return {"d30": (w.d30, a), "d60_30": (w.d60, w.d30 or a), "d90": (w.d90, a),
            "ytd": (w.year_start, a), "prev": (w.prev_year_start, w.year_start),
            "lm": (w.lm_start, w.lm_end or a), "pm": (w.pm_start, w.pm_end or a)}


def window_members(x: Ctx, names: list[str]) -> str:
    """SQL ``VALUES`` relation (win, seg): which batch segments make up each window at this
    as-of date. Joining the per-segment sums to it and grouping by window sums each window with
    plain aggregates (one filtered aggregate per window and measure costs far more)."""
    spans = window_spans(x)
    rows = [f"('{n}', {i})" for n in names for i in x.batch.segment_ids(*spans[n])]
    rows = rows or ["('none', -2)"]
    return f"(VALUES {', '.join(rows)}) AS wm(win, seg)"


def batch_attendance_sql(b: Batch) -> str:
    """Attendance summed per (pupil, segment) for a batch: the one scan of the big table."""
    sums = ", ".join(f"CAST(sum(CAST({cond} AS INTEGER)) AS INTEGER) AS {m}"
                     for m, cond in ATT_YEAR_MEASURES.items())
    return f"""
    SELECT pupil_id, seg, CAST(count(*) AS INTEGER) AS days, {sums}
    FROM (
        SELECT k.pupil_id, k.status, k.room, k.sub_reason, {b.seg_case("k.date")} AS seg,
               k.status IN ('absent_sick', 'absent_other') AS absent,
               dayofweek(k.date) = 1 AS monday,
               coalesce(cal.gap > 3 OR (cal.gap > 1 AND dayofweek(k.date) <> 1), false) AS after_break
        FROM staging.attendance_daily k LEFT JOIN _cal_batch cal USING (date)
        WHERE k.date >= {sql_date(b.bounds[0])} AND k.date < {sql_date(b.bounds[-1])}
          AND k.known_date < {b.seg_end_case("k.date")}
    )
    GROUP BY ALL
    """


def _window_joins(names) -> str:
    """One row per pupil from the (pupil, window) sums: a join per window (pivoting with one
    FILTERed aggregate per window and measure is several times slower in DuckDB)."""
    return " ".join(f"LEFT JOIN (SELECT * FROM by_window WHERE win = '{w}') w_{w} "
                    f"ON w_{w}.pupil_id = c.pupil_id" for w in names)


def attendance_block(x: Ctx) -> str:
    windows_measures = {"d30": ATT_MEASURES, "d60_30": {"absent": "absent"}, "d90": ATT_MEASURES,
                        "ytd": ATT_YEAR_MEASURES, "prev": ATT_YEAR_MEASURES,
                        "lm": {"absent": "absent"}, "pm": {"absent": "absent"}}
    members = window_members(x, list(windows_measures))
    inner, outer = [], []
    for w, measures in windows_measures.items():
        inner.append(f"coalesce(w_{w}.days, 0) AS n_{w}_days")
        inner += [f"coalesce(w_{w}.{m}, 0) AS n_{w}_{m}" for m in measures]
        if w in ("d60_30", "lm", "pm"):
            continue  # only used for trends
        outer.append(f"CASE WHEN n_{w}_days > 0 THEN n_{w}_days END AS att_{w}_days")
        outer.append(f"(n_{w}_days = 0) AS att_{w}_missing")
        outer += [f"CASE WHEN n_{w}_days > 0 THEN n_{w}_{m} END AS att_{w}_{m}" for m in measures]
        outer.append(f"CASE WHEN n_{w}_days > 0 THEN n_{w}_absent / n_{w}_days END "
                     f"AS att_{w}_absent_rate")
    outer += [
        "CASE WHEN n_d30_days > 0 AND n_d60_30_days > 0 THEN n_d30_absent - n_d60_30_absent END "
        "AS att_trend_absent_d30",
        "CASE WHEN n_lm_days > 0 AND n_pm_days > 0 "
        "THEN n_lm_absent / n_lm_days - n_pm_absent / n_pm_days END AS att_mom_absent_rate_change",
        "CASE WHEN n_d30_days > 0 THEN coalesce(r.current_streak, 0) END AS att_current_absent_streak",
        "CASE WHEN n_ytd_days > 0 THEN coalesce(r.max_streak, 0) END AS att_ytd_max_absent_streak",
    ]
    a = x.a
    return f"""
    WITH by_window AS (
        SELECT s.pupil_id, wm.win, CAST(sum(s.days) AS INTEGER) AS days,
               {", ".join(f"CAST(sum(s.{m}) AS INTEGER) AS {m}" for m in ATT_YEAR_MEASURES)}
        FROM _att_seg s JOIN {members} USING (seg)
        WHERE s.pupil_id IN (SELECT pupil_id FROM _cohort)
        GROUP BY ALL
    ), agg AS (
        SELECT c.pupil_id, {", ".join(inner)}
        FROM _cohort c {_window_joins(windows_measures)}
    ), cal AS (
        SELECT date, row_number() OVER (ORDER BY date) AS idx
        FROM _cal_batch WHERE known < {a} AND date < {a}
    ), runs AS (
        -- consecutive school days of the city calendar on which the pupil was absent
        SELECT pupil_id, count(*) AS n, max(idx) AS last_idx, max(date) AS last_date
        FROM (SELECT ab.pupil_id, cal.idx, ab.date,
                     cal.idx - row_number() OVER (PARTITION BY ab.pupil_id ORDER BY cal.idx) AS grp
              FROM _att_absent ab JOIN cal USING (date)
              WHERE ab.known_date < {a} AND ab.pupil_id IN (SELECT pupil_id FROM _cohort))
        GROUP BY pupil_id, grp
    ), r AS (
        SELECT pupil_id,
               max(n) FILTER (last_idx = (SELECT max(idx) FROM cal)) AS current_streak,
               max(n) FILTER (last_date >= {sql_date(x.w.year_start)}) AS max_streak
        FROM runs GROUP BY pupil_id
    )
    SELECT agg.pupil_id, {", ".join(outer)}
    FROM agg LEFT JOIN r USING (pupil_id)
    """


def batch_mood_sql(b: Batch) -> str:
    return f"""
    SELECT pupil_id, seg, CAST(count(*) AS INTEGER) AS n, CAST(sum(mood) AS DOUBLE) AS mood_sum,
           CAST(sum(body) AS DOUBLE) AS body_sum, CAST(sum(sleep) AS DOUBLE) AS sleep_sum,
           CAST(sum(CAST(mood <= 2 AS INTEGER)) AS INTEGER) AS bad,
           CAST(sum(CAST(coalesce(want_to_talk, false) AS INTEGER)) AS INTEGER) AS talk
    FROM (SELECT *, {b.seg_case("checkin_date")} AS seg FROM staging.mood_checkin
          WHERE checkin_date >= {sql_date(b.bounds[0])} AND checkin_date < {sql_date(b.bounds[-1])}
            AND known_date < {b.seg_end_case("checkin_date")})
    GROUP BY ALL
    """


def mood_block(x: Ctx) -> str:
    names = ["d30", "d60_30", "d90", "ytd"]
    members = window_members(x, names)
    cov = {w: _b(x.covered("mood_checkin", w)) for w in names}
    inner, outer = [], []
    for w in names:
        inner += [f"coalesce(w_{w}.n, 0) AS n_{w}",
                  f"w_{w}.mood_sum / w_{w}.n AS mood_{w}",
                  f"w_{w}.body_sum / w_{w}.n AS body_{w}",
                  f"w_{w}.sleep_sum / w_{w}.n AS sleep_{w}",
                  f"coalesce(w_{w}.bad, 0) AS bad_{w}",
                  f"coalesce(w_{w}.talk, 0) AS talk_{w}"]
        if w == "d60_30":
            continue
        outer += [f"CASE WHEN {cov[w]} THEN n_{w} END AS mood_{w}_checkins",
                  f"(NOT {cov[w]} OR n_{w} = 0) AS mood_{w}_missing",
                  f"CASE WHEN {cov[w]} AND n_{w} > 0 THEN bad_{w} END AS mood_{w}_bad_days",
                  f"CASE WHEN {cov[w]} AND n_{w} > 0 THEN talk_{w} END AS mood_{w}_want_to_talk"]
        if w in ("d30", "d90"):
            outer += [f"CASE WHEN {cov[w]} THEN mood_{w} END AS mood_{w}_mood_mean"]
        if w == "d30":
            outer += [f"CASE WHEN {cov[w]} THEN body_{w} END AS mood_d30_body_mean",
                      f"CASE WHEN {cov[w]} THEN sleep_{w} END AS mood_d30_sleep_mean"]
    outer += [
        f"CASE WHEN {cov['d30']} AND {cov['d60_30']} THEN mood_d30 - mood_d60_30 END AS mood_trend_d30",
        f"CASE WHEN {cov['d30']} AND n_d30 > 0 THEN coalesce(r.current_streak, 0) END AS mood_current_bad_streak",
        f"CASE WHEN {cov['d30']} AND n_d30 > 0 THEN coalesce(r.max_streak, 0) END AS mood_d30_max_bad_streak",
        f"CASE WHEN {cov['d30']} AND n_d30 > 0 THEN coalesce(r.alerts, 0) END AS mood_d30_bad_streak_alerts",
    ]
    a = x.a
    return f"""
    WITH by_window AS (
        SELECT s.pupil_id, wm.win, CAST(sum(s.n) AS INTEGER) AS n,
               CAST(sum(s.mood_sum) AS DOUBLE) AS mood_sum, CAST(sum(s.body_sum) AS DOUBLE) AS body_sum,
               CAST(sum(s.sleep_sum) AS DOUBLE) AS sleep_sum, CAST(sum(s.bad) AS INTEGER) AS bad,
               CAST(sum(s.talk) AS INTEGER) AS talk
        FROM _mood_seg s JOIN {members} USING (seg)
        WHERE s.pupil_id IN (SELECT pupil_id FROM _cohort)
        GROUP BY ALL
    ), agg AS (
        SELECT c.pupil_id, {", ".join(inner)}
        FROM _cohort c {_window_joins(names)}
    ), cal AS (
        SELECT date, row_number() OVER (ORDER BY date) AS idx
        FROM _cal_batch WHERE known < {a} AND date < {a} AND date >= {_d(x.w.d30)}
    ), m AS (
        SELECT y.pupil_id, y.bad, cal.idx
        FROM _mood_recent y JOIN cal ON cal.date = y.d
        WHERE y.known_date < {a} AND y.pupil_id IN (SELECT pupil_id FROM _cohort)
    ), runs AS (
        -- bad days (mood 雨 or 雷) on consecutive school days within the last 30; a day without
        -- a check-in ends a run. Three in a row is the vendor's alert rule.
        SELECT pupil_id, count(*) AS n, max(idx) AS last_idx
        FROM (SELECT pupil_id, idx, idx - row_number() OVER (PARTITION BY pupil_id ORDER BY idx) AS grp
              FROM m WHERE bad)
        GROUP BY pupil_id, grp
    ), r AS (
        SELECT runs.pupil_id, max(n) AS max_streak, count(*) FILTER (n >= 3) AS alerts,
               max(n) FILTER (runs.last_idx = l.last_idx) AS current_streak
        FROM runs JOIN (SELECT pupil_id, max(idx) AS last_idx FROM m GROUP BY pupil_id) l
          USING (pupil_id)
        GROUP BY runs.pupil_id
    )
    SELECT agg.pupil_id, {", ".join(outer)}
    FROM agg LEFT JOIN r USING (pupil_id)
    """


def event_block(x: Ctx, prefix: str, source: str, spec: dict[str, dict[str, str]],
                extra_cols: str = "", extra_select: str = "", all_history: bool = False) -> str:
    """Counts of events of ``source`` per window; ``spec``: window -> {measure: condition}.

    A count is NULL (with ``<prefix>_<window>_missing``) when the source had not begun by the
    window's start, and for the previous year also when the pupil was not in the city then.
    """
    col, _ = EVENT_SOURCES[source]
    since = "" if all_history else f"AND e.{col} >= {x.lower_bound}"
    inner, outer = [], []
    for w, measures in spec.items():
        pred = x.window(w, f"e.{col}")
        avail = _b(x.covered(source, w))
        if w == "prev":
            avail = f"({avail} AND coalesce(pp.present, false))"
        outer.append(f"NOT {avail} AS {prefix}_{w}_missing")
        for m, cond in measures.items():
            inner.append(f"count(e.{col}) FILTER (({pred}) AND ({cond})) AS n_{w}_{m}")
            outer.append(f"CASE WHEN {avail} THEN n_{w}_{m} END AS {prefix}_{w}_{m}")
    return f"""
    WITH agg AS (
        SELECT c.pupil_id, {", ".join(inner)} {extra_cols}
        FROM _cohort c LEFT JOIN k_{source} e ON e.pupil_id = c.pupil_id {since}
        GROUP BY c.pupil_id
    )
    SELECT agg.pupil_id, {", ".join(outer)} {extra_select}
    FROM agg LEFT JOIN _prev_present pp USING (pupil_id)
    """


def bullying_block(x: Ctx) -> str:
    victim = "e.role = 'victim'"
    return event_block(x, "bul", "bullying_records", {
        "d90": {"victim": victim},
        "ytd": {"victim": victim, "perpetrator": "e.role = 'perpetrator'",
                "victim_exclusion": f"{victim} AND e.forms LIKE '%exclusion%'",
                "victim_violence": f"{victim} AND (e.forms LIKE '%violence%')",
                "victim_online": f"{victim} AND e.forms LIKE '%online%'"},
        "prev": {"victim": victim, "perpetrator": "e.role = 'perpetrator'"},
    })


def counselling_block(x: Ctx) -> str:
    topics = ("non_attendance", "friends", "family", "study", "health", "bullying")
    ytd = {"sessions": "true", **{f"topic_{t}": f"e.topic = '{t}'" for t in topics},
           "by_social_worker": "e.counsellor = 'social_worker'",
           "referred_by_nurse": "e.referred_by = 'nurse'",
           "referred_by_parent": "e.referred_by = 'parent'",
           "self_referred": "e.referred_by = 'self'",
           "linked_agency": "e.linked_agency"}
    return event_block(x, "cns", "counseling_records", {
        "d30": {"sessions": "true"}, "d90": {"sessions": "true"}, "ytd": ytd,
        "prev": {"sessions": "true", "topic_non_attendance": "e.topic = 'non_attendance'"},
    })


def nurse_block(x: Ctx) -> str:
    symptoms = ("headache", "stomach_ache", "unwell", "injury", "fever", "other")
    d90 = {"visits": "true", **{s: f"e.symptom = '{s}'" for s in symptoms},
           "went_home": "e.went_home", "morning": "e.visit_time < '10:00'"}
    rest = f"CAST(sum(e.rest_minutes) FILTER ({x.window('d90', 'e.visit_date')}) AS INTEGER) AS rest_d90"
    avail90 = _b(x.covered("nurse_office_visits", "d90"))
    trend = _b(x.covered("nurse_office_visits", "d60_30"))
    return event_block(
        x, "nrs", "nurse_office_visits",
        {"d30": {"visits": "true"}, "d60_30": {"visits": "true"}, "d90": d90,
         "ytd": {"visits": "true", "went_home": "e.went_home"}, "prev": {"visits": "true"}},
        extra_cols=f", {rest}",
        extra_select=f", CASE WHEN {avail90} THEN coalesce(rest_d90, 0) END AS nrs_d90_rest_minutes"
                     f", CASE WHEN {trend} THEN n_d30_visits - n_d60_30_visits END AS nrs_trend_visits_d30",
    )


RISK_BAND_ORDER = "CASE e.risk_band WHEN 'none' THEN 0 WHEN 'yellow' THEN 1 WHEN 'orange' THEN 2 " \
                  "WHEN 'pink' THEN 3 WHEN 'red' THEN 4 END"


def support_block(x: Ctx) -> str:
    actions = ("monitoring", "home_visit", "sc_interview", "ssw", "support_classroom", "npo_referral")
    ever_avail = _b(x.coverage.get("support_records") is not None)
    return event_block(
        x, "sup", "support_records",
        {"d90": {"decisions": "true"},
         "ytd": {"decisions": "true", **{a: f"e.action = '{a}'" for a in actions}},
         "prev": {"decisions": "true"}},
        # ``outcome`` is never read: the department fills it in later without a date of its own.
        extra_cols=f", arg_max({RISK_BAND_ORDER}, e.decided_on) AS last_band, "
                   f"count(e.decided_on) AS n_ever",
        extra_select=f", CASE WHEN {ever_avail} THEN n_ever END AS sup_ever_decisions"
                     f", last_band AS sup_last_risk_band",
        all_history=True,
    )


def long_absence_block(x: Ctx) -> str:
    """The previous years' long-absence surveys (year Y-1 is known from May 1 of Y)."""
    return f"""
    WITH known_years AS (SELECT DISTINCT school_year FROM k_long_absence_survey),
    s AS (
        SELECT pupil_id, school_year, bool_or(main_reason = 'futoukou') AS futoukou,
               CAST(sum(absent_days) AS INTEGER) AS absent_days,
               CAST(sum(days_futoukou) AS INTEGER) AS days_futoukou
        FROM k_long_absence_survey WHERE pupil_id IN (SELECT pupil_id FROM _cohort) GROUP BY ALL
    ), flags AS (
        SELECT EXISTS (SELECT 1 FROM known_years WHERE school_year = {x.y - 1}) AS prev_known,
               (SELECT count(*) FROM known_years WHERE school_year < {x.y}) AS years_known
    ), hist AS (
        SELECT pupil_id, count(*) AS years_listed, count(*) FILTER (futoukou) AS years_futoukou
        FROM s WHERE school_year < {x.y} GROUP BY pupil_id
    )
    SELECT c.pupil_id,
           NOT flags.prev_known AS la_prev_missing,
           CASE WHEN flags.prev_known THEN p.pupil_id IS NOT NULL END AS la_prev_listed,
           CASE WHEN flags.prev_known THEN coalesce(p.futoukou, false) END AS la_prev_futoukou,
           p.absent_days AS la_prev_absent_days,
           p.days_futoukou AS la_prev_days_futoukou,
           CASE WHEN flags.years_known > 0 THEN coalesce(hist.years_futoukou, 0) END
               AS la_years_futoukou_before,
           CASE WHEN flags.years_known > 0 THEN coalesce(hist.years_listed, 0) END
               AS la_years_listed_before,
           flags.years_known AS la_survey_years_known
    FROM _cohort c CROSS JOIN flags
    LEFT JOIN s p ON p.pupil_id = c.pupil_id AND p.school_year = {x.y - 1}
    LEFT JOIN hist ON hist.pupil_id = c.pupil_id
    """


def latest_block(x: Ctx, prefix: str, records: str, order: str, latest_cols: dict[str, str],
                 change_cols: dict[str, str], date_col: str | None = None,
                 extra: str = "") -> str:
    """The latest known record per pupil (and its change since the one before).

    ``records``: SQL of one row per pupil and occasion (reads ``k_*`` only); ``latest_cols``:
    output name -> expression over the latest row ``l``; ``change_cols``: output name ->
    expression (``l.x - p.x``) over the latest ``l`` and previous ``p`` rows.
    """
    cols = [f"{expr} AS {prefix}_{name}" for name, expr in latest_cols.items()]
    cols += [f"{expr} AS {prefix}_change_{name}" for name, expr in change_cols.items()]
    cols.append(f"l.pupil_id IS NULL AS {prefix}_missing")
    if change_cols:
        cols.append(f"p.pupil_id IS NULL AS {prefix}_change_missing")
    if date_col:
        cols.append(f"{x.a} - l.{date_col} AS {prefix}_days_since")
    return f"""
    WITH r AS (
        SELECT *, row_number() OVER (PARTITION BY pupil_id ORDER BY {order} DESC) AS rn
        FROM ({records}) WHERE pupil_id IN (SELECT pupil_id FROM _cohort)
    )
    SELECT c.pupil_id, {", ".join(cols)} {extra}
    FROM _cohort c
    LEFT JOIN r l ON l.pupil_id = c.pupil_id AND l.rn = 1
    LEFT JOIN r p ON p.pupil_id = c.pupil_id AND p.rn = 2
    """


QU_GROUPS = ("satisfied", "unrecognised", "infringed", "dissatisfied", "needs_support")
QU_SEVERITY = ("CASE \"group\" WHEN 'satisfied' THEN 0 WHEN 'unrecognised' THEN 1 "
               "WHEN 'infringed' THEN 1 WHEN 'dissatisfied' THEN 2 WHEN 'needs_support' THEN 3 END")


def qu_block(x: Ctx) -> str:
    records = f"SELECT *, {QU_SEVERITY} AS severity FROM k_qu_survey"
    latest = {"approval": "l.approval", "infringement": "l.infringement",
              **{f"group_{g}": f"l.\"group\" = '{g}'" for g in QU_GROUPS},
              "group_severity": "l.severity",
              **{f"motivation_{m}": f"l.motivation_{m}"
                 for m in ("friends", "study", "teacher", "class", "career")}}
    change = {"approval": "l.approval - p.approval", "infringement": "l.infringement - p.infringement",
              "group_severity": "l.severity - p.severity"}
    return latest_block(x, "qu", records, "survey_date", latest, change, "survey_date")


def school_life_block(x: Ctx) -> str:
    qs = ("q_friends", "q_teacher", "q_study", "q_safe", "q_enjoy")
    mean = "(" + " + ".join(f"coalesce({q}, 0)" for q in qs) + ") / nullif(" + \
           " + ".join(f"({q} IS NOT NULL)::INT" for q in qs) + ", 0)"
    records = f"SELECT *, {mean} AS mean_score FROM k_school_life_survey"
    latest = {q.removeprefix("q_"): f"l.{q}" for q in qs} | {"mean": "l.mean_score"}
    return latest_block(x, "sls", records, "survey_date", latest,
                        {"mean": "l.mean_score - p.mean_score"}, "survey_date")


def class_understanding_block(x: Ctx) -> str:
    records = ("SELECT pupil_id, survey_date, avg(understanding) AS mean_u, "
               "min(understanding) AS min_u FROM k_class_understanding_survey GROUP BY ALL")
    return latest_block(x, "cus", records, "survey_date",
                        {"mean": "l.mean_u", "min": "l.min_u"},
                        {"mean": "l.mean_u - p.mean_u"}, "survey_date")


VISION = "CASE {c} WHEN 'A' THEN 0 WHEN 'B' THEN 1 WHEN 'C' THEN 2 WHEN 'D' THEN 3 END"


def health_block(x: Ctx) -> str:
    # 肥満度 bands of the school health statistics: やせ ≤ -20, 普通, 軽度 20-30, 中等度 30-50, 高度 ≥ 50.
    band = ("CASE WHEN obesity_index <= -20 THEN -1 WHEN obesity_index < 20 THEN 0 "
            "WHEN obesity_index < 30 THEN 1 WHEN obesity_index < 50 THEN 2 ELSE 3 END")
    vision = f"greatest({VISION.format(c='vision_right')}, {VISION.format(c='vision_left')})"
    records = (f"SELECT *, {band} AS obesity_band, {vision} AS vision_worst "
               "FROM k_health_checkup")
    latest = {"obesity_index": "l.obesity_index", "obesity_band": "l.obesity_band",
              "vision_worst": "l.vision_worst", "caries_untreated": "l.caries = 'untreated'",
              "dmf": "l.dmf"}
    return latest_block(x, "hlth", records, "checkup_date", latest,
                        {"obesity_index": "l.obesity_index - p.obesity_index"}, "checkup_date")


def achievement_block(x: Ctx) -> str:
    records = """
        SELECT pupil_id, school_year,
               avg(level) AS mean_level,
               avg(level) FILTER (subject IN ('japanese', 'math')) AS jm_level,
               any_value(level) FILTER (subject = 'japanese') AS japanese,
               any_value(level) FILTER (subject = 'math') AS math,
               any_value(level) FILTER (subject = 'english') AS english
        FROM k_prefectural_achievement GROUP BY ALL"""
    latest = {"level_mean": "l.mean_level", "level_japanese": "l.japanese",
              "level_math": "l.math", "level_english": "l.english",
              "years_old": f"{x.y} - l.school_year",
              "grade_not_surveyed": "c.grade < 4"}
    # change over japanese and math only: english starts in 中2 and would bias a mean
    return latest_block(x, "ach", records, "school_year", latest,
                        {"level_jm": "l.jm_level - p.jm_level"})


def questionnaire_block(x: Ctx) -> str:
    scales = ("self_esteem", "self_efficacy", "self_control", "diligence", "learning_strategies")
    latest = {s: f"l.{s}" for s in scales} | {"years_old": f"{x.y} - l.school_year",
                                             "grade_not_surveyed": "c.grade < 4"}
    return latest_block(x, "pq", "SELECT * FROM k_prefectural_questionnaire", "school_year",
                        latest, {s: f"l.{s} - p.{s}" for s in scales})


def rst_block(x: Ctx) -> str:
    fields = ("dependency", "anaphora", "paraphrase", "inference", "image_matching", "instantiation")
    records = "SELECT *, (" + " + ".join(fields) + f") / {len(fields)} AS mean_ability FROM k_rst"
    latest = {f: f"l.{f}" for f in fields} | {"mean": "l.mean_ability",
                                             "grade_not_surveyed": "c.grade < 6"}
    return latest_block(x, "rst", records, "test_date", latest, {}, "test_date")


def aigrow_block(x: Ctx) -> str:
    fields = ("collaboration", "problem_setting", "creativity", "flexibility", "empathy",
              "self_management", "psychological_safety", "self_affirmation")
    latest = {f: f"l.{f}" for f in fields} | {"grade_not_surveyed": "c.grade < 7"}
    return latest_block(x, "aig", "SELECT * FROM k_aigrow", "test_date", latest, {}, "test_date")


def infant_block(x: Ctx) -> str:
    concern = "('refer', 'treatment')"
    return f"""
    WITH agg AS (
        SELECT c.pupil_id, count(i.checkup) AS n,
               count(*) FILTER (i.attended) AS attended,
               count(*) FILTER (NOT i.attended) AS missed,
               count(*) FILTER (i.development IN {concern} OR i.language IN {concern}) AS dev_refer,
               count(*) FILTER (i.development = 'observe' OR i.language = 'observe') AS dev_observe,
               count(*) FILTER (i.sight_hearing IN {concern} OR i.dental IN {concern}) AS other_refer,
               count(*) FILTER (i.referred) AS referred
        FROM _cohort c LEFT JOIN k_infant_checkup i ON i.resident_id = c.resident_id
        GROUP BY c.pupil_id
    )
    SELECT pupil_id, (n = 0) AS inf_missing,
           CASE WHEN n > 0 THEN n END AS inf_checkups,
           CASE WHEN n > 0 THEN attended END AS inf_attended,
           CASE WHEN n > 0 THEN missed END AS inf_missed,
           CASE WHEN n > 0 THEN dev_refer END AS inf_development_refer,
           CASE WHEN n > 0 THEN dev_observe END AS inf_development_observe,
           CASE WHEN n > 0 THEN other_refer END AS inf_other_refer,
           CASE WHEN n > 0 THEN referred END AS inf_referred
    FROM agg
    """


def nursery_block(x: Ctx) -> str:
    types = ("licensed", "kodomoen", "unlicensed", "kindergarten")
    onehot = ", ".join(f"CASE WHEN n > 0 THEN last_type = '{t}' END AS nur_last_{t}" for t in types)
    return f"""
    WITH agg AS (
        SELECT c.pupil_id, count(e.enrolled_on) AS n,
               arg_max(e.facility_type, e.enrolled_on) AS last_type,
               sum(datediff('day', e.enrolled_on, least(coalesce(e.left_on, {x.a}), {x.a}))) / 30.44
                   AS months,
               datediff('month', min(e.birth_month), min(e.enrolled_on)) AS first_age_months,
               max(e.base_index) AS base_index, max(e.adjustment_index) AS adjustment_index
        FROM _cohort c LEFT JOIN k_nursery_enrollment e ON e.resident_id = c.resident_id
        GROUP BY c.pupil_id
    )
    SELECT pupil_id, (n = 0) AS nur_missing,
           CASE WHEN n > 0 THEN n END AS nur_stays,
           CASE WHEN n > 0 THEN months END AS nur_months,
           CASE WHEN n > 0 THEN first_age_months END AS nur_first_age_months,
           base_index AS nur_max_base_index,
           adjustment_index AS nur_max_adjustment_index,
           {onehot}
    FROM agg
    """


def school_context_block(x: Ctx) -> str:
    """The school's latest published context ratios (this year's from June 1, else last year's)."""
    ratios = ("school_aid_rate", "child_allowance_rate", "welfare_rate", "special_needs_rate",
              "japanese_support_rate")
    cols = ", ".join(f"s.{r} AS ctx_{r}" for r in ratios)
    return f"""
    WITH s AS (
        SELECT *, row_number() OVER (PARTITION BY school_code ORDER BY school_year DESC) AS rn
        FROM k_school_context WHERE school_year <= {x.y}
    )
    SELECT c.pupil_id, {cols}, s.enrolment AS ctx_enrolment,
           {x.y} - s.school_year AS ctx_years_old, s.school_code IS NULL AS ctx_missing
    FROM _cohort c LEFT JOIN s ON s.school_code = c.school_code AND s.rn = 1
    """


BLOCKS = {
    "registry": registry_block,
    "attendance": attendance_block,
    "long_absence": long_absence_block,
    "bullying": bullying_block,
    "counselling": counselling_block,
    "nurse": nurse_block,
    "support": support_block,
    "mood": mood_block,
    "qu": qu_block,
    "school_life": school_life_block,
    "class_understanding": class_understanding_block,
    "health": health_block,
    "achievement": achievement_block,
    "questionnaire": questionnaire_block,
    "rst": rst_block,
    "aigrow": aigrow_block,
    "infant": infant_block,
    "nursery": nursery_block,
    "school_context": school_context_block,
}

# Which staging sources each block reads (for Dagster deps and the ablation of sources).
BLOCK_SOURCES = {
    "registry": ("pupil_registry",), "attendance": ("attendance_daily",),
    "long_absence": ("long_absence_survey",), "bullying": ("bullying_records",),
    "counselling": ("counseling_records",), "nurse": ("nurse_office_visits",),
    "support": ("support_records",), "mood": ("mood_checkin",), "qu": ("qu_survey",),
    "school_life": ("school_life_survey",), "class_understanding": ("class_understanding_survey",),
    "health": ("health_checkup",), "achievement": ("prefectural_achievement",),
    "questionnaire": ("prefectural_questionnaire",), "rst": ("rst",), "aigrow": ("aigrow",),
    "infant": ("infant_checkup",), "nursery": ("nursery_enrollment",),
    "school_context": ("school_context",),
}
SOURCES_READ = sorted({s for v in BLOCK_SOURCES.values() for s in v})


def derived_columns() -> list[str]:
    """Columns combining blocks, computed in the final select."""
    return ["CASE WHEN NOT mood_d30_missing AND att_d30_days > 0 "
            "THEN least(mood_d30_checkins / att_d30_days, 1.0) END AS mood_d30_response_rate"]


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------

def prepare_batch(con: duckdb.DuckDBPyConnection, as_ofs: list[AsOf]) -> Batch:
    """Calendar, windows and the per-segment sums of the big daily sources for as-of dates of
    one school year (see :class:`Batch`)."""
    years = {a.school_year for a in as_ofs}
    if len(years) != 1:
        raise ValueError(f"a batch holds one school year, got {sorted(years)}")
    as_ofs = sorted(as_ofs)
    first, last = as_ofs[0], as_ofs[-1]
    lo = first.prev_year_start
    # School days and the date each became known; ``gap`` = calendar days since the previous one.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _cal_batch AS
        SELECT date, known, date - lag(date) OVER (ORDER BY date) AS gap
        FROM (SELECT date, min(known_date) AS known FROM staging.attendance_daily
              WHERE date >= {sql_date(lo - timedelta(days=60))} AND date < {sql_date(last.date)}
              GROUP BY date)
    """)
    wins = {a.date: windows(con, a, "_cal_batch") for a in as_ofs}
    bounds = {lo, first.year_start, last.date}
    for a in as_ofs:
        w = wins[a.date]
        bounds |= {d for d in (a.date, w.d30, w.d60, w.d90, w.lm_start, w.lm_end, w.pm_start,
                               w.pm_end) if d is not None}
    b = Batch(as_ofs, sorted(d for d in bounds if lo <= d <= last.date), wins, period_knowledge(con))
    con.execute(f"CREATE OR REPLACE TEMP TABLE _att_seg AS {batch_attendance_sql(b)}")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _att_absent AS
        SELECT pupil_id, date, known_date FROM staging.attendance_daily
        WHERE status IN ('absent_sick', 'absent_other')
          AND date >= {sql_date(lo)} AND date < {sql_date(last.date)}
    """)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _mood_seg AS {batch_mood_sql(b)}")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _mood_recent AS
        SELECT pupil_id, checkin_date AS d, mood <= 2 AS bad, known_date FROM staging.mood_checkin
        WHERE checkin_date >= {sql_date(min(w.d30 or last.date for w in wins.values()))}
          AND checkin_date < {sql_date(last.date)}
    """)
    return b


def prepare(con: duckdb.DuckDBPyConnection, as_of: AsOf, batch: Batch) -> Ctx:
    """Known views, the enrolled pupils and cohort for one as-of date of a prepared batch."""
    create_known_views(con, as_of.date)
    ytd = batch.segments_in(as_of.year_start, as_of.date)
    build_enrolled(con, as_of, nonillness=f"SELECT pupil_id, CAST(sum(absent_other) AS INTEGER) AS n "
                                          f"FROM _att_seg WHERE {ytd} GROUP BY pupil_id")
    con.execute("CREATE OR REPLACE TEMP TABLE _cohort AS SELECT * FROM _enrolled WHERE in_cohort")
    prev = batch.segments_in(as_of.prev_year_start, as_of.year_start)
    con.execute("CREATE OR REPLACE TEMP TABLE _prev_present AS "
                f"SELECT DISTINCT pupil_id, true AS present FROM _att_seg WHERE {prev} AND days > 0")
    return Ctx(as_of, batch.windows[as_of.date], batch, coverage_at(batch.periods, as_of.date))


def feature_sql(con: duckdb.DuckDBPyConnection, x: Ctx) -> str:
    """Materialise every block as a temp table; return the final SELECT joining them."""
    joins = []
    for name, block in BLOCKS.items():
        con.execute(f"CREATE OR REPLACE TEMP TABLE _f_{name} AS {block(x)}")
        joins.append(f"LEFT JOIN _f_{name} USING (pupil_id)")
    ids = ", ".join(f"c.{c}" for c in ID_COLUMNS)
    cols = ", ".join(f"_f_{name}.* EXCLUDE (pupil_id)" for name in BLOCKS)
    return f"""
    SELECT *, {", ".join(derived_columns())} FROM (
        SELECT {ids}, {cols}
        FROM _cohort c {" ".join(joins)}
    )"""


def compute(con: duckdb.DuckDBPyConnection, as_of: AsOf, batch: Batch | None = None,
            into: str = "_features") -> Ctx:
    """Compute the feature rows of one as-of date into temp table ``into``."""
    batch = batch or prepare_batch(con, [as_of])
    x = prepare(con, as_of, batch)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {into} AS {feature_sql(con, x)}")
    return x


def features_frame(con: duckdb.DuckDBPyConnection, as_of: AsOf):
    """The feature rows of one as-of date as a DataFrame (small warehouses and tests)."""
    compute(con, as_of)
    return con.execute("SELECT * FROM _features ORDER BY pupil_id").df()


def batches(as_ofs: list[AsOf]) -> list[list[AsOf]]:
    """As-of dates grouped by school year, oldest first."""
    by_year: dict[int, list[AsOf]] = {}
    for a in sorted(as_ofs):
        by_year.setdefault(a.school_year, []).append(a)
    return [by_year[y] for y in sorted(by_year)]


def _schema(con, relation: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.execute(f"DESCRIBE {relation}").fetchall()]


@dataclass
class BuildReport:
    as_of_dates: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    deleted_stale: list[str] = field(default_factory=list)
    columns: int = 0
    table_recreated: bool = False
    seconds: float = 0.0
    unchanged: list[str] = field(default_factory=list)  # as-of dates whose inputs had not changed


def build_features(con: duckdb.DuckDBPyConnection, as_ofs: list[AsOf], *,
                   stale: list[date] = (), table: str = FEATURES_TABLE, log=None,
                   fingerprints: dict[date, str] | None = None) -> BuildReport:
    """Delete-then-insert the rows of ``table`` for each as-of date.

    ``fingerprints`` (``ml.inputs.features_fingerprints``): what each date's rows are built
    from; a date whose rows were built from the same is left as it is (``report.unchanged``).

    Each as-of date is replaced in its own short transaction once its feature blocks are
    computed (in temp tables, outside any transaction: a transaction spanning a whole range would
    keep every replaced temp table alive until it ends and grow without bound); the join of the
    blocks is inserted in that transaction. A run that fails part-way
    leaves each as-of date either old or new, never mixed; Dagster marks the run failed and a
    re-run completes it.

    The table's DDL follows the feature SQL: if the columns changed since it was created, the
    table is recreated (rows of other as-of dates go; the report says so, rebuild them).
    """
    started = time.perf_counter()
    report = BuildReport()
    schema = table.split(".")[0]
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    if stale and _exists(con, table):
        with maybe_transaction(con):
            for d in stale:
                con.execute(f"DELETE FROM {table} WHERE as_of_date = ?", [d])
            inputs.forget(con, table, stale)
    report.deleted_stale = [d.isoformat() for d in stale]
    same = inputs.unchanged(con, table, fingerprints) if fingerprints else set()
    report.unchanged = sorted(d.isoformat() for d in same)
    with wal_autocheckpoint(con, BUILD_WAL_AUTOCHECKPOINT):
        _build_dates(con, [a for a in as_ofs if a.date not in same], table, report, log, fingerprints)
    drop_temp(con)
    if _exists(con, table):
        report.columns = len(_schema(con, table))
    report.seconds = time.perf_counter() - started
    return report


# DuckDB checkpoints when its write-ahead log passes ``wal_autocheckpoint`` (16 MiB by default).
# One as-of date of the default city is ~20 MB in the log, so a full build checkpointed after
# nearly every date; with 256 MB, every ~12 dates (20 dates of the default city written one by
# one: 17.3 s CPU with the default, 10.6 s with a threshold above them, last checkpoint included).
# Not more: rows not yet checkpointed are held by DuckDB's buffer manager.
BUILD_WAL_AUTOCHECKPOINT = "256MB"


class wal_autocheckpoint:
    """Set DuckDB's ``wal_autocheckpoint`` for a bulk write; the previous value is restored
    after (it is a setting of the database instance, not of the connection)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, size: str):
        self.con, self.size = con, size

    def __enter__(self):
        self.before = self.con.execute("SELECT current_setting('wal_autocheckpoint')").fetchone()[0]
        self.con.execute(f"SET wal_autocheckpoint = '{self.size}'")
        return self.con

    def __exit__(self, *exc):
        self.con.execute(f"SET wal_autocheckpoint = '{self.before}'")
        return False


def _build_dates(con, as_ofs: list[AsOf], table: str, report: BuildReport, log, fingerprints) -> None:
    """Compute and replace the rows of each as-of date (one school year's batch at a time)."""
    for group in batches(as_ofs):
        t0 = time.perf_counter()
        batch = prepare_batch(con, group)
        if log:
            log(f"pupil_features {group[0].school_year}: {len(group)} as-of dates, daily "
                f"sources summed in {time.perf_counter() - t0:.1f}s")
        for a in group:
            t0 = time.perf_counter()
            # the blocks in temp tables, outside the transaction; their join goes straight into
            # the table (a temp table of all ~280 columns first cost more than the join itself)
            rows = f"({feature_sql(con, prepare(con, a, batch))})"
            t1 = time.perf_counter()
            with maybe_transaction(con):
                if not _exists(con, table) or _schema(con, table) != _schema(con, rows):
                    report.table_recreated = report.table_recreated or _exists(con, table)
                    con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {rows} LIMIT 0")
                    inputs.forget(con, table)
                con.execute(f"DELETE FROM {table} WHERE as_of_date = ?", [a.date])
                n = con.execute(f"INSERT INTO {table} SELECT * FROM {rows}").fetchone()[0]
                if fingerprints:
                    inputs.remember(con, table, a.date, fingerprints[a.date])
            report.as_of_dates.append(a.date.isoformat())
            report.rows[a.date.isoformat()] = n
            if log:
                log(f"pupil_features {a.date} ({a.kind}): {n} rows in "
                    f"{time.perf_counter() - t0:.1f}s (join and write {time.perf_counter() - t1:.1f}s)")


def drop_temp(con: duckdb.DuckDBPyConnection) -> None:
    """Drop this module's temp tables (they hold a school year of sums; free them)."""
    for (name,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE temporary AND table_name LIKE '\\_%' ESCAPE '\\'"
    ).fetchall():
        con.execute(f'DROP TABLE IF EXISTS temp."{name}"')


def _exists(con, table: str) -> bool:
    schema, name = table.split(".")
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, name]).fetchall()[0][0])


def feature_columns(con: duckdb.DuckDBPyConnection, table: str = FEATURES_TABLE) -> list[str]:
    """The model inputs: every column but the identifiers."""
    return [c for c, _ in _schema(con, table) if c not in ID_COLUMNS]
