"""Sources read straight off the simulated school days: attendance, the long-absence survey,
nurse-office visits and the pupils' own daily mood check-in."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd

from toda_platform.city import load_city
from synthcity.city import City
from synthcity.daily import LATE, REASONS, STATUS_CODES, SYMPTOMS
from synthcity.formats import fullwidth
from synthcity.rng import stream

MOOD_FROM = 2023  # シャボテン was introduced in FY2023
_LONG_FORMS = ("出席", "欠席(病気)", "欠席(事故)", "出席停止", "忌引", "遅刻", "早退")


def _raw_status() -> list[str]:
    """The short codes every school types, then the long forms one school's staff use (Toda's)."""
    ATTENDANCE_STATUS = load_city("toda").spec("attendance_daily").column("status").values
    first = {}
    for raw, code in ATTENDANCE_STATUS.items():
        first.setdefault(code, raw)
    short = [first[c] for c in STATUS_CODES]
    assert all(ATTENDANCE_STATUS[r] == c for r, c in zip(_LONG_FORMS, STATUS_CODES))
    return short + list(_LONG_FORMS)


def attendance_daily(city: City) -> Iterator[pd.DataFrame]:
    categories = _raw_status()
    for y in city.years:
        yd = city.days[y]
        day, row = np.nonzero(yd.status.T >= 0)  # by day, then in roll order
        school = yd.school_on(day, row)
        status = yd.status[row, day].astype(int) + len(STATUS_CODES) * (school == city.long_form_school)
        yield pd.DataFrame({
            "date": yd.cal.days[day],
            "school_code": city.codes(school),
            "pupil_id": city.numbers(yd.rows.pid.to_numpy()[row]),
            "status": pd.Categorical.from_codes(status, categories=categories),
            "room": pd.Categorical.from_codes(yd.room[row, day].astype(int) - 1,
                                              categories=["保健室登校", "別室登校"]),
            "sub_reason": pd.Categorical.from_codes(yd.reason[row, day].astype(int) - 1, categories=REASONS[1:]),
        })


def long_absence_survey(city: City) -> Iterator[pd.DataFrame]:
    """Pupils on the roll at the end of March with 30+ days absent, days split by reason."""
    for y in city.years:
        r = city.days[y].rows
        r = r[r.long_absence_reason != "none"].sort_values(["school_b", "grade", "class_b", "seat"])
        reason = r.long_absence_reason.to_numpy()
        other = r.days_other.to_numpy()
        yield pd.DataFrame({
            "school_year": y,
            "school_code": city.codes(r.school_b.to_numpy()),
            "pupil_id": city.numbers(r.pid.to_numpy()),
            "grade": r.grade.to_numpy(),
            "absent_days": r.absent_days.to_numpy(),
            "days_illness": r.days_sick.to_numpy(),
            "days_economic": np.where(reason == "economic", other, 0),
            "days_futoukou": np.where(reason == "futoukou", other, 0),
            "days_covid": 0,
            "days_other": np.where(np.isin(reason, ("economic", "futoukou")), 0, other),
            "main_reason": reason,
        })


def nurse_office_visits(city: City) -> Iterator[pd.DataFrame]:
    for y in city.years:
        yd = city.days[y]
        v = yd.nurse
        row, day = v.row.to_numpy(), v.day.to_numpy()
        school = yd.school_on(day, row)
        order = np.lexsort((v.minute.to_numpy(), school, day))
        minute = v.minute.to_numpy()
        frame = pd.DataFrame({
            "visit_date": yd.cal.days[day],
            "visit_time": [f"{m // 60:02d}:{m % 60:02d}" for m in minute],
            "school_code": city.codes(school),
            "pupil_id": city.numbers(yd.rows.pid.to_numpy()[row]),
            "grade": yd.rows.grade.to_numpy()[row],
            "symptom": np.array(SYMPTOMS, dtype=object)[v.symptom.to_numpy()],
            "temperature": v.temperature.to_numpy(),
            "rest_minutes": v.rest.to_numpy(),
            "went_home": v.went_home.to_numpy(),
        })
        yield frame.iloc[order]


def mood_checkin(city: City) -> Iterator[pd.DataFrame]:
    """Google Forms answers, in the order they arrived; pupils type their own 学籍番号."""
    numbers = city.persons.student_number
    typed = pd.Index(list(numbers) + [fullwidth(n) for n in numbers] + [f" {n} " for n in numbers])
    n_persons = len(numbers)
    for y in city.years:
        if y < MOOD_FROM:
            continue
        yd = city.days[y]
        rng = stream(city.seed, "mood", y)
        n, D = yd.status.shape
        rows = yd.rows
        propensity = rng.beta(7, 3, n)
        distress = yd.distress
        p = propensity[:, None] * (1 - 0.25 * np.clip(distress - 1, 0, 1))
        answered = yd.attending() & (rng.random((n, D), dtype=np.float32) < p)
        day, row = np.nonzero(answered.T)
        k = len(row)
        feel = distress[row, day] + rng.normal(0, 0.6, k)
        mood = np.digitize(0.9 - 0.55 * feel + rng.normal(0, 0.8, k), [-1.1, -0.2, 1.0]) + 1
        body = np.digitize(0.9 - 0.4 * feel + rng.normal(0, 0.8, k), [-0.9, 0.4]) + 1
        sleep_x = 0.8 - 0.6 * rows.poor_sleep.to_numpy()[row] - 0.3 * feel + rng.normal(0, 0.8, k)
        sleep = np.digitize(sleep_x, [-0.9, 0.0, 1.0]) + 1
        talk = rng.random(k) < 1 / (1 + np.exp(3.8 - 1.3 * feel))
        late = yd.status[row, day] == LATE
        second = np.where(late, rng.integers(9 * 3600, 10 * 3600 + 40 * 60, k),
                          rng.integers(7 * 3600 + 40 * 60, 8 * 3600 + 35 * 60, k))
        variant = rng.choice(3, size=k, p=[0.95, 0.03, 0.02])
        order = np.lexsort((second, day))
        stamp = yd.cal.days[day].astype("datetime64[s]") + second.astype("timedelta64[s]")
        frame = pd.DataFrame({
            "checkin_date": stamp,
            "school_code": city.codes(yd.school_on(day, row)),
            "pupil_id": pd.Categorical.from_codes(rows.pid.to_numpy()[row] + n_persons * variant, categories=typed),
            "mood": mood,
            "body": body,
            "sleep": sleep,
            "want_to_talk": talk,
        })
        yield frame.iloc[order]
