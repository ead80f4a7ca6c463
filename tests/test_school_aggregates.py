"""marts.school_aggregates: no figure from fewer than 10 pupils survives, nor one that a
subtraction of two shown figures would give back."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml import aggregates
from tests.tiny_city import insert_rows
from toda_platform.city import load_city
from toda_platform.ingest import ensure_table

CATALOGUE = load_city("toda").specs  # Toda's specs: what each source means and how Toda writes it

SCHOOLS = ("B111222400011", "B111222400028", "C111222400014")
DAYS = [date(2024, 4, 8) + timedelta(days=i) for i in range(120) if (date(2024, 4, 8) + timedelta(days=i)).weekday() < 5]
GROUPS = ("satisfied", "unrecognised", "infringed", "dissatisfied", "needs_support")
PUPIL_CELLS = [c for c in aggregates.SUPPRESSIBLE if c not in aggregates.TEACHER_CELLS]

pupil_st = st.fixed_dictionaries({  # biased toward long absence, so that counts near 10 are common
    "absent_other": st.sampled_from([0, 3, 29, 30, 35, 40]), "absent_sick": st.sampled_from([0, 2, 30, 40]),
    "survey": st.sampled_from([None, "futoukou", "futoukou", "futoukou", "illness"]),
    "qu": st.sampled_from(GROUPS), "level": st.integers(1, 12), "prev_level": st.one_of(st.none(), st.integers(1, 12)),
    "mood": st.one_of(st.none(), st.integers(1, 4)),
})
school_st = st.lists(pupil_st, min_size=1, max_size=32)


def build_city(schools: list[list[dict]], examinees: list[int]) -> tuple[duckdb.DuckDBPyConnection, pd.DataFrame]:
    con = duckdb.connect()
    for spec in CATALOGUE.values():
        ensure_table(con, spec)
    insert_rows(con, "school_master", [{"school_code": s, "school_name": s, "school_type": "elementary",
                                        "district": "x"} for s in SCHOOLS])
    reg, att, survey, qu, ach, mood, truth = [], [], [], [], [], [], []
    for s, (code, pupils) in enumerate(zip(SCHOOLS, schools)):
        for i, p in enumerate(pupils):
            pid = f"s{s}p{i}"
            reg.append({"school_year": 2024, "pupil_id": pid, "resident_id": pid, "birth_month": date(2014, 1, 1),
                        "sex": "F", "school_code": code, "grade": 4, "class_name": "1"})
            statuses = ["absent_other"] * p["absent_other"] + ["absent_sick"] * p["absent_sick"]
            statuses += ["present"] * (len(DAYS) - len(statuses))
            att += [{"date": d, "school_code": code, "pupil_id": pid, "status": st_} for d, st_ in zip(DAYS, statuses)]
            absent = p["absent_other"] + p["absent_sick"]
            listed = p["survey"] if absent >= 30 else None
            if listed:
                survey.append({"school_year": 2024, "school_code": code, "pupil_id": pid, "grade": 4,
                               "absent_days": absent, "days_illness": p["absent_sick"], "days_economic": 0,
                               "days_futoukou": p["absent_other"], "days_other": 0, "main_reason": listed})
            qu.append({"survey_date": date(2024, 6, 5), "school_code": code, "pupil_id": pid, "grade": 4,
                       "class_name": "1", "round": 1, "approval": 30, "infringement": 20, "group": p["qu"],
                       "motivation_friends": 8, "motivation_study": 8, "motivation_teacher": 8,
                       "motivation_class": 8})
            ach += [{"school_year": 2024, "survey_date": date(2024, 4, 12), "school_code": code, "pupil_id": pid,
                     "grade": 4, "subject": subj, "level": p["level"], "scale_score": 500.0}
                    for subj in ("japanese", "math")]
            if p["prev_level"] is not None:
                ach += [{"school_year": 2023, "survey_date": date(2023, 4, 12), "school_code": code,
                         "pupil_id": pid, "grade": 3, "subject": subj, "level": p["prev_level"], "scale_score": 500.0}
                        for subj in ("japanese", "math")]
            if p["mood"] is not None:
                mood.append({"checkin_date": DAYS[0], "school_code": code, "pupil_id": pid, "mood": p["mood"],
                             "body": 2, "sleep": 3, "want_to_talk": False})
            truth.append({"school_code": code, "pupil_id": pid, "absent": absent, "nonillness": p["absent_other"],
                          "listed": listed, "qu": p["qu"], "prev": p["prev_level"] is not None,
                          "mood": p["mood"] is not None})
    insert_rows(con, "pupil_registry", reg)
    insert_rows(con, "attendance_daily", att)
    insert_rows(con, "long_absence_survey", survey)
    insert_rows(con, "qu_survey", qu)
    insert_rows(con, "prefectural_achievement", ach)
    insert_rows(con, "mood_checkin", mood)
    insert_rows(con, "teacher_stress_check", [
        {"school_year": 2024, "school_code": code, "examinees": n, "stressors": 2.5, "reactions": 2.0,
         "support": 3.0, "satisfaction": 2.8, "high_stress_rate": 10.0} for code, n in zip(SCHOOLS, examinees)])
    insert_rows(con, "school_context", [
        {"school_year": 2024, "school_code": code, "enrolment": max(len(p), 1), "school_aid_rate": 25.0,
         "child_allowance_rate": 5.0, "welfare_rate": 1.0, "special_needs_rate": 50.0,
         "japanese_support_rate": 0.0} for code, p in zip(SCHOOLS, schools)])
    return con, pd.DataFrame(truth)


def pupils_behind(truth: pd.DataFrame, code: str) -> dict[str, int]:
    """How many pupils stand behind each cell, counted independently of the SQL."""
    t = truth[truth.school_code == code]
    n = len(t)
    q = t.qu.value_counts()
    counts = {
        "enrolment": n, "attendance_rate": n, "absence_rate": n,
        "absent30_to_date": int((t.absent >= 30).sum()), "nonillness30_to_date": int((t.nonillness >= 30).sum()),
        "long_absent_count": int(t.listed.notna().sum()), "long_absent_rate": int(t.listed.notna().sum()),
        "futoukou_count": int((t.listed == "futoukou").sum()), "futoukou_rate": int((t.listed == "futoukou").sum()),
        "ach_level_mean": n, "ach_level_japanese": n, "ach_level_math": n,
        "ach_growth_same_pupils": int(t.prev.sum()),
        "qu_share_satisfied": int(q.get("satisfied", 0)), "qu_share_unrecognised": int(q.get("unrecognised", 0)),
        "qu_share_infringed": int(q.get("infringed", 0)),
        "qu_share_dissatisfied": int(q.get("dissatisfied", 0) + q.get("needs_support", 0)),
        "qu_share_needs_support": int(q.get("needs_support", 0)),
        **{c: int(t.mood.sum()) for c in ("mood_mean", "mood_body_mean", "mood_sleep_mean", "mood_bad_day_share")},
        # context ratios x enrolment / 100
        "ctx_school_aid_rate": round(0.25 * n), "ctx_child_allowance_rate": round(0.05 * n),
        "ctx_welfare_rate": round(0.01 * n), "ctx_special_needs_rate": round(0.5 * n),
        "ctx_japanese_support_rate": 0,
    }
    return counts


COUNT_CELLS = {"absent30_to_date", "nonillness30_to_date", "long_absent_count", "long_absent_rate",
               "futoukou_count", "futoukou_rate", "qu_share_satisfied", "qu_share_unrecognised",
               "qu_share_infringed", "qu_share_dissatisfied", "qu_share_needs_support",
               "ctx_school_aid_rate", "ctx_child_allowance_rate", "ctx_welfare_rate",
               "ctx_special_needs_rate", "ctx_japanese_support_rate"}


def check_no_small_cell(con, truth: pd.DataFrame, examinees: list[int]) -> None:
    aggregates.build_school_aggregates(con)
    out = con.execute("SELECT * FROM marts.school_aggregates WHERE school_year = 2024").df().set_index("school_code")
    for code, ex in zip(SCHOOLS, examinees):
        if code not in out.index:
            continue
        row, behind = out.loc[code], pupils_behind(truth, code)
        n = behind["enrolment"]
        for cell in PUPIL_CELLS:
            shown = pd.notna(row[cell])
            k = behind[cell]
            if shown:
                assert n >= 10, f"{code} has {n} pupils but shows {cell}"
                if cell in COUNT_CELLS:
                    assert k == 0 or k >= 10, f"{code}.{cell} shown from {k} pupils"
                else:
                    assert k >= 10, f"{code}.{cell} shown from {k} pupils"
            elif k > 0 or cell in ("enrolment",):
                assert bool(row[f"{cell}_suppressed"]), f"{code}.{cell} is hidden without its flag"
        for cell in aggregates.TEACHER_CELLS:
            if cell.startswith("stress_"):
                assert pd.isna(row[cell]) == (ex < 10)
        # no subtraction of two shown counts gives a cell of 1-9 pupils
        for a, b in (("long_absent_count", "futoukou_count"), ("absent30_to_date", "nonillness30_to_date")):
            if pd.notna(row[a]) and pd.notna(row[b]):
                assert not 1 <= behind[a] - behind[b] <= 9, f"{code}: {a} - {b} reveals {behind[a] - behind[b]}"
        hidden = [c for c in aggregates.QU_PARTITION if pd.isna(row[c])]
        shown = [c for c in aggregates.QU_PARTITION if pd.notna(row[c])]
        if len(hidden) == 1 and len(shown) == 3:
            assert behind[hidden[0]] == 0 or behind[hidden[0]] >= 10, \
                f"{code}: {hidden[0]} hidden but recoverable as 1 - the other three shares"


def test_a_school_of_nine_pupils_shows_nothing_about_them_and_small_counts_are_hidden():
    nine = [dict(absent_other=0, absent_sick=0, survey=None, qu="satisfied", level=5, prev_level=4, mood=3)] * 9
    twelve = [dict(absent_other=35, absent_sick=0, survey="futoukou", qu="satisfied", level=6, prev_level=5, mood=3)] \
        + [dict(absent_other=0, absent_sick=0, survey=None, qu="satisfied", level=6, prev_level=5, mood=3)] * 11
    absent = dict(absent_other=40, absent_sick=0, survey="futoukou", qu="satisfied", level=6, prev_level=5, mood=3)
    ill = dict(absent_other=0, absent_sick=40, survey="illness", qu="satisfied", level=6, prev_level=5, mood=3)
    fifteen = [absent] * 12 + [ill] * 3  # 15 long absences of which 12 不登校: 15 - 12 = 3 ill
    con, truth = build_city([nine, twelve, fifteen], [5, 20, 20])
    check_no_small_cell(con, truth, [5, 20, 20])
    out = con.execute("SELECT * FROM marts.school_aggregates").df().set_index("school_code")
    small, big = out.loc[SCHOOLS[0]], out.loc[SCHOOLS[1]]
    assert all(pd.isna(small[c]) for c in PUPIL_CELLS)
    assert small.enrolment_suppressed and small.attendance_rate_suppressed and small.ach_level_mean_suppressed
    assert pd.isna(small.stress_stressors) and small.stress_stressors_suppressed  # 5 examinees
    assert big.enrolment == 12 and big.ach_level_mean == pytest.approx(6.0)
    assert big.ach_growth_same_pupils == pytest.approx(1.0)
    assert pd.isna(big.futoukou_count) and big.futoukou_count_suppressed  # one pupil
    assert pd.isna(big.futoukou_rate) and big.futoukou_rate_suppressed
    assert big.qu_share_satisfied == pytest.approx(1.0) and big.stress_stressors == pytest.approx(2.5)
    third = out.loc[SCHOOLS[2]]
    assert third.futoukou_count == 12 and third.nonillness30_to_date == 12
    assert pd.isna(third.long_absent_count) and third.long_absent_count_suppressed
    assert pd.isna(third.absent30_to_date) and third.absent30_to_date_suppressed


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(schools=st.lists(school_st, min_size=3, max_size=3),
       examinees=st.lists(st.integers(1, 30), min_size=3, max_size=3))
def test_no_aggregate_from_fewer_than_ten_pupils_survives(schools, examinees):
    con, truth = build_city(schools, examinees)
    try:
        check_no_small_cell(con, truth, examinees)
    finally:
        con.close()
