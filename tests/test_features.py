"""The integrated pupil table, cohort and labels on a tiny hand-written city (tests/tiny_city.py).

* hand-computed feature values for every source;
* the cohort leaves a pupil on the day after the 30th non-illness absence, not before;
* labels only for completed years;
* the leakage property: records known on or after the as-of date — inserted, altered, deleted,
  or a field filled in later — change nothing at that date; a record known the day before does.
"""

from __future__ import annotations

import math
from datetime import date, timedelta

import duckdb
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ml import asof, features, labels
from ml.asof import AsOf
from tests import tiny_city
from toda_platform.city import load_city

CATALOGUE = load_city("toda").specs  # Toda's specs: what each source means and how Toda writes it


@pytest.fixture(scope="module")
def city():
    con = duckdb.connect()
    tiny_city.build(con)
    yield con
    con.close()


@pytest.fixture
def fresh():
    """A tiny city of its own, for tests that write marts tables (they commit)."""
    con = duckdb.connect()
    tiny_city.build(con)
    yield con
    con.close()


def frame(con, d: date, kind: str = "month_start"):
    return features.features_frame(con, AsOf(d, kind)).set_index("pupil_id")


def check(row, expected: dict) -> None:
    for col, want in expected.items():
        got = row[col]
        if want is None:
            assert got is None or (isinstance(got, float) and math.isnan(got)) or str(got) in ("<NA>", "NaT"), \
                f"{col}: expected NULL, got {got!r}"
        elif isinstance(want, float):
            assert got == pytest.approx(want, abs=1e-6), f"{col}: expected {want}, got {got!r}"
        else:
            assert got == want, f"{col}: expected {want!r}, got {got!r}"


# ---------------------------------------------------------------------------------------------
# Hand-computed values
# ---------------------------------------------------------------------------------------------

def test_as_of_dates_are_first_school_days_may_to_march_and_the_day_after_the_latest(city):
    dates = asof.as_of_dates(city)
    starts = [a.date for a in dates if a.kind == asof.MONTH_START]
    assert starts == [date(2023, 5, 1), date(2023, 6, 1), date(2023, 7, 3), date(2023, 9, 1),
                      date(2023, 10, 2), date(2023, 11, 1), date(2023, 12, 1), date(2024, 1, 9),
                      date(2024, 2, 1), date(2024, 3, 1), date(2024, 5, 1), date(2024, 6, 3),
                      date(2024, 7, 1), date(2024, 9, 2), date(2024, 10, 1), date(2024, 11, 1),
                      date(2024, 12, 2)]
    assert [a for a in dates if a.kind == asof.LATEST] == [AsOf(date(2024, 12, 21), asof.LATEST)]


def test_features_of_every_source_at_2024_07_01(city):
    f = frame(city, date(2024, 7, 1))
    # p4 met the definition on 2024-05-22: a known case, not in the cohort
    assert sorted(f.index) == ["p1", "p2", "p3", "p5"]
    p1 = f.loc["p1"]
    # School days before 2024-07-01: 57 this year (from 4/8), 198 in 2023. The last 30 school
    # days start on 5/20, the 30 before on 3/19, the last 90 on 2/2.
    check(p1, {
        "school_code": tiny_city.B1, "grade": 5, "school_year": 2024, "as_of_kind": "month_start",
        "reg_female": True, "reg_age_months": 133, "reg_transferred_in_this_year": False,
        "reg_in_city_prev_year": True, "reg_schools_this_year": 1,
        # attendance: 5/7 other (after Golden Week, 登校しぶり), 5/8 sick, 5/13 other (Mon),
        # 6/5 late, 6/17 other (Mon, 登校しぶり), 6/18 other, 6/20 nurse's room; 2023: 11/6 sick
        # (Mon after the 11/3 holiday), 2/13 other (Tue after the 2/12 holiday)
        "att_ytd_days": 57, "att_ytd_absent": 5, "att_ytd_absent_sick": 1, "att_ytd_absent_other": 4,
        "att_ytd_late": 1, "att_ytd_nurse_room": 1, "att_ytd_separate_room": 0,
        "att_ytd_reluctant": 2, "att_ytd_monday_absent": 2, "att_ytd_after_break_absent": 1,
        "att_ytd_suspended": 0, "att_ytd_absent_rate": 5 / 57,
        "att_d30_days": 30, "att_d30_absent": 2, "att_d30_absent_other": 2, "att_d30_late": 1,
        "att_d90_days": 90, "att_d90_absent": 6,
        "att_prev_days": 198, "att_prev_absent": 2, "att_prev_monday_absent": 1,
        "att_prev_after_break_absent": 2, "att_prev_missing": False,
        "att_trend_absent_d30": 2 - 3,  # 5/20-6/28: 6/17, 6/18; 3/19-5/17: 5/7, 5/8, 5/13
        "att_mom_absent_rate_change": 2 / 20 - 3 / 21,  # June 2 of 20 days, May 3 of 21
        "att_current_absent_streak": 0, "att_ytd_max_absent_streak": 2,
        # 2023 survey (known 2024-05-01): p1 not listed
        "la_prev_missing": False, "la_prev_listed": False, "la_prev_futoukou": False,
        # bullying: victim 6/10 (known 6/24); 6/20 is known only on 7/4
        "bul_d90_victim": 1, "bul_ytd_victim": 1, "bul_ytd_victim_exclusion": 1,
        "bul_ytd_victim_online": 0, "bul_prev_victim": 0, "bul_ytd_perpetrator": 0,
        # counselling 6/21 (friends, referred by the nurse); 7/1 is the as-of day itself
        "cns_d30_sessions": 1, "cns_ytd_sessions": 1, "cns_ytd_topic_friends": 1,
        "cns_ytd_topic_family": 0, "cns_ytd_referred_by_nurse": 1, "cns_prev_sessions": 1,
        # nurse: 6/20 headache 10:30 (30 min), 6/24 stomach ache 9:15 went home (45 min)
        "nrs_d30_visits": 2, "nrs_d90_visits": 2, "nrs_d90_headache": 1, "nrs_d90_stomach_ache": 1,
        "nrs_d90_went_home": 1, "nrs_d90_morning": 1, "nrs_d90_rest_minutes": 75,
        "nrs_ytd_visits": 2, "nrs_prev_visits": 1, "nrs_trend_visits_d30": 2,
        # support: 6/25 home visit, band pink; the outcome is never read
        "sup_ytd_decisions": 1, "sup_ytd_home_visit": 1, "sup_last_risk_band": 3,
        "sup_ever_decisions": 1,
        # mood: 20 June check-ins, mood 3 except 6/19-21 雷 (1) and 6/26 雨 (2); check-ins begin
        # in April 2024, so the 90-day window (from 2/2) has no mood data
        "mood_d30_checkins": 20, "mood_d30_bad_days": 4, "mood_d30_want_to_talk": 1,
        "mood_d30_mood_mean": (16 * 3 + 1 + 1 + 1 + 2) / 20, "mood_d30_body_mean": 2.0,
        "mood_d30_sleep_mean": 3.0, "mood_d30_missing": False, "mood_d30_response_rate": 20 / 30,
        "mood_d90_missing": True, "mood_d90_mood_mean": None, "mood_trend_d30": None,
        "mood_d30_max_bad_streak": 3, "mood_d30_bad_streak_alerts": 1, "mood_current_bad_streak": 0,
        # Q-U 6/5 (known 6/26) against 2023-11-08
        "qu_approval": 25, "qu_infringement": 35, "qu_group_needs_support": True,
        "qu_group_satisfied": False, "qu_group_severity": 3, "qu_change_approval": -15,
        "qu_change_infringement": 20, "qu_change_group_severity": 3, "qu_days_since": 26,
        "qu_missing": False,
        # school-life survey 6/10: 2, 3, 2, blank, 1 -> mean of four = 2.0; before: all 4
        "sls_friends": 2, "sls_safe": None, "sls_mean": 2.0, "sls_change_mean": -2.0,
        "cus_mean": 2.0, "cus_min": 1, "cus_change_mean": -2.0,
        # health 5/10: 肥満度 30.5 (中等度 band 2), vision A/C -> worst C = 2, untreated caries
        "hlth_obesity_index": 30.5, "hlth_obesity_band": 2, "hlth_vision_worst": 2,
        "hlth_caries_untreated": True, "hlth_dmf": 2, "hlth_change_obesity_index": 5.5,
        # 県学調 2024 is returned on 7/15: the latest known is 2023 (国語 6, 算数 5)
        "ach_level_mean": 5.5, "ach_level_japanese": 6, "ach_level_math": 5,
        "ach_level_english": None, "ach_years_old": 1, "ach_missing": False,
        "ach_change_missing": True, "ach_change_level_jm": None, "ach_grade_not_surveyed": False,
        "pq_self_esteem": 3.0, "pq_years_old": 1,
        "rst_missing": True, "rst_grade_not_surveyed": True,
        "aig_missing": True, "aig_grade_not_surveyed": True,
        # infant checkups: 4m attended, 18m attended (development: observe), 3y missed
        "inf_missing": False, "inf_checkups": 3, "inf_attended": 2, "inf_missed": 1,
        "inf_development_observe": 1, "inf_development_refer": 0,
        # nursery: licensed 2014-04-01 .. 2020-03-31, entered at 10 months
        "nur_missing": False, "nur_stays": 1, "nur_months": 2191 / 30.44,
        "nur_first_age_months": 10, "nur_max_base_index": 80, "nur_max_adjustment_index": 5,
        "nur_last_licensed": True, "nur_last_kindergarten": False,
        # B1's 2024 ratios are published 6/1
        "ctx_school_aid_rate": 12.5, "ctx_years_old": 0, "ctx_missing": False,
    })
    p2 = f.loc["p2"]
    check(p2, {
        "grade": 8, "reg_junior_high": True,
        # RST 5/20 known 6/19; AiGROW 2024-06-03 known only 7/3, so 2023's (55) is the latest
        "rst_mean": 0.5, "rst_missing": False, "rst_days_since": 42,
        "aig_collaboration": 55.0, "aig_missing": False,
        # Q-U 6/12 is known 7/3: none yet; no mood check-ins although the source runs
        "qu_missing": True, "qu_approval": None,
        "mood_d30_checkins": 0, "mood_d30_missing": True, "mood_d30_mood_mean": None,
        "bul_prev_perpetrator": 1, "nrs_prev_visits": 1, "inf_missing": True, "nur_missing": True,
        "ctx_school_aid_rate": 20.0, "ctx_years_old": 1,  # C1 has only 2023's ratios
        "ach_missing": True,  # 2024 results (known 7/15) are its first
    })
    p3 = f.loc["p3"]
    check(p3, {
        "reg_transferred_in_this_year": True, "reg_in_city_prev_year": False,
        "att_d30_days": 15, "att_ytd_days": 15,  # from 6/10
        "att_prev_missing": True, "att_prev_days": None, "att_prev_absent": None,
        "bul_prev_missing": True, "bul_prev_victim": None,  # not in the city last year
        "ach_grade_not_surveyed": True, "ach_missing": True, "pq_grade_not_surveyed": True,
    })
    p5 = f.loc["p5"]
    check(p5, {"la_prev_listed": True, "la_prev_futoukou": True, "la_prev_absent_days": 80,
               "la_prev_days_futoukou": 70, "la_years_futoukou_before": 1,
               "bul_ytd_perpetrator": 1, "sup_prev_decisions": 1, "sup_last_risk_band": 4})


def test_results_returned_in_july_appear_in_september(city):
    p1 = frame(city, date(2024, 9, 2)).loc["p1"]
    check(p1, {"ach_level_mean": 4.0, "ach_years_old": 0, "ach_change_level_jm": 4.0 - 5.5,
               "ach_change_missing": False, "pq_self_esteem": 2.0, "pq_change_self_esteem": -1.0,
               # the first school day after the summer break: windows count school days
               "att_d30_days": 30, "att_d30_absent": 2, "att_d30_missing": False,
               "bul_ytd_victim": 2, "bul_ytd_victim_online": 1})
    p2 = frame(city, date(2024, 9, 2)).loc["p2"]
    check(p2, {"aig_collaboration": 41.0, "qu_approval": 38, "qu_missing": False,
               "ach_level_english": 7, "ach_level_mean": 8.0})


def test_current_absence_streak_and_the_previous_years_survey_known_from_may_2(city):
    check(frame(city, date(2024, 6, 19)).loc["p1"], {"att_current_absent_streak": 2})
    # the 2023 survey is known from 2024-05-01: not at 5/1 itself
    may1 = frame(city, date(2024, 5, 1))
    check(may1.loc["p5"], {"la_prev_missing": True, "la_prev_futoukou": None})
    check(may1.loc["p1"], {"ctx_school_aid_rate": 10.0, "ctx_years_old": 1})  # 2024's: from 6/1
    check(frame(city, date(2024, 5, 2)).loc["p5"], {"la_prev_missing": False, "la_prev_futoukou": True})


# ---------------------------------------------------------------------------------------------
# Cohort and labels
# ---------------------------------------------------------------------------------------------

def _enrolled(con, d: date):
    asof.create_known_views(con, d)
    labels.build_enrolled(con, AsOf(d, "month_start"))
    return {r[0]: r[1:] for r in con.execute(
        "SELECT pupil_id, in_cohort, known_case, nonillness_absent_days FROM _enrolled").fetchall()}


def test_cohort_excludes_a_pupil_the_day_after_the_30th_non_illness_absence(city):
    # p4 is absent (not ill) on the first 30 school days of 2024; the 30th is 2024-05-22
    assert _enrolled(city, date(2024, 5, 22))["p4"] == (True, False, 29)
    assert "p4" in frame(city, date(2024, 5, 22)).index
    assert _enrolled(city, date(2024, 5, 23))["p4"] == (False, True, 30)
    assert "p4" not in frame(city, date(2024, 5, 23)).index
    # illness does not count: p1's absent_sick day is not in its count
    assert _enrolled(city, date(2024, 7, 1))["p1"] == (True, False, 4)


def test_cohort_follows_transfers_as_the_city_knew_them(city):
    # p3 transfers in on 6/10: known that day, so enrolled from 6/11
    assert "p3" not in _enrolled(city, date(2024, 6, 10))
    assert "p3" in _enrolled(city, date(2024, 6, 11))
    # p2 transfers out on 10/15: still enrolled that day, gone the day after
    assert "p2" in _enrolled(city, date(2024, 10, 15))
    assert "p2" not in _enrolled(city, date(2024, 10, 16))


def test_labels_exist_only_for_completed_years(fresh):
    dates = asof.as_of_dates(fresh)
    labels.build_labels(fresh, dates)
    rows = fresh.execute("SELECT pupil_id, as_of_date, school_year, in_cohort, known_case, label, "
                         "label_available, futoukou_prev_year, survey_main_reason, "
                         "date_30th_nonillness_absence FROM marts.labels").df()
    y23, y24 = rows[rows.school_year == 2023], rows[rows.school_year == 2024]
    assert y23.label_available.all() and not y24.label_available.any()
    assert y24.label.isna().all() and y24.survey_main_reason.isna().all()
    assert set(y23[y23.label == True].pupil_id) == {"p5"}  # noqa: E712 - counted 不登校 in 2023
    assert (y23[y23.pupil_id != "p5"].survey_main_reason == "not_listed").all()
    assert (y24[y24.pupil_id == "p5"].futoukou_prev_year == True).all()  # noqa: E712
    assert (y24[y24.pupil_id == "p1"].futoukou_prev_year == False).all()  # noqa: E712
    assert y23.futoukou_prev_year.isna().all()  # no 2022 survey
    p4 = y24[y24.pupil_id == "p4"].set_index("as_of_date")
    assert bool(p4.loc[pd.Timestamp(2024, 5, 1), "in_cohort"])
    assert bool(p4.loc[pd.Timestamp(2024, 6, 3), "known_case"])
    assert (p4.date_30th_nonillness_absence == pd.Timestamp(2024, 5, 22)).all()


def test_labels_from_the_absent_other_table_equal_those_from_the_known_views(fresh):
    """build_labels reads the absent_other rows once (with the knowledge-date rule itself): the
    same rows as the known attendance view and the staging table give, date by date."""
    dates = asof.as_of_dates(fresh)
    labels.build_labels(fresh, dates)
    got = fresh.execute("SELECT * FROM marts.labels ORDER BY as_of_date, pupil_id").df()
    staging = ("(SELECT pupil_id, date, known_date FROM staging.attendance_daily "
               "WHERE status = 'absent_other')")
    want = []
    for a in dates:
        asof.create_known_views(fresh, a.date)
        labels.build_enrolled(fresh, a)  # nonillness from k_attendance_daily
        available = [labels._survey_available(fresh, y) for y in (a.school_year, a.school_year - 1)]
        want.append(fresh.execute(labels._label_sql(a, *available, staging)).df())
    want = pd.concat(want).sort_values(["as_of_date", "pupil_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got[want.columns], want, check_dtype=False)
    assert got.known_case.any() and got.nonillness_absent_days.max() >= 30


def test_feature_rows_are_the_labels_cohort_and_a_year_batch_equals_single_dates(fresh):
    """The feature builder counts the cohort's absences from its per-segment sums, the labels
    from the known views: both must agree, and a batch of a whole year must give the same rows as
    each as-of date computed alone."""
    dates = [a for a in asof.as_of_dates(fresh) if a.school_year == 2024]
    labels.build_labels(fresh, dates)
    features.build_features(fresh, dates)
    if True:
        mismatch = fresh.execute("""
            SELECT count(*) FROM (
                (SELECT pupil_id, as_of_date FROM marts.pupil_features
                 EXCEPT SELECT pupil_id, as_of_date FROM marts.labels WHERE in_cohort)
                UNION ALL
                (SELECT pupil_id, as_of_date FROM marts.labels WHERE in_cohort
                 EXCEPT SELECT pupil_id, as_of_date FROM marts.pupil_features))""").fetchall()[0][0]
        assert mismatch == 0
        assert fresh.execute("SELECT count(DISTINCT as_of_date) FROM marts.pupil_features").fetchall()[0][0] == len(dates)
        for a in (dates[0], dates[3], dates[-1]):
            features.compute(fresh, a)  # alone: a batch of one
            diff = fresh.execute(
                "SELECT count(*) FROM ((SELECT * FROM _features EXCEPT ALL "
                "SELECT * FROM marts.pupil_features WHERE as_of_date = ?) UNION ALL "
                "(SELECT * FROM marts.pupil_features WHERE as_of_date = ? EXCEPT ALL "
                "SELECT * FROM _features))", [a.date, a.date]).fetchall()[0][0]
            assert diff == 0, a


def test_rebuilding_replaces_rows_and_keeps_one_latest(fresh):
    city = fresh
    dates = asof.as_of_dates(city)
    if True:
        features.build_features(city, dates[-3:])
        # a stale "latest" from an earlier run, and a rebuild of the same dates: no duplicates
        city.execute("UPDATE marts.pupil_features SET as_of_date = DATE '2024-12-10' "
                     "WHERE as_of_kind = 'latest'")
        keys = [a.month_key for a in dates[-3:]]
        stale = asof.stale_as_of_dates(city, "marts.pupil_features", dates[-2:], keys[-2:],
                                       keys[0], keys[-1])
        assert stale == [date(2024, 12, 10)]
        features.build_features(city, dates[-2:], stale=stale)
        got = city.execute("SELECT as_of_date, as_of_kind, count(*), count(DISTINCT pupil_id) "
                           "FROM marts.pupil_features GROUP BY ALL ORDER BY 1").fetchall()
    assert [(d, k) for d, k, _, _ in got] == [(date(2024, 11, 1), "month_start"),
                                              (date(2024, 12, 2), "month_start"),
                                              (date(2024, 12, 21), "latest")]
    assert all(n == m for _, _, n, m in got)


def test_a_build_raises_the_checkpoint_threshold_and_restores_it_even_after_a_failure(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    setting = "SELECT current_setting('wal_autocheckpoint')"
    con.execute("SET wal_autocheckpoint = '8MiB'")
    before = con.execute(setting).fetchone()[0]
    with pytest.raises(RuntimeError):
        with features.wal_autocheckpoint(con, features.BUILD_WAL_AUTOCHECKPOINT):
            assert con.execute(setting).fetchone()[0] not in (before, "16.0 MiB")
            raise RuntimeError("a failed as-of date")
    assert con.execute(setting).fetchone()[0] == before
    tiny_city.build(con)
    features.build_features(con, asof.as_of_dates(con)[-2:])
    assert con.execute(setting).fetchone()[0] == before
    assert con.execute("SELECT count(DISTINCT as_of_date) FROM marts.pupil_features").fetchone()[0] == 2
    con.close()


# ---------------------------------------------------------------------------------------------
# Leakage: the property test
# ---------------------------------------------------------------------------------------------

# How to move a record's knowledge date: the column its rule reads, a date or a school year.
MOVE = {
    "attendance_daily": "date", "mood_checkin": "checkin_date", "nurse_office_visits": "visit_date",
    "bullying_records": "recognised_on", "counseling_records": "session_date",
    "support_records": "decided_on", "school_life_survey": "survey_date", "qu_survey": "survey_date",
    "class_understanding_survey": "survey_date", "health_checkup": "checkup_date",
    "rst": "test_date", "aigrow": "test_date", "infant_checkup": "checkup_date",
    "nursery_enrollment": "left_on", "pupil_registry": "enrolled_on",
    "prefectural_achievement": "school_year", "prefectural_questionnaire": "school_year",
    "long_absence_survey": "school_year", "school_context": "school_year",
}
PUPILS = ("p1", "p2", "p3", "p4", "p5")
# Fields a department fills in later without a date of their own: never read by the features.
LATE_FIELDS = {
    "pupil_registry": "left_on = {future}",  # a transfer-out date is known once it has passed
    "support_records": "outcome = 'worse'",
    "bullying_records": "resolved = 'resolved'",
}


def _count(con, sql, params=()) -> int:
    return con.execute(sql, list(params)).fetchall()[0][0]


def _differs(con, a: str, b: str, where: str = "true") -> int:
    """Rows that differ between two feature tables (every column, NULL-safe)."""
    return _count(con, f"SELECT count(*) FROM ((SELECT * FROM {a} WHERE {where} EXCEPT ALL "
                       f"SELECT * FROM {b} WHERE {where}) UNION ALL (SELECT * FROM {b} WHERE {where} "
                       f"EXCEPT ALL SELECT * FROM {a} WHERE {where}))")


def _shift_to(con, source: str, where: str, target: date) -> None:
    """Move the record(s) selected by ``where`` so that the catalogue's rule gives them
    ``known_date == target`` (for a school-year rule: the first year known on or after it)."""
    col = MOVE[source]
    table = f"staging.{source}"
    known = _count(con, f"SELECT min(known_date) FROM {table} WHERE {where}")
    if col == "school_year":
        years = 0
        while date(known.year + years, known.month, known.day) < target:
            years += 1
        con.execute(f"UPDATE {table} SET school_year = school_year + {years} WHERE {where}")
    else:
        con.execute(f"UPDATE {table} SET {col} = coalesce({col}, known_date) + {(target - known).days} "
                    f"WHERE {where}")
    con.execute(f"UPDATE {table} SET known_date = ({CATALOGUE[source].known_from})::DATE WHERE {where}")


def _alter_sql(source: str, pupil: str) -> str:
    """SET clause changing every value column of a record; dates and years only move later, so a
    record known on or after the as-of date stays so."""
    sets = []
    for c in CATALOGUE[source].staged_columns:
        name = f'"{c.staged_name}"'
        if c.staged_name == "pupil_id":
            sets.append(f"pupil_id = '{pupil}'")
        elif c.staged_name == "resident_id":
            sets.append(f"resident_id = 'r{pupil[1:]}'")
        elif c.kind in ("date", "timestamp_date", "month", "school_year"):
            sets.append(f"{name} = {name} + 1")
        elif c.kind in ("int", "grade") or c.sql_type == "INTEGER":
            sets.append(f"{name} = {name} + 1")
        elif c.kind == "float":
            sets.append(f"{name} = {name} + 0.5")
        elif c.kind == "bool":
            sets.append(f"{name} = NOT {name}")
        elif c.kind == "category" and c.values:
            codes = sorted({str(v) for v in c.values.values()})
            sets.append(f"{name} = CASE WHEN {name} = '{codes[0]}' THEN '{codes[-1]}' ELSE '{codes[0]}' END")
    return ", ".join(sets)


def _insert_future_copy(con, source: str, rowid: int, pupil: str, known: date) -> None:
    """A copy of a record, given to ``pupil`` and moved to be known on ``known``."""
    table = f"staging.{source}"
    cols = {c.staged_name for c in CATALOGUE[source].staged_columns}
    owner = "pupil_id" if "pupil_id" in cols else "resident_id" if "resident_id" in cols else None
    value = f"'{pupil}'" if owner == "pupil_id" else f"'r{pupil[1:]}'"
    replace = f"{value} AS {owner}, " if owner else ""
    con.execute(f"INSERT INTO {table} SELECT * REPLACE ({replace}'mutation' AS _file_sha256) "
                f"FROM {table} WHERE rowid = ?", [rowid])
    _shift_to(con, source, "_file_sha256 = 'mutation'", known)
    con.execute(f"UPDATE {table} SET _file_sha256 = 'mutated' WHERE _file_sha256 = 'mutation'")


def _alter_future(con, source: str, as_of: date, pupil: str) -> None:
    table = f"staging.{source}"
    future = f"known_date >= DATE '{as_of}'"
    con.execute(f"UPDATE {table} SET {_alter_sql(source, pupil)}, _file_sha256 = 'altered' WHERE {future}")
    con.execute(f"UPDATE {table} SET known_date = ({CATALOGUE[source].known_from})::DATE "
                "WHERE _file_sha256 = 'altered'")
    assert _count(con, f"SELECT coalesce(min(known_date), DATE '9999-12-31') FROM {table} "
                       "WHERE _file_sha256 = 'altered'") >= as_of


def _fill_late_fields(con, source: str, as_of: date, later: int) -> None:
    if source in LATE_FIELDS:
        future = f"DATE '{as_of + timedelta(days=later)}'"
        con.execute(f"UPDATE staging.{source} SET {LATE_FIELDS[source].format(future=future)} "
                    "WHERE known_date < ?", [as_of])


SWEEP_DATES = (date(2024, 7, 1),)  # mid-year: every source has records on both sides of it


@pytest.fixture(scope="module")
def snapshots(city):
    """Feature rows at the sweep dates, computed once (outside any transaction)."""
    for i, d in enumerate(SWEEP_DATES):
        features.compute(city, AsOf(d, "month_start"), into=f"_snap{i}")
    return {d: f"_snap{i}" for i, d in enumerate(SWEEP_DATES)}


@pytest.mark.parametrize("source", sorted(MOVE))
def test_future_records_of_every_source_change_nothing(city, snapshots, source):
    """Every source, systematically: at each sweep date, a copy of one of its records given to
    every pupil and known on or after the date, every record known on or after it altered in
    every column, and the fields filled in later changed — and not one cell moves."""
    con = city
    table = f"staging.{source}"
    rowids = [r[0] for r in con.execute(f"SELECT rowid FROM {table} ORDER BY rowid").fetchall()]
    for as_of, snap in snapshots.items():
        con.execute("BEGIN")
        try:
            for i, pupil in enumerate(PUPILS):
                _insert_future_copy(con, source, rowids[i % len(rowids)], pupil, as_of + timedelta(days=i))
            _alter_future(con, source, as_of, "p1")
            _fill_late_fields(con, source, as_of, 0)
            features.compute(con, AsOf(as_of, "month_start"))
            assert _differs(con, "_features", snap) == 0, f"{source} known on/after {as_of} leaked"
        finally:
            con.execute("ROLLBACK")


AS_OF_DATES = st.one_of(
    st.sampled_from([date(2023, 6, 1), date(2023, 11, 1), date(2024, 5, 1), date(2024, 5, 23),
                     date(2024, 7, 1), date(2024, 9, 2), date(2024, 12, 21)]),
    st.dates(min_value=date(2023, 5, 1), max_value=date(2024, 12, 25)),
)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(source=st.sampled_from(sorted(MOVE)), as_of=AS_OF_DATES,
       mutation=st.sampled_from(["insert", "alter", "delete", "late_field"]),
       pick=st.integers(min_value=0, max_value=10_000), pupil=st.sampled_from(PUPILS),
       later=st.integers(min_value=0, max_value=40), kind=st.sampled_from(["month_start", "latest"]))
def test_records_known_on_or_after_a_random_as_of_date_change_nothing(city, source, as_of, mutation,
                                                                      pick, pupil, later, kind):
    """Hypothesis picks the source, the as-of date (any day), the mutation and its details."""
    con = city
    table = f"staging.{source}"
    features.compute(con, AsOf(as_of, kind), into="_snap")
    con.execute("BEGIN")
    try:
        if mutation == "insert":
            rowids = [r[0] for r in con.execute(f"SELECT rowid FROM {table} ORDER BY rowid").fetchall()]
            _insert_future_copy(con, source, rowids[pick % len(rowids)], pupil,
                                as_of + timedelta(days=later))
        elif mutation == "alter":
            assume(_count(con, f"SELECT count(*) FROM {table} WHERE known_date >= ?", [as_of]))
            _alter_future(con, source, as_of, pupil)
        elif mutation == "delete":
            assume(_count(con, f"SELECT count(*) FROM {table} WHERE known_date >= ?", [as_of]))
            con.execute(f"DELETE FROM {table} WHERE known_date >= ?", [as_of])
        else:
            assume(source in LATE_FIELDS)
            _fill_late_fields(con, source, as_of, later)
        features.compute(con, AsOf(as_of, kind))
        assert _differs(con, "_features", "_snap") == 0, f"{mutation} in {source} changed rows at {as_of}"
    finally:
        con.execute("ROLLBACK")


# The converse: one record of a pupil in the cohort, moved to be known the day before the as-of
# date, changes that pupil's row (compared with the record removed).
CONVERSE = {  # source -> (pupil whose records are used, a fixed as-of date for school-year rules)
    **{s: ("p1", None) for s in MOVE},
    "rst": ("p2", None), "aigrow": ("p2", None),
    "long_absence_survey": ("p5", date(2024, 5, 2)),
    "prefectural_achievement": ("p1", date(2024, 7, 16)),
    "prefectural_questionnaire": ("p1", date(2024, 7, 16)),
    "school_context": ("p1", date(2024, 6, 2)),
}


@pytest.mark.parametrize("source", sorted(CONVERSE))
@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck))
@given(pick=st.integers(min_value=0, max_value=10_000),
       as_of=st.dates(min_value=date(2024, 5, 2), max_value=date(2024, 10, 15)))
def test_a_record_known_the_day_before_changes_the_row(city, source, pick, as_of):
    """For every source, hypothesis picks which of the pupil's records and the as-of date."""
    con = city
    pupil, fixed = CONVERSE[source]
    as_of = fixed or as_of
    table = f"staging.{source}"
    if source == "school_context":
        where = f"school_code = '{tiny_city.B1}' AND school_year = 2024"
    elif source in ("infant_checkup", "nursery_enrollment"):
        where = f"resident_id = 'r{pupil[1:]}'"
    elif fixed:
        year = as_of.year - (1 if source == "long_absence_survey" else 0)
        where = f"pupil_id = '{pupil}' AND school_year = {year}"
    elif source == "pupil_registry":
        where = f"pupil_id = '{pupil}' AND school_year = 2024"
    else:
        where = f"pupil_id = '{pupil}'"
    con.execute("BEGIN")
    try:
        rowids = [r[0] for r in con.execute(f"SELECT rowid FROM {table} WHERE {where} ORDER BY rowid").fetchall()]
        assert rowids, source
        rowid = rowids[pick % len(rowids)]
        if not fixed:
            _shift_to(con, source, f"rowid = {rowid}", as_of - timedelta(days=1))
        assert _count(con, f"SELECT known_date FROM {table} WHERE rowid = ?", [rowid]) == as_of - timedelta(days=1)
        features.compute(con, AsOf(as_of, "month_start"), into="_with")
        assert _count(con, "SELECT count(*) FROM _with WHERE pupil_id = ?", [pupil]) == 1, \
            "the pupil must be in the cohort for the converse to mean anything"
        con.execute(f"DELETE FROM {table} WHERE rowid = ?", [rowid])
        features.compute(con, AsOf(as_of, "month_start"))
        changed = _differs(con, "_features", "_with", where=f"pupil_id = '{pupil}'")
    finally:
        con.execute("ROLLBACK")
    assert changed, f"a {source} record known on {as_of - timedelta(days=1)} changed nothing at {as_of}"
