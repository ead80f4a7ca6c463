"""The whole simulated city, before anything is written: schools, pupils, latent state, days."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Callable

import numpy as np
import pandas as pd

from synthcity.calendar import DEFAULT, SchoolCalendar
from synthcity.daily import YearDays, simulate_year
from synthcity.latent import Latent, build_latent
from synthcity.population import Population, build_population
from synthcity.schools import build_schools
from synthcity.towns import TOWNS, Town


@dataclass
class City:
    seed: int
    years: list[int]
    schools: pd.DataFrame
    population: Population
    latent: Latent
    days: dict[int, YearDays]

    @property
    def persons(self) -> pd.DataFrame:
        return self.population.persons

    def codes(self, school: np.ndarray) -> pd.Categorical:
        """学校コード for school numbers, as a categorical (cheap for millions of rows)."""
        return pd.Categorical.from_codes(np.asarray(school, dtype=int), categories=self.schools.school_code)

    def numbers(self, pid: np.ndarray) -> pd.Categorical:
        """学籍番号 for pids."""
        return pd.Categorical.from_codes(np.asarray(pid, dtype=int), categories=self.persons.student_number)

    @property
    def long_form_school(self) -> int:
        """The school whose staff type attendance in long form (出席, 欠席(病気)…): the last elementary."""
        return int(np.flatnonzero(self.schools.school_type == "elementary")[-1])

    def survey_days(self, y: int, target: date, rows: np.ndarray, spread: int = 3) -> np.ndarray:
        """The day each pupil's school runs a survey: the first school day on or after ``target``
        plus a per-school offset of up to ``spread`` - 1 school days."""
        yd = self.days[y]
        base = yd.cal.index_on_or_after(target)
        school = yd.school_on(base, rows)
        offset = (self.schools.index.to_numpy() * 7 + y) % spread
        return np.minimum(base + offset[school], yd.cal.n - 1)


def simulate(seed: int, pupils: int, n_elementary: int, n_junior_high: int, years: list[int],
             on_year: Callable[[], None] = lambda: None, town: Town = TOWNS["toda"],
             calendar: SchoolCalendar = DEFAULT) -> City:
    schools = build_schools(seed, n_elementary, n_junior_high, town)
    population = build_population(seed, schools, years, pupils, calendar)
    latent = build_latent(seed, population, schools)
    days: dict[int, YearDays] = {}
    prev = None
    for y in years:
        prev = days[y] = simulate_year(seed, y, population, latent, prev, calendar)
        on_year()
    return City(seed, years, schools, population, latent, days)
