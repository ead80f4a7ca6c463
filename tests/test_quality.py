"""quality/: GX suites from the catalogue, domain rules, whole-table checks and Data Docs.

Frames are built by hand with the columns ``_typed`` has (the staged columns, ``_line``,
``known_date``, ``_period``); every test asserts which check fails, its severity, column, the
line numbers from ``_line``, the sample values and that the message names the file, the line,
the column and its Japanese header.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from quality import (
    ERROR, WARN, FileContext, build_suite, check_file, check_table, export_date, file_context, read_typed,
    render_data_docs, validate_file, validate_table,
)
from quality.rules import VOLUME_BAND, row_rules
from toda_platform.city import load_city
from toda_platform.ingest import ensure_base_schema, table_columns

CATALOGUE = load_city("toda").specs  # Toda's specs: what each source means and how Toda writes it

ELEM = "B211222400015"
ELEM2 = "B211222400023"
JH = "C211222400017"
SCHOOLS = {ELEM, ELEM2, JH}
P1, P2, P3, P4 = "a1b2c3d4e5f60001", "a1b2c3d4e5f60002", "a1b2c3d4e5f60003", "a1b2c3d4e5f60004"
STRANGER = "ffffffffffff0bad"
REGISTRY_2024 = {P1, P2, P3, P4}

# Defaults per source: a clean row in staged (canonical) values; tests override what they break.
DEFAULTS = {
    "attendance_daily": dict(date="2024-05-07", school_code=ELEM, pupil_id=P1, status="present",
                             room=None, sub_reason=None),
    "qu_survey": dict(survey_date="2024-06-12", school_code=ELEM, pupil_id=P1, grade=5, class_name="1",
                      round=1, approval=40, infringement=15, group="satisfied", motivation_friends=10,
                      motivation_study=9, motivation_teacher=10, motivation_class=11, motivation_career=None),
    "health_checkup": dict(checkup_date="2024-05-14", school_code=ELEM, pupil_id=P1, grade=3, sex="M",
                           height_cm=130.0, weight_kg=30.0, obesity_index=7.0, vision_right="A",
                           vision_left="B", caries="none", dmf=0),
    "pupil_registry": dict(school_year=2024, pupil_id=P1, resident_id="9f8e7d6c5b4a0001",
                           birth_month="2016-05-01", sex="F", school_code=ELEM, grade=2, class_name="1",
                           enrolled_on=None, left_on=None),
    "nurse_office_visits": dict(visit_date="2024-05-08", visit_time="10:15", school_code=ELEM, pupil_id=P1,
                                grade=4, symptom="headache", temperature=36.6, rest_minutes=20,
                                went_home=False),
    "bullying_records": dict(incident_id="R6-001", recognised_on="2024-06-03", school_code=ELEM, pupil_id=P1,
                             grade=4, role="victim", forms="exclusion;teasing", found_by="survey",
                             resolved="ongoing"),
    "infant_checkup": dict(resident_id="9f8e7d6c5b4a0001", birth_month="2016-05-01", checkup="3y",
                           checkup_date="2019-06-10", attended=True, development="none", language="observe",
                           sight_hearing="none", dental="none", referred=False),
    "prefectural_achievement": dict(school_year=2024, survey_date="2024-04-18", school_code=ELEM, pupil_id=P1,
                                    grade=4, subject="math", level=6, scale_score=512.5),
    "teacher_overtime": dict(month="2024-05-01", school_code=ELEM, teachers=30, mean_overtime_hours=41.5,
                             over_45h_rate=35.0, over_80h_count=2),
    "school_master": dict(school_code=ELEM, school_name="第一小学校", school_type="elementary", district="北"),
}
PUPILS = [P1, P2, P3, P4]


def typed(key: str, *rows: dict, lines: list[int] | None = None) -> pd.DataFrame:
    """A frame shaped like ``_typed`` for the source: defaults overridden per row."""
    spec = CATALOGUE[key]
    records = []
    for i, overrides in enumerate(rows):
        record = dict(DEFAULTS[key])
        if "pupil_id" in record and "pupil_id" not in overrides:
            record["pupil_id"] = PUPILS[i % len(PUPILS)]
        record.update(overrides)
        records.append(record)
    df = pd.DataFrame(records, columns=[c.staged_name for c in spec.staged_columns])
    for col in spec.staged_columns:
        if col.kind in ("date", "timestamp_date", "month"):
            df[col.staged_name] = pd.to_datetime(df[col.staged_name])
    df["_line"] = lines or list(range(2, len(rows) + 2))
    first_date = next((c.staged_name for c in spec.staged_columns if c.kind in ("date", "month")), None)
    df["known_date"] = df[first_date] if first_date else pd.Timestamp("2024-06-01")
    df["_period"] = "p"
    return df


def context(file_name: str, **kw) -> FileContext:
    base = dict(headers={}, exported_on=dt.date(2025, 3, 31), known_pupils={2024: set(REGISTRY_2024)},
                known_residents={"9f8e7d6c5b4a0001"}, known_schools=set(SCHOOLS), previous_volumes=[])
    base.update(kw)
    return FileContext(file_name, **base)


def only(failures, check):
    found = [f for f in failures if f.check == check]
    assert len(found) == 1, f"expected one {check} failure, got {failures}"
    return found[0]


def assert_names(message: str, file: str, lines: list[int], column: str, header: str) -> None:
    assert message.startswith(file), message
    shown = ", ".join(map(str, lines))
    assert f"line{'s' if len(lines) > 1 else ''} {shown}" in message, message
    assert f"column {column}" in message or column in message, message
    assert f"'{header}'" in message, message


# ---------------------------------------------------------------------------------------------
# Suites from the catalogue
# ---------------------------------------------------------------------------------------------

def test_suite_is_generated_from_the_spec_and_cached():
    spec = CATALOGUE["attendance_daily"]
    suite = build_suite(spec)
    assert build_suite(spec) is suite  # built once per process
    by_type: dict[str, list] = {}
    for e in suite.expectations:
        by_type.setdefault(e.expectation_type, []).append(e)
    in_set = {e.column: set(e.value_set) for e in by_type["expect_column_values_to_be_in_set"]}
    assert in_set["status"] == set(spec.column("status").values.values())  # canonical codes
    assert in_set["room"] == {"nurse_room", "separate_room"}
    assert [e.column_list for e in by_type["expect_compound_columns_to_be_unique"]] == [["pupil_id", "date"]]
    not_null = {e.column for e in by_type["expect_column_values_to_not_be_null"]}
    assert not_null == {"date", "school_code", "pupil_id", "status"}  # room, sub_reason are nullable
    assert len(by_type["expect_table_row_count_to_be_between"]) == 1  # monthly file: volume band
    checks = {e.meta["check"] for e in suite.expectations}
    assert {"no_weekend", "known_pupil", "known_school", "not_after_export", "date_plausible"} <= checks

    qu = build_suite(CATALOGUE["qu_survey"])
    ranges = {e.column: (e.min_value, e.max_value) for e in qu.expectations
              if e.expectation_type == "expect_column_values_to_be_between" and e.meta["check"] == "range"}
    assert ranges["approval"] == (10, 50) and ranges["infringement"] == (10, 50)
    assert ranges["grade"] == (1, 9)
    assert "qu_group_consistent" in {e.meta["check"] for e in qu.expectations}


def test_rules_follow_the_shape_of_each_spec():
    checks = {key: {r.check for r in row_rules(spec)} for key, spec in CATALOGUE.items()}
    assert "known_pupil" not in checks["pupil_registry"]  # the registry is the reference
    assert "known_school" not in checks["school_master"]
    assert checks["infant_checkup"] == {"known_resident"} and checks["nursery_enrollment"] == {"known_resident"}
    assert {"known_pupil", "known_school", "date_in_school_year"} <= checks["prefectural_achievement"]
    assert checks["pupil_registry"] >= {"known_school", "date_in_school_year"}
    assert checks["teacher_survey"] == {"known_school"}
    assert "no_weekend" in checks["attendance_daily"]
    assert "obesity_consistent" in checks["health_checkup"]
    assert [VOLUME_BAND.applies(CATALOGUE[k]) for k in ("attendance_daily", "qu_survey", "pupil_registry")] \
        == [True, True, False]


@pytest.mark.parametrize("key, rows", [
    ("attendance_daily", [{}, {}, {"status": "absent_sick", "sub_reason": "fever"}, {"room": "nurse_room"}]),
    ("qu_survey", [{}, {"approval": 30, "infringement": 15, "group": "unrecognised"},
                   {"approval": 45, "infringement": 25, "group": "infringed"},
                   {"approval": 20, "infringement": 35, "group": "needs_support"}]),
    ("health_checkup", [{}, {"sex": "F", "grade": 8, "height_cm": 155.0, "weight_kg": 45.0, "obesity_index": -3.7}]),
    ("pupil_registry", [{}, {"enrolled_on": "2024-09-02"}, {"left_on": "2025-01-10"}]),
    ("nurse_office_visits", [{}, {"went_home": True, "temperature": None}]),
    ("bullying_records", [{}, {"forms": "online"}]),
    ("infant_checkup", [{}]),
    ("prefectural_achievement", [{}, {"subject": "japanese"}]),
    ("teacher_overtime", [{}, {"school_code": ELEM2}]),
    ("school_master", [{}, {"school_code": JH, "school_type": "junior_high"}]),
])
def test_clean_files_produce_no_failures(key, rows):
    spec = CATALOGUE[key]
    result = check_file(spec, typed(key, *rows), context(f"{key}.csv"))
    assert result.failures == [] and result.passed
    assert result.expectations == len(build_suite(spec).expectations)
    assert result.skipped == []


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------

def test_height_of_three_metres_is_out_of_range():
    df = typed("health_checkup", {}, {"height_cm": 300.0}, {})
    failures = validate_file(CATALOGUE["health_checkup"], df,
                             context("健康診断_2024.csv", headers={"height_cm": "身長"}))
    f = only(failures, "range")
    assert (f.severity, f.column, f.expectation) == (ERROR, "height_cm", "expect_column_values_to_be_between")
    assert f.lines == [3] and f.sample_values == [300.0] and f.unexpected_count == 1
    assert_names(f.message, "健康診断_2024.csv", [3], "height_cm", "身長")
    assert "1 value outside 90–200 cm, e.g. 300.0" in f.message
    assert [x.check for x in failures] == ["range"]  # the absurd height is not blamed on 肥満度 too


def test_negative_number_is_out_of_range():
    df = typed("nurse_office_visits", {}, {}, {"rest_minutes": -5}, lines=[5, 9, 12])
    f = only(validate_file(CATALOGUE["nurse_office_visits"], df,
                           context("保健室来室_2024-05.csv", headers={"rest_minutes": "休養時間"})), "range")
    assert (f.severity, f.column, f.lines, f.sample_values) == (ERROR, "rest_minutes", [12], [-5])
    assert_names(f.message, "保健室来室_2024-05.csv", [12], "rest_minutes", "休養時間")
    assert "outside 0–60 min" in f.message and "negative" in f.message and "e.g. -5" in f.message


def test_qu_score_out_of_scale():
    df = typed("qu_survey", {}, {"approval": 55, "group": "infringed"}, {"infringement": 9})
    failures = validate_file(CATALOGUE["qu_survey"], df,
                             context("QU_2024-1.csv", headers={"approval": "承認得点", "infringement": "被侵害得点"}))
    by_column = {f.column: f for f in failures if f.check == "range"}
    assert set(by_column) == {"approval", "infringement"}
    a, i = by_column["approval"], by_column["infringement"]
    assert (a.lines, a.sample_values, a.severity) == ([3], [55], ERROR)
    assert (i.lines, i.sample_values) == ([4], [9])
    assert_names(a.message, "QU_2024-1.csv", [3], "approval", "承認得点")
    assert "outside 10–50" in a.message and "e.g. 55" in a.message
    assert_names(i.message, "QU_2024-1.csv", [4], "infringement", "被侵害得点")
    assert not [f for f in failures if f.check == "qu_group_consistent"]  # out-of-scale rows: range only


def test_qu_group_inconsistent_with_scores():
    df = typed("qu_survey",
               {},  # 40/15 satisfied: fine
               {"approval": 40, "infringement": 30, "group": "satisfied"},  # high/high is infringed
               {"approval": 20, "infringement": 35, "group": "needs_support"},  # allowed for dissatisfied
               {"approval": 30, "infringement": 25, "group": "needs_support"},  # not severe enough
               lines=[2, 3, 4, 5])
    f = only(validate_file(CATALOGUE["qu_survey"], df, context("QU_2024-1.csv", headers={"group": "判定群"})),
             "qu_group_consistent")
    assert (f.severity, f.expectation, f.column, f.unexpected_count, f.lines) == (ERROR, "custom", "group", 2, [3, 5])
    assert f.sample_values == ["approval 40, infringement 30, group 'satisfied' (expected 'infringed')",
                               "approval 30, infringement 25, group 'needs_support' (expected 'dissatisfied')"]
    assert_names(f.message, "QU_2024-1.csv", [3, 5], "group", "判定群")
    assert "承認得点 ≥ 36" in f.message and "被侵害得点 ≥ 21" in f.message


def test_obesity_index_inconsistent_with_height_weight_sex_and_age():
    # 小3 boy, 130 cm, 30 kg: 標準体重 28.2 kg (age 8) or 27.9 kg (age 9) -> 肥満度 about +7
    df = typed("health_checkup", {}, {"obesity_index": 30.0}, {"sex": "F", "obesity_index": 9.5},
               lines=[2, 3, 4])
    f = only(validate_file(CATALOGUE["health_checkup"], df,
                           context("健康診断_2024.csv", headers={"obesity_index": "肥満度"})), "obesity_consistent")
    assert (f.severity, f.expectation, f.column, f.lines) == (ERROR, "custom", "obesity_index", [3])
    assert f.sample_values == ["height_cm 130, weight_kg 30, sex M, grade 3: obesity_index 30, expected 6.5 to 7.4"]
    assert_names(f.message, "健康診断_2024.csv", [3], "obesity_index", "肥満度")
    assert "標準体重 = a × 身長 − b" in f.message and "学年 + 5 or 学年 + 6" in f.message


def test_value_outside_allowed_set():
    df = typed("attendance_daily", {}, {"status": "holiday"}, {})
    f = only(validate_file(CATALOGUE["attendance_daily"], df,
                           context("出欠_2024-05.csv", headers={"status": "出欠区分"})), "allowed_values")
    assert (f.severity, f.column, f.expectation) == (ERROR, "status", "expect_column_values_to_be_in_set")
    assert (f.lines, f.sample_values) == ([3], ["holiday"])
    assert_names(f.message, "出欠_2024-05.csv", [3], "status", "出欠区分")
    assert "not among the allowed codes" in f.message and "present" in f.message


def test_multi_value_cell_outside_allowed_set():
    df = typed("bullying_records", {}, {"forms": "teasing;rumours"})
    f = only(validate_file(CATALOGUE["bullying_records"], df, context("いじめ認知_2024.csv")), "allowed_values")
    assert (f.column, f.lines, f.sample_values, f.expectation) == \
        ("forms", [3], ["teasing;rumours"], "expect_column_values_to_match_regex")
    assert_names(f.message, "いじめ認知_2024.csv", [3], "forms", "態様")  # catalogue header as fallback


def test_duplicated_key():
    df = typed("attendance_daily", {"pupil_id": P1}, {"pupil_id": P2}, {"pupil_id": P1}, lines=[2, 3, 7])
    f = only(validate_file(CATALOGUE["attendance_daily"], df,
                           context("出欠_2024-05.csv", headers={"pupil_id": "児童生徒番号", "date": "日付"})),
             "unique_key")
    assert (f.severity, f.column, f.expectation) == (ERROR, "pupil_id, date", "expect_compound_columns_to_be_unique")
    assert (f.unexpected_count, f.lines) == (2, [2, 7])
    assert f.sample_values == [] and P1 not in f.message  # lines, not pseudonyms, say where
    assert f.message.startswith("出欠_2024-05.csv, lines 2, 7, columns pupil_id, date (headers '児童生徒番号', '日付')")


def test_blank_required_value_and_wrong_type():
    df = typed("health_checkup", {"sex": None}, {"dmf": 2.5})
    failures = validate_file(CATALOGUE["health_checkup"], df, context("健康診断_2024.csv", headers={"sex": "性別"}))
    blank = only(failures, "not_null")
    assert (blank.column, blank.lines, blank.severity) == ("sex", [2], ERROR)
    assert_names(blank.message, "健康診断_2024.csv", [2], "sex", "性別")
    wrong = only(failures, "type")
    assert (wrong.column, wrong.lines, wrong.sample_values) == ("dmf", [3], [2.5])
    assert "not a whole number" in wrong.message and "'DMF歯数'" in wrong.message


def test_missing_column_is_reported_once():
    df = typed("attendance_daily", {}, {}).drop(columns=["status"])
    failures = validate_file(CATALOGUE["attendance_daily"], df, context("出欠_2024-05.csv"))
    f = only(failures, "required_columns")
    assert (f.column, f.sample_values, f.severity, f.lines) == ("status", ["status"], ERROR, [1])
    assert "status (header '出欠')" in f.message and f.message.startswith("出欠_2024-05.csv, line 1")
    assert len(failures) == 1  # not also "could not evaluate" for every expectation on status


# ---------------------------------------------------------------------------------------------
# References: registry and school master
# ---------------------------------------------------------------------------------------------

def test_unknown_pupil():
    df = typed("attendance_daily", {}, {"pupil_id": STRANGER}, {"pupil_id": STRANGER, "date": "2024-05-08"},
               lines=[2, 40, 41])
    f = only(validate_file(CATALOGUE["attendance_daily"], df,
                           context("出欠_2024-05.csv", headers={"pupil_id": "学籍番号"})), "known_pupil")
    assert (f.severity, f.expectation, f.column, f.unexpected_count) == (ERROR, "custom", "pupil_id", 2)
    assert (f.lines, f.sample_values) == ([40, 41], []) and STRANGER not in f.message
    assert_names(f.message, "出欠_2024-05.csv", [40, 41], "pupil_id", "学籍番号")
    assert "2 rows for 1 pupil not in the 学齢簿 (pupil_registry) of school year 2024" in f.message
    assert STRANGER not in f.message


def test_pupil_known_only_in_another_year_is_unknown():
    # P1 is on the 2023 roll only; the row is dated in school year 2024
    ctx = context("出欠_2024-05.csv", known_pupils={2023: {P1}, 2024: {P2}})
    f = only(validate_file(CATALOGUE["attendance_daily"], typed("attendance_daily", {"pupil_id": P1}), ctx),
             "known_pupil")
    assert f.sample_values == [] and f.lines == [2]


def test_registry_not_loaded_skips_the_pupil_check_and_says_so():
    df = typed("attendance_daily", {"pupil_id": STRANGER})
    result = check_file(CATALOGUE["attendance_daily"], df, context("出欠_2024-05.csv", known_pupils=None))
    assert result.failures == []
    assert any("known_pupil" in s and "not loaded" in s for s in result.skipped)
    # a registry without the file's year: recorded as a warning, the file still applies
    result = check_file(CATALOGUE["attendance_daily"], typed("attendance_daily", {"date": "2025-04-08"}),
                        context("出欠_2025-04.csv", known_pupils={2024: set(REGISTRY_2024)},
                                exported_on=dt.date(2025, 5, 1)))
    f = only(result.failures, "known_pupil")
    assert (f.severity, f.lines, result.passed) == (WARN, [2], True)
    assert "no 学齢簿 (pupil_registry) of school year 2025 is loaded" in f.message


def test_unknown_resident_is_a_warning():
    df = typed("infant_checkup", {}, {"resident_id": "0000000000000bad"})
    result = check_file(CATALOGUE["infant_checkup"], df, context("乳幼児健診_2019.csv", headers={"resident_id": "宛名番号"}))
    f = only(result.failures, "known_resident")
    assert (f.severity, f.column, f.lines, f.sample_values) == (WARN, "resident_id", [3], [])
    assert_names(f.message, "乳幼児健診_2019.csv", [3], "resident_id", "宛名番号")
    assert result.passed  # warnings do not block


def test_unknown_school():
    df = typed("qu_survey", {}, {"school_code": "B219999999999"})
    f = only(validate_file(CATALOGUE["qu_survey"], df, context("QU_2024-1.csv", headers={"school_code": "学校番号"})),
             "known_school")
    assert (f.severity, f.column, f.lines, f.sample_values) == (ERROR, "school_code", [3], ["B219999999999"])
    assert_names(f.message, "QU_2024-1.csv", [3], "school_code", "学校番号")
    assert "not in the school master (学校一覧)" in f.message


# ---------------------------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------------------------

def test_date_after_export_date():
    df = typed("attendance_daily", {"date": "2024-05-08"}, {"date": "2024-05-10"})
    f = only(validate_file(CATALOGUE["attendance_daily"], df,
                           context("出欠_2024-05.csv", headers={"date": "出欠日"}, exported_on=dt.date(2024, 5, 9))),
             "not_after_export")
    assert (f.severity, f.column, f.lines, f.sample_values) == (ERROR, "date", [3], ["2024-05-10"])
    assert_names(f.message, "出欠_2024-05.csv", [3], "date", "出欠日")
    assert "after the file's export date 2024-05-09" in f.message
    # the same day as the export is fine; no export date known: nothing to compare with
    assert validate_file(CATALOGUE["attendance_daily"], df,
                         context("出欠_2024-05.csv", exported_on=dt.date(2024, 5, 10))) == []
    assert validate_file(CATALOGUE["attendance_daily"], df, context("出欠_2024-05.csv", exported_on=None)) == []


def test_date_outside_the_school_year():
    df = typed("prefectural_achievement", {}, {"survey_date": "2025-04-17"})
    f = only(validate_file(CATALOGUE["prefectural_achievement"], df,
                           context("県学調_学力_2024.csv", headers={"survey_date": "実施日"})), "date_in_school_year")
    assert (f.severity, f.column, f.lines, f.sample_values) == (ERROR, "survey_date", [3], ["2025-04-17"])
    assert_names(f.message, "県学調_学力_2024.csv", [3], "survey_date", "実施日")
    assert "2024: 2024-04-01 – 2025-03-31" in f.message


def test_implausible_date_from_a_wrong_era():
    # H6.5.7 typed for R6.5.7 reads as 1994
    df = typed("attendance_daily", {}, {"date": "1994-05-09"})
    failures = validate_file(CATALOGUE["attendance_daily"], df, context("出欠_2024-05.csv", headers={"date": "日付"}))
    f = only(failures, "date_plausible")
    assert (f.column, f.lines, f.sample_values) == ("date", [3], ["1994-05-09"])
    assert_names(f.message, "出欠_2024-05.csv", [3], "date", "日付")


def test_weekend_attendance_is_a_warning():
    df = typed("attendance_daily", {}, {"date": "2024-05-11"})  # a Saturday
    result = check_file(CATALOGUE["attendance_daily"], df, context("出欠_2024-05.csv", headers={"date": "日付"}))
    f = only(result.failures, "no_weekend")
    assert (f.severity, f.lines, f.sample_values) == (WARN, [3], ["2024-05-11 (Sat)"])
    assert_names(f.message, "出欠_2024-05.csv", [3], "date", "日付")
    assert result.passed


# ---------------------------------------------------------------------------------------------
# Volume
# ---------------------------------------------------------------------------------------------

def _attendance_rows(n: int) -> pd.DataFrame:
    pupils = [f"{i:016x}" for i in range(n)]
    return typed("attendance_daily", *({"pupil_id": p} for p in pupils)), set(pupils)


def test_volume_is_compared_per_record_date_so_a_short_month_passes():
    """Previous months: 20 rows per school day. The current month so far has 3 school days."""
    days = ["2026-11-02", "2026-11-04", "2026-11-05"]
    pupils = [f"{i:016x}" for i in range(20)]
    df = typed("attendance_daily", *({"pupil_id": p, "date": d} for d in days for p in pupils))
    ctx = context("出欠_2026-11.csv", known_pupils={2026: set(pupils)}, previous_volumes=[20.0] * 6,
                  exported_on=dt.date(2026, 11, 6))
    assert [f for f in validate_file(CATALOGUE["attendance_daily"], df, ctx) if f.check == "volume_band"] == []
    # one day with a tenth of the pupils is a truncated export, however short the month
    cut = typed("attendance_daily", *({"pupil_id": p, "date": "2026-11-02"} for p in pupils[:2]))
    assert [f.check for f in validate_file(CATALOGUE["attendance_daily"], cut, ctx)] == ["volume_band"]


def test_ten_times_the_usual_volume_fails_and_a_normal_month_passes():
    spike, pupils = _attendance_rows(200)
    ctx = context("出欠_2024-06.csv", known_pupils={2024: pupils}, previous_volumes=[20, 22, 18, 21, 19, 20, 20])
    f = only(validate_file(CATALOGUE["attendance_daily"], spike, ctx), "volume_band")
    assert (f.severity, f.expectation, f.column) == (ERROR, "expect_table_row_count_to_be_between", None)
    assert (f.unexpected_count, f.sample_values, f.lines) == (200, [200], [])
    assert f.message.startswith("出欠_2024-06.csv: 200 rows, more than 60")
    assert "10.0× the median (20 for as many record dates) of the previous 6 files" in f.message

    normal, pupils = _attendance_rows(24)
    assert validate_file(CATALOGUE["attendance_daily"], normal,
                         context("出欠_2024-06.csv", known_pupils={2024: pupils},
                                 previous_volumes=[20, 22, 18, 21, 19, 20])) == []
    small, pupils = _attendance_rows(5)
    f = only(validate_file(CATALOGUE["attendance_daily"], small,
                           context("出欠_2024-06.csv", known_pupils={2024: pupils}, previous_volumes=[20, 20])),
             "volume_band")
    assert "5 rows, less than 7" in f.message
    # fewer than two earlier files: no band yet
    assert validate_file(CATALOGUE["attendance_daily"], spike,
                         context("出欠_2024-06.csv", known_pupils={2024: set(spike.pupil_id)},
                                 previous_volumes=[20])) == []


# ---------------------------------------------------------------------------------------------
# Plumbing: DuckDB frames, reasons, Data Docs
# ---------------------------------------------------------------------------------------------

def test_frame_read_from_duckdb_keeps_original_line_numbers():
    con = duckdb.connect()
    df = typed("attendance_daily", {}, {"status": "holiday"}, {}, lines=[3, 8, 9])
    con.register("df_view", df)
    con.execute("""CREATE TEMP TABLE _typed AS SELECT date::DATE AS date, school_code, pupil_id, status, room,
                   sub_reason, _line::INTEGER AS _line, known_date::DATE AS known_date, _period FROM df_view""")
    frame = read_typed(con)
    assert isinstance(frame["status"].dtype, pd.CategoricalDtype) and str(frame["date"].dtype) == "datetime64[ns]"
    for f in (frame, con.execute("SELECT * FROM _typed").df()):  # fast path and plain .df()
        failure = only(validate_file(CATALOGUE["attendance_daily"], f, context("出欠_2024-05.csv")), "allowed_values")
        assert failure.lines == [8] and failure.sample_values == ["holiday"]


def test_failures_serialise_for_the_reasons_file():
    df = typed("health_checkup", {"height_cm": 300.0})
    failures = validate_file(CATALOGUE["health_checkup"], df, context("健康診断_2024.csv"))
    reasons = json.loads(json.dumps([f.to_dict() for f in failures], ensure_ascii=False))
    assert reasons[0]["check"] == "range" and reasons[0]["lines"] == [2]
    assert reasons[0]["expectation"] == "expect_column_values_to_be_between"
    assert reasons[0]["sample_values"] == [300.0] and "身長" in reasons[0]["message"]


def test_data_docs_index_accumulates_pages(tmp_path):
    folder = tmp_path / "reports" / "quality"
    bad = check_file(CATALOGUE["health_checkup"], typed("health_checkup", {"height_cm": 300.0}),
                     context("健康診断_2024.csv", headers={"height_cm": "身長"}))
    index = render_data_docs([bad], folder)
    assert index == folder / "index.html" and index.exists()
    page = folder / bad.docs_page.split(str(folder) + "/")[1]
    html = page.read_text(encoding="utf-8")
    assert "Great Expectations" in html and "健康診断_2024.csv" in html and "300.0" in html
    assert "outside 90–200 cm" in html  # our message on top of GX's page

    good = check_file(CATALOGUE["attendance_daily"], typed("attendance_daily", {}), context("出欠_2024-05.csv"))
    render_data_docs([good], folder)  # a later run, maybe another process
    text = index.read_text(encoding="utf-8")
    assert "健康診断_2024.csv" in text and "出欠_2024-05.csv" in text and "rejected" in text and "passed" in text
    records = sorted(folder.glob("validations/*/*/*/record.json"))
    assert len(records) == 2 and json.loads(records[0].read_text(encoding="utf-8"))["rows"] >= 1

    # a file name that tries to climb out of the folder stays inside it
    sly = check_file(CATALOGUE["attendance_daily"], typed("attendance_daily", {}), context("../../../etc/x.csv"))
    render_data_docs([sly], folder)
    assert Path(sly.docs_page).resolve().is_relative_to(folder.resolve())


# ---------------------------------------------------------------------------------------------
# Whole-table checks
# ---------------------------------------------------------------------------------------------

def _staging(con, key: str, rows: list[dict], sha: str) -> None:
    spec = CATALOGUE[key]
    ensure_base_schema(con)
    cols = table_columns(spec)
    con.execute(f"CREATE TABLE IF NOT EXISTS staging.{key} ("
                + ", ".join(f'"{n}" {t}' for n, t in cols) + ")")
    df = typed(key, *rows)
    df["_file_sha256"] = sha
    con.register("rows_view", df)
    names = ", ".join(f'"{n}"' for n, _ in cols)
    con.execute(f"INSERT INTO staging.{key} ({names}) SELECT {names} FROM rows_view")
    con.unregister("rows_view")


def test_validate_table_catches_a_key_duplicated_across_two_files():
    con = duckdb.connect()
    _staging(con, "attendance_daily", [{"pupil_id": P1}, {"pupil_id": P2}], "a" * 64)
    _staging(con, "attendance_daily", [{"pupil_id": P3}, {"pupil_id": P1}], "b" * 64)
    for sha, name in (("a" * 64, "出欠_2024-05.csv"), ("b" * 64, "出欠_2024-05_追加.csv")):
        con.execute("INSERT INTO staging.file_manifest (source_key, file_name, sha256, processed_at, outcome) "
                    "VALUES ('attendance_daily', ?, ?, now(), 'applied')", [name, sha])
    failures = validate_table(con, CATALOGUE["attendance_daily"])
    f = only(failures, "unique_key")
    assert (f.severity, f.column, f.unexpected_count, f.lines) == (ERROR, "pupil_id, date", 2, [2, 3])
    assert f.sample_values == [] and P1 not in f.message  # lines, not pseudonyms, say where
    assert f.message.startswith("staging.attendance_daily, lines 2, 3, columns pupil_id, date (headers '学籍番号', '日付')")
    assert "出欠_2024-05.csv line 2" in f.message and "出欠_2024-05_追加.csv line 3" in f.message
    assert "1 key occurs in more than one row (2 rows in all)" in f.message


def test_validate_table_checks_references_and_column_rules_in_sql():
    con = duckdb.connect()
    _staging(con, "attendance_daily", [{}, {"school_code": "B219999999999", "pupil_id": STRANGER},
                                       {"status": "holiday"}], "c" * 64)
    result = check_table(con, CATALOGUE["attendance_daily"])
    assert [f.check for f in result.failures] == ["allowed_values"]  # no master, no registry yet
    assert any("school_master" in s for s in result.skipped) and any("pupil_registry" in s for s in result.skipped)

    _staging(con, "school_master", [{}, {"school_code": JH, "school_type": "junior_high"}], "d" * 64)
    _staging(con, "pupil_registry", [{"pupil_id": p} for p in REGISTRY_2024], "e" * 64)
    failures = validate_table(con, CATALOGUE["attendance_daily"])
    assert {f.check for f in failures} == {"allowed_values", "known_school", "known_pupil"}
    school, pupil = only(failures, "known_school"), only(failures, "known_pupil")
    assert (school.severity, school.lines, school.sample_values) == (ERROR, [3], ["B219999999999"])
    assert (pupil.severity, pupil.lines, pupil.sample_values) == (ERROR, [3], [STRANGER])
    assert "school year 2024" in pupil.message and "'学籍番号'" in pupil.message
    assert "file cccccccccccc line 3" in school.message  # no manifest entry: the file's hash
    assert validate_table(con, CATALOGUE["school_master"]) == []
    assert validate_table(con, CATALOGUE["pupil_registry"]) == []


def test_file_context_from_the_warehouse(tmp_path):
    con = duckdb.connect()
    ensure_base_schema(con)
    empty = file_context(con, "attendance_daily", "出欠_2024-05.csv")
    assert (empty.known_pupils, empty.known_schools, empty.previous_volumes) == (None, None, [])

    _staging(con, "pupil_registry", [{"pupil_id": P1}, {"pupil_id": P2, "school_year": 2023}], "e" * 64)
    _staging(con, "school_master", [{}], "d" * 64)
    for n, (period, rows, outcome) in enumerate([("2024-04", 90, "superseded"), ("2024-04", 100, "applied"),
                                                 ("2024-05", 120, "applied"), ("2024-06", 999, "rejected"),
                                                 ("2024-06", 110, "applied")]):
        con.execute("INSERT INTO staging.file_manifest (source_key, file_name, sha256, period, processed_at, "
                    "outcome, rows_kept) VALUES ('attendance_daily', ?, ?, ?, TIMESTAMP '2024-07-01' + "
                    "INTERVAL (?) MINUTE, ?, ?)", [f"f{n}.csv", f"{n}" * 64, period, n, outcome, rows])
    path = tmp_path / "出欠_2024-06.csv"
    path.write_text("x")
    stamp = dt.datetime(2024, 7, 1, 17, 30, tzinfo=dt.timezone(dt.timedelta(hours=9))).timestamp()
    import os
    os.utime(path, (stamp, stamp))
    ctx = file_context(con, "attendance_daily", path.name, headers={"date": "日付"},
                       exported_on=export_date(path), period="2024-06")
    assert ctx.exported_on == dt.date(2024, 7, 1)  # Tokyo date of the modification time
    assert ctx.known_pupils == {2024: {P1}, 2023: {P2}}
    assert ctx.known_residents == {DEFAULTS["pupil_registry"]["resident_id"]}
    assert ctx.known_schools == {ELEM}
    assert ctx.previous_volumes == [100, 120]  # one per earlier period; its own period left out


# ---------------------------------------------------------------------------------------------
# The distinct-value gate (check_batch) judges like the row-by-row validation (check_file)
# ---------------------------------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from quality import check_batch, file_level_ok  # noqa: E402
from quality.suites import FILE_LEVEL_CHECKS  # noqa: E402

# values a department's file may hold after typing, good and bad, per (source, column)
_VALUES = {
    "attendance_daily": dict(
        date=["2024-05-07", "2024-05-11", "2024-06-03", "2025-05-07", "1999-01-01", None],
        school_code=[ELEM, JH, "B111222409999", None],
        pupil_id=[P1, P2, P3, STRANGER, None],
        status=["present", "absent_sick", "late", "holiday", None],
        room=[None, "nurse_room", "roof"]),
    "health_checkup": dict(
        height_cm=[130.0, 300.0, -5.0, None], weight_kg=[30.0, 45.0, 250.0], obesity_index=[7.0, 48.0, -3.7],
        grade=[3, 8, 12], caries=["none", "treated", "purple"]),
    "qu_survey": dict(approval=[40, 10, 55], infringement=[15, 35, 9], group=["satisfied", "infringed", "nobody"]),
}


@settings(max_examples=30, deadline=None)
@given(data=st.data(), key=st.sampled_from(sorted(_VALUES)))
def test_the_distinct_value_gate_fails_exactly_when_a_row_by_row_check_does(data, key):
    spec = CATALOGUE[key]
    choices = _VALUES[key]
    rows = data.draw(st.lists(st.fixed_dictionaries({c: st.sampled_from(v) for c, v in choices.items()}),
                              min_size=1, max_size=12))
    df = typed(key, *rows)
    ctx = context(f"{key}.csv")
    by_rows = check_file(spec, df, ctx)
    con = duckdb.connect()
    try:
        con.register("frame", df)
        con.execute("CREATE TABLE rows AS SELECT * FROM frame")
        for col in spec.staged_columns:  # the warehouse's types, as _typed has them
            con.execute(f'ALTER TABLE rows ALTER "{col.staged_name}" TYPE {col.sql_type}')
        gate = check_batch(spec, con, "rows", ctx)
    finally:
        con.close()
    row_level = {f.check for f in by_rows.failures if f.check not in FILE_LEVEL_CHECKS}
    assert bool(gate.failures) == bool(row_level), (row_level, [f.message for f in gate.failures])
    # the gate names the same checks (never more, never fewer), without lines or values
    assert {f.check for f in gate.failures} == row_level
    assert file_level_ok(spec, len(df), None, {}, ctx)
