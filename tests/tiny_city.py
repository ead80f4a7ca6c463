"""A tiny hand-written city, staged directly (no CSVs): five pupils, two schools, two school
years, every pupil-level source. Small enough to compute features by hand.

Rows are written with ``toda_platform.ingest.ensure_table`` (the catalogue's DDL) and their
``known_date`` is then set by the catalogue's own knowledge-date rule, exactly as ingestion does.

Pupils (grades are 2024's):
  p1  小5 at B1, the drifting one: absences, nurse visits, bullying (victim), counselling,
      support, mood check-ins with a bad-day streak, Q-U, surveys, tests, infant checkups and
      nursery history
  p2  中2 at C1, transfers out on 2024-10-15
  p3  小2 at B1, transfers in on 2024-06-10 (no 2023 row)
  p4  中1 at C1, absent (not ill) on the first 30 school days of 2024: the 30th is 2024-05-22
  p5  小6 at B1, counted 不登校 in the 2023 survey
"""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pandas as pd

from toda_platform.city import load_city
from toda_platform.ingest import ensure_table, table_columns

CATALOGUE = load_city("toda").specs  # Toda's specs: what each source means and how Toda writes it

B1, C1 = "B111222400011", "C111222400014"

HOLIDAYS = {date(2023, 5, 3), date(2023, 5, 4), date(2023, 5, 5), date(2023, 7, 17),
            date(2023, 9, 18), date(2023, 10, 9), date(2023, 11, 3), date(2023, 11, 23),
            date(2024, 2, 12), date(2024, 2, 23), date(2024, 3, 20), date(2024, 4, 29),
            date(2024, 5, 3), date(2024, 5, 6), date(2024, 7, 15), date(2024, 9, 16),
            date(2024, 9, 23), date(2024, 10, 14), date(2024, 11, 4)}
TERMS = [(date(2023, 4, 10), date(2023, 7, 20)), (date(2023, 9, 1), date(2023, 12, 22)),
         (date(2024, 1, 9), date(2024, 3, 22)), (date(2024, 4, 8), date(2024, 7, 19)),
         (date(2024, 9, 2), date(2024, 12, 20))]


def school_days() -> list[date]:
    out = []
    for start, end in TERMS:
        d = start
        while d <= end:
            if d.weekday() < 5 and d not in HOLIDAYS:
                out.append(d)
            d += timedelta(days=1)
    return out


REGISTRY = [
    # school_year, pupil, resident, birth_month, sex, school, grade, class, enrolled_on, left_on
    (2023, "p1", "r1", date(2013, 6, 1), "F", B1, 4, "1", None, None),
    (2023, "p2", "r2", date(2011, 9, 1), "M", C1, 7, "2", None, None),
    (2023, "p4", "r4", date(2012, 1, 1), "M", B1, 6, "1", None, None),
    (2023, "p5", "r5", date(2012, 8, 1), "F", B1, 5, "1", None, None),
    (2024, "p1", "r1", date(2013, 6, 1), "F", B1, 5, "1", None, None),
    (2024, "p2", "r2", date(2011, 9, 1), "M", C1, 8, "2", None, date(2024, 10, 15)),
    (2024, "p3", "r3", date(2017, 5, 1), "M", B1, 2, "1", date(2024, 6, 10), None),
    (2024, "p4", "r4", date(2012, 1, 1), "M", C1, 7, "1", None, None),
    (2024, "p5", "r5", date(2012, 8, 1), "F", B1, 6, "1", None, None),
]

# (pupil, date) -> (status, room, sub_reason); everything else is "present"
ATTENDANCE_EVENTS = {
    ("p1", date(2023, 11, 6)): ("absent_sick", None, "発熱"),
    ("p1", date(2024, 2, 13)): ("absent_other", None, "家庭の事情"),  # Tue after 2/12 holiday
    ("p1", date(2024, 5, 7)): ("absent_other", None, "reluctant"),  # first day after GW
    ("p1", date(2024, 5, 8)): ("absent_sick", None, "頭痛"),
    ("p1", date(2024, 5, 13)): ("absent_other", None, None),  # Monday
    ("p1", date(2024, 6, 5)): ("late", None, None),
    ("p1", date(2024, 6, 17)): ("absent_other", None, "reluctant"),  # Monday
    ("p1", date(2024, 6, 18)): ("absent_other", None, None),
    ("p1", date(2024, 6, 20)): ("present", "nurse_room", None),
    ("p1", date(2024, 9, 3)): ("suspended", None, "インフルエンザ"),
}
P4_ABSENT_FROM = date(2024, 4, 8)  # p4: absent_other on the first 30 school days of 2024


def _enrolled_days(pupil: str, year: int) -> list[date]:
    row = next((r for r in REGISTRY if r[0] == year and r[1] == pupil), None)
    if row is None:
        return []
    start = row[8] or date(year, 4, 1)
    end = row[9] or date(year + 1, 3, 31)
    return [d for d in school_days() if start <= d <= end and date(year, 4, 1) <= d < date(year + 1, 4, 1)]


def attendance_rows() -> list[dict]:
    rows = []
    for (year, pupil, *_rest) in REGISTRY:
        school = next(r[5] for r in REGISTRY if r[0] == year and r[1] == pupil)
        p4_absences = 0
        for d in _enrolled_days(pupil, year):
            status, room, reason = ATTENDANCE_EVENTS.get((pupil, d), ("present", None, None))
            if pupil == "p4" and year == 2024 and d >= P4_ABSENT_FROM and p4_absences < 30:
                status, reason = "absent_other", "reluctant"
                p4_absences += 1
            rows.append({"date": d, "school_code": school, "pupil_id": pupil, "status": status,
                         "room": room, "sub_reason": reason})
    return rows


def _mood_rows() -> list[dict]:
    rows = []
    june = [d for d in school_days() if date(2024, 6, 3) <= d <= date(2024, 6, 28)]
    bad = {date(2024, 6, 19): 1, date(2024, 6, 20): 1, date(2024, 6, 21): 1, date(2024, 6, 26): 2}
    for d in june:
        rows.append({"checkin_date": d, "school_code": B1, "pupil_id": "p1", "mood": bad.get(d, 3),
                     "body": 2, "sleep": 3, "want_to_talk": d == date(2024, 6, 21)})
    rows.append({"checkin_date": date(2024, 7, 2), "school_code": B1, "pupil_id": "p1", "mood": 1,
                 "body": 1, "sleep": 1, "want_to_talk": True})
    # the city's check-ins begin in April 2024 (p5's first): earlier windows have no mood data
    rows.append({"checkin_date": date(2024, 4, 15), "school_code": B1, "pupil_id": "p5", "mood": 4,
                 "body": 3, "sleep": 4, "want_to_talk": False})
    return rows


def rows_by_source() -> dict[str, list[dict]]:
    q = {"motivation_friends": 8, "motivation_study": 7, "motivation_teacher": 9,
         "motivation_class": 6, "motivation_career": None}
    return {
        "school_master": [
            {"school_code": B1, "school_name": "戸田第一小学校", "school_type": "elementary", "district": "上戸田"},
            {"school_code": C1, "school_name": "戸田中学校", "school_type": "junior_high", "district": "上戸田"},
        ],
        "pupil_registry": [
            {"school_year": y, "pupil_id": p, "resident_id": r, "birth_month": b, "sex": s,
             "school_code": sc, "grade": g, "class_name": c, "enrolled_on": e, "left_on": lo}
            for (y, p, r, b, s, sc, g, c, e, lo) in REGISTRY],
        "attendance_daily": attendance_rows(),
        "long_absence_survey": [
            {"school_year": 2023, "school_code": B1, "pupil_id": "p5", "grade": 5, "absent_days": 80,
             "days_illness": 5, "days_economic": 0, "days_futoukou": 70, "days_covid": 0,
             "days_other": 5, "main_reason": "futoukou"},
        ],
        "bullying_records": [
            {"incident_id": "2023-01-001", "recognised_on": date(2023, 5, 10), "school_code": C1,
             "pupil_id": "p2", "grade": 7, "role": "perpetrator", "forms": "teasing",
             "found_by": "teacher", "resolved": "resolved"},
            {"incident_id": "2024-01-001", "recognised_on": date(2024, 6, 10), "school_code": B1,
             "pupil_id": "p1", "grade": 5, "role": "victim", "forms": "exclusion;teasing",
             "found_by": "survey", "resolved": "ongoing"},
            {"incident_id": "2024-01-001", "recognised_on": date(2024, 6, 10), "school_code": B1,
             "pupil_id": "p5", "grade": 6, "role": "perpetrator", "forms": "exclusion;teasing",
             "found_by": "survey", "resolved": "ongoing"},
            {"incident_id": "2024-01-002", "recognised_on": date(2024, 6, 20), "school_code": B1,
             "pupil_id": "p1", "grade": 5, "role": "victim", "forms": "online",
             "found_by": "self_report", "resolved": "ongoing"},
        ],
        "counseling_records": [
            {"session_id": "S1", "session_date": date(2023, 10, 10), "school_code": B1, "pupil_id": "p1",
             "counsellor": "school_counsellor", "topic": "study", "referred_by": "teacher", "linked_agency": False},
            {"session_id": "S2", "session_date": date(2024, 6, 21), "school_code": B1, "pupil_id": "p1",
             "counsellor": "school_counsellor", "topic": "friends", "referred_by": "nurse", "linked_agency": False},
            {"session_id": "S3", "session_date": date(2024, 7, 1), "school_code": B1, "pupil_id": "p1",
             "counsellor": "social_worker", "topic": "family", "referred_by": "teacher", "linked_agency": True},
        ],
        "school_life_survey": [
            {"survey_date": date(2023, 11, 15), "school_code": B1, "pupil_id": "p1", "grade": 4, "round": 2,
             "q_friends": 4, "q_teacher": 4, "q_study": 4, "q_safe": 4, "q_enjoy": 4},
            {"survey_date": date(2024, 6, 10), "school_code": B1, "pupil_id": "p1", "grade": 5, "round": 1,
             "q_friends": 2, "q_teacher": 3, "q_study": 2, "q_safe": None, "q_enjoy": 1},
        ],
        "health_checkup": [
            {"checkup_date": date(2023, 5, 12), "school_code": B1, "pupil_id": "p1", "grade": 4, "sex": "F",
             "height_cm": 133.0, "weight_kg": 36.0, "obesity_index": 25.0, "vision_right": "A",
             "vision_left": "A", "caries": "none", "dmf": 0},
            {"checkup_date": date(2024, 5, 10), "school_code": B1, "pupil_id": "p1", "grade": 5, "sex": "F",
             "height_cm": 140.0, "weight_kg": 45.0, "obesity_index": 30.5, "vision_right": "A",
             "vision_left": "C", "caries": "untreated", "dmf": 2},
        ],
        "prefectural_achievement": [
            *[{"school_year": y, "survey_date": date(y, 4, 12), "school_code": B1, "pupil_id": "p1",
               "grade": g, "subject": s, "level": lv, "scale_score": 500.0}
              for y, g, s, lv in ((2023, 4, "japanese", 6), (2023, 4, "math", 5),
                                  (2024, 5, "japanese", 5), (2024, 5, "math", 3))],
            *[{"school_year": 2024, "survey_date": date(2024, 4, 12), "school_code": C1, "pupil_id": "p2",
               "grade": 8, "subject": s, "level": lv, "scale_score": 600.0}
              for s, lv in (("japanese", 8), ("math", 9), ("english", 7))],
        ],
        "prefectural_questionnaire": [
            {"school_year": 2023, "school_code": B1, "pupil_id": "p1", "grade": 4, "self_esteem": 3.0,
             "self_efficacy": 3.2, "self_control": 2.8, "diligence": 3.0, "learning_strategies": 2.5},
            {"school_year": 2024, "school_code": B1, "pupil_id": "p1", "grade": 5, "self_esteem": 2.0,
             "self_efficacy": 2.6, "self_control": 2.8, "diligence": 2.5, "learning_strategies": 2.0},
        ],
        "nurse_office_visits": [
            {"visit_date": date(2023, 4, 20), "visit_time": "13:10", "school_code": C1, "pupil_id": "p2",
             "grade": 7, "symptom": "injury", "temperature": None, "rest_minutes": 10, "went_home": False},
            {"visit_date": date(2023, 12, 5), "visit_time": "11:00", "school_code": B1, "pupil_id": "p1",
             "grade": 4, "symptom": "unwell", "temperature": 36.5, "rest_minutes": 20, "went_home": False},
            {"visit_date": date(2024, 6, 20), "visit_time": "10:30", "school_code": B1, "pupil_id": "p1",
             "grade": 5, "symptom": "headache", "temperature": 36.6, "rest_minutes": 30, "went_home": False},
            {"visit_date": date(2024, 6, 24), "visit_time": "09:15", "school_code": B1, "pupil_id": "p1",
             "grade": 5, "symptom": "stomach_ache", "temperature": 36.8, "rest_minutes": 45, "went_home": True},
            {"visit_date": date(2024, 7, 1), "visit_time": "08:40", "school_code": B1, "pupil_id": "p1",
             "grade": 5, "symptom": "headache", "temperature": 36.7, "rest_minutes": 60, "went_home": True},
        ],
        "aigrow": [
            {"test_date": d, "school_code": C1, "pupil_id": "p2", "grade": g, "collaboration": v,
             "problem_setting": 50.0, "creativity": 50.0, "flexibility": 50.0, "empathy": 50.0,
             "self_management": 50.0, "psychological_safety": 50.0, "self_affirmation": 50.0}
            for d, g, v in ((date(2023, 6, 5), 7, 55.0), (date(2024, 6, 3), 8, 41.0))],
        "qu_survey": [
            {"survey_date": date(2023, 11, 8), "school_code": B1, "pupil_id": "p1", "grade": 4,
             "class_name": "1", "round": 2, "approval": 40, "infringement": 15, "group": "satisfied", **q},
            {"survey_date": date(2024, 6, 5), "school_code": B1, "pupil_id": "p1", "grade": 5,
             "class_name": "1", "round": 1, "approval": 25, "infringement": 35, "group": "needs_support", **q},
            {"survey_date": date(2024, 6, 12), "school_code": C1, "pupil_id": "p2", "grade": 8,
             "class_name": "2", "round": 1, "approval": 38, "infringement": 18, "group": "satisfied", **q},
        ],
        "class_understanding_survey": [
            *[{"survey_date": date(2023, 12, 1), "school_code": B1, "pupil_id": "p1", "grade": 4,
               "round": 2, "subject": s, "understanding": 4} for s in ("japanese", "math")],
            {"survey_date": date(2024, 6, 14), "school_code": B1, "pupil_id": "p1", "grade": 5,
             "round": 1, "subject": "japanese", "understanding": 3},
            {"survey_date": date(2024, 6, 14), "school_code": B1, "pupil_id": "p1", "grade": 5,
             "round": 1, "subject": "math", "understanding": 1},
        ],
        "rst": [
            {"test_date": date(2024, 5, 20), "school_code": C1, "pupil_id": "p2", "grade": 8,
             "dependency": 0.5, "anaphora": 0.5, "paraphrase": 0.5, "inference": 0.5,
             "image_matching": 0.5, "instantiation": 0.5},
        ],
        "mood_checkin": _mood_rows(),
        "infant_checkup": [
            {"resident_id": "r1", "birth_month": date(2013, 6, 1), "checkup": c, "checkup_date": d,
             "attended": a, "development": dev, "language": "none" if a else None,
             "sight_hearing": "none" if a else None, "dental": "none" if a else None,
             "referred": False if a else None}
            for c, d, a, dev in (("4m", date(2013, 10, 15), True, "none"),
                                 ("18m", date(2014, 12, 10), True, "observe"),
                                 ("3y", date(2016, 6, 20), False, None))],
        "nursery_enrollment": [
            {"resident_id": "r1", "birth_month": date(2013, 6, 1), "facility_type": "licensed",
             "enrolled_on": date(2014, 4, 1), "left_on": date(2020, 3, 31), "base_index": 80,
             "adjustment_index": 5},
        ],
        "support_records": [
            {"case_id": "C2023-0001", "decided_on": date(2023, 5, 15), "school_code": B1, "pupil_id": "p5",
             "risk_band": "red", "action": "ssw", "agency": "social_worker", "outcome": "no_change"},
            {"case_id": "C2024-0001", "decided_on": date(2024, 6, 25), "school_code": B1, "pupil_id": "p1",
             "risk_band": "pink", "action": "home_visit", "agency": "school", "outcome": "improved"},
        ],
        "school_context": [
            {"school_year": y, "school_code": s, "enrolment": 500, "school_aid_rate": r,
             "child_allowance_rate": 5.0, "welfare_rate": 1.0, "special_needs_rate": 6.0,
             "japanese_support_rate": 2.0}
            for y, s, r in ((2023, B1, 10.0), (2024, B1, 12.5), (2023, C1, 20.0))],
        "teacher_survey": [],
        "teacher_stress_check": [],
        "teacher_overtime": [],
    }


def insert_rows(con: duckdb.DuckDBPyConnection, source: str, rows: list[dict]) -> None:
    """Insert rows into ``staging.<source>`` and give them the catalogue's ``known_date``."""
    spec = CATALOGUE[source]
    ensure_table(con, spec)
    if not rows:
        return
    cols = [n for n, _ in table_columns(spec) if n not in ("_file_sha256", "_line", "known_date")]
    frame = pd.DataFrame([{c: r.get(c) for c in cols} for r in rows], columns=cols)
    con.register("_tiny_rows", frame)
    casts = ", ".join(f'CAST("{n}" AS {t}) AS "{n}"' for n, t in table_columns(spec) if n in cols)
    con.execute(f"INSERT INTO staging.{source} BY NAME SELECT {casts}, 'tiny' AS _file_sha256, "
                f"CAST(NULL AS DATE) AS known_date FROM _tiny_rows")
    con.unregister("_tiny_rows")
    set_known_dates(con, source)


def set_known_dates(con: duckdb.DuckDBPyConnection, source: str) -> None:
    spec = CATALOGUE[source]
    con.execute(f"UPDATE staging.{source} SET known_date = ({spec.known_from})::DATE "
                "WHERE known_date IS NULL")


def build(con: duckdb.DuckDBPyConnection) -> None:
    for source, rows in rows_by_source().items():
        insert_rows(con, source, rows)
    for source in CATALOGUE:
        ensure_table(con, CATALOGUE[source])
