"""School-level sources: the school list, context ratios and the teachers' side.

Context ratios are counted from the simulated pupils (就学援助 = the share of enrolled pupils
in hardship, as of May 1), so school context and pupils' hidden hardship agree. Teaching
practice items in the teacher survey carry the school's hidden practice effect: that is what a
学校カルテ should find among schools doing well in hard circumstances.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Iterator

import numpy as np
import pandas as pd

from synthcity.city import City
from synthcity.rng import stream

OVERTIME_MEAN = {"elementary": 41.0, "junior_high": 58.0}  # hours a month, national means
# Apr..Mar shape of overtime (the August trough), normalised to mean 1.
_SEASON = np.array([1.25, 1.15, 1.1, 0.95, 0.4, 1.05, 1.1, 1.05, 0.9, 0.95, 1.05, 1.0])
OVERTIME_SEASON = _SEASON / _SEASON.mean()
OVERTIME_SPREAD = 0.45  # SD of log hours between teachers


def school_master(city: City) -> Iterator[pd.DataFrame]:
    s = city.schools
    yield pd.DataFrame({"school_code": s.school_code, "school_name": s.school_name,
                        "school_type": s.school_type, "district": s.district})


def _may_roll(city: City, y: int) -> pd.DataFrame:
    """Pupils on the roll on the first school day of May, with their school and hardship."""
    yd = city.days[y]
    day = yd.cal.index_on_or_after(date(y, 5, 1))
    on = np.flatnonzero(yd.status[:, day] >= 0)
    return pd.DataFrame({"school": yd.school_on(day, on), "hardship": yd.rows.family_hardship.to_numpy()[on]})


def _teachers(city: City, enrolment: pd.Series) -> pd.Series:
    elementary = city.schools.school_type.loc[enrolment.index] == "elementary"
    return (enrolment / np.where(elementary, 17, 13)).round().astype(int) + np.where(elementary, 3, 5)


def school_context(city: City) -> Iterator[pd.DataFrame]:
    s = city.schools
    lasting = stream(city.seed, "context", "schools")
    special = lasting.uniform(4, 9, len(s))
    japanese = lasting.uniform(1, 6, len(s))
    for y in city.years:
        rng = stream(city.seed, "context", y)
        roll = _may_roll(city, y).groupby("school")
        n = len(s)
        enrolment = roll.size().reindex(s.index, fill_value=0)
        aid = (100 * roll.hardship.mean().reindex(s.index, fill_value=0) + rng.normal(0, 0.8, n)).clip(0.5, 60)
        yield pd.DataFrame({
            "school_year": y, "school_code": s.school_code, "enrolment": enrolment.to_numpy(),
            "school_aid_rate": aid.round(1).to_numpy(),
            "child_allowance_rate": (0.45 * aid + rng.normal(0, 0.6, n)).clip(0.1, 40).round(1).to_numpy(),
            "welfare_rate": (0.12 * aid + rng.normal(0, 0.2, n)).clip(0.0, 10).round(1).to_numpy(),
            "special_needs_rate": (special + rng.normal(0, 0.3, n)).round(1),
            "japanese_support_rate": (japanese + rng.normal(0, 0.3, n)).clip(0, 20).round(1),
        })


def teacher_survey(city: City) -> Iterator[pd.DataFrame]:
    s = city.schools
    practice = (s.practice_effect / 0.06).to_numpy()  # in SD of the practice effect
    for y in city.years:
        rng = stream(city.seed, "teacher_survey", y)
        n = len(s)
        teachers = _teachers(city, _may_roll(city, y).groupby("school").size().reindex(s.index, fill_value=0))

        def item(mean, rng=rng, n=n):
            return np.clip(mean + rng.normal(0, 0.08, n), 1, 4).round(2)

        yield pd.DataFrame({
            "school_year": y, "school_code": s.school_code,
            "respondents": (teachers * rng.uniform(0.8, 1.0, n)).round().astype(int).to_numpy(),
            "lesson_improvement": item(3.0 + 0.15 * practice),
            "collaboration": item(3.0 + 0.12 * practice),
            "shared_guidance": item(3.1 + 0.08 * practice - 0.05 * s.climate.to_numpy()),
            "school_climate": item(3.0 - 0.12 * s.climate.to_numpy()),
            "ict_use": item(2.7 + 0.06 * (y - city.years[0]) + rng.normal(0, 0.15, n)),
        })


def _overtime_factor(city: City) -> np.ndarray:
    """Each school's lasting overtime level relative to the national mean."""
    return stream(city.seed, "overtime", "schools").normal(1.0, 0.08, len(city.schools))


def teacher_stress_check(city: City) -> Iterator[pd.DataFrame]:
    s = city.schools
    pressure = (_overtime_factor(city) - 1) / 0.08
    for y in city.years:
        rng = stream(city.seed, "stress", y)
        n = len(s)
        teachers = _teachers(city, _may_roll(city, y).groupby("school").size().reindex(s.index, fill_value=0))

        def scale(mean, rng=rng, n=n):
            return np.clip(mean + rng.normal(0, 0.06, n), 1, 4).round(2)

        yield pd.DataFrame({
            "school_year": y, "school_code": s.school_code,
            "examinees": (teachers * rng.uniform(0.85, 0.98, n)).round().astype(int).to_numpy(),
            "stressors": scale(2.4 + 0.12 * pressure),
            "reactions": scale(2.1 + 0.1 * pressure),
            "support": scale(2.9 - 0.08 * s.climate.to_numpy()),
            "satisfaction": scale(2.8 - 0.05 * pressure),
            "high_stress_rate": np.clip(12 + 3 * pressure + rng.normal(0, 2, n), 2, 30).round(1),
        })


def _share_over(hours: float, mu: np.ndarray) -> np.ndarray:
    """Share of teachers above ``hours`` when log hours ~ Normal(mu, OVERTIME_SPREAD)."""
    z = (math.log(hours) - mu) / OVERTIME_SPREAD
    return 0.5 * (1 - np.vectorize(math.erf)(z / math.sqrt(2)))


def teacher_overtime(city: City) -> Iterator[pd.DataFrame]:
    """Mean monthly overtime per school, and how many teachers pass 45 h and 80 h."""
    s = city.schools
    level = _overtime_factor(city)
    base = s.school_type.map(OVERTIME_MEAN).to_numpy()
    for y in city.years:
        rng = stream(city.seed, "overtime", y)
        roll = _may_roll(city, y).groupby("school").size().reindex(s.index, fill_value=0)
        teachers = _teachers(city, roll).to_numpy()
        trend = 1 - 0.015 * (y - np.mean(city.years))  # 働き方改革: slowly down, national mean mid-history
        frames = []
        for m, season in enumerate(OVERTIME_SEASON):
            month = date(y + (m >= 9), (m + 3) % 12 + 1, 1)
            mean = base * level * season * trend * rng.normal(1, 0.03, len(s))
            mu = np.log(mean) - OVERTIME_SPREAD**2 / 2  # lognormal hours with this mean
            over_45, over_80 = _share_over(45, mu), _share_over(80, mu)
            frames.append(pd.DataFrame({
                "month": np.datetime64(month, "D"), "school_code": s.school_code, "teachers": teachers,
                "mean_overtime_hours": mean.round(1),
                "over_45h_rate": (100 * over_45).round(1),
                "over_80h_count": np.rint(teachers * over_80).astype(int),
            }))
        yield pd.concat(frames, ignore_index=True)
