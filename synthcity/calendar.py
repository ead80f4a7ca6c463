"""The synthetic city's school years: the school days of each (April-March) and what each day is like.

The rules (national holidays, the long vacations) are the platform's own
(:mod:`toda_platform.school_calendar`): the generator and the schedules share one calendar.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import numpy as np

from toda_platform.school_calendar import DEFAULT, SchoolCalendar, holidays, is_school_day  # noqa: F401 (re-exported)


def school_year_of(d: date) -> int:
    return d.year if d.month >= 4 else d.year - 1


@dataclass(frozen=True)
class SchoolYear:
    """The school days of one school year (April-March) and what each day is like."""

    year: int
    days: np.ndarray  # datetime64[D], the school days in order
    gap_before: np.ndarray  # calendar days since the previous school day (1 = consecutive)

    @property
    def n(self) -> int:
        return len(self.days)

    @property
    def months(self) -> np.ndarray:
        return (self.days.astype("datetime64[M]").astype(int) % 12) + 1

    @property
    def weekday(self) -> np.ndarray:
        return (self.days.astype(int) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0

    def index_on_or_after(self, d: date) -> int:
        """Index of the first school day on or after ``d`` (clipped to the last day)."""
        return min(int(np.searchsorted(self.days, np.datetime64(d, "D"))), self.n - 1)

    def date(self, i: int) -> date:
        return self.days[i].astype(date)


@lru_cache(maxsize=None)
def school_year(year: int, calendar: SchoolCalendar = DEFAULT) -> SchoolYear:
    """The school days of a year under the town's calendar (its city file's [calendar])."""
    d, end = date(year, 4, 1), date(year + 1, 3, 31)
    out = []
    while d <= end:
        if is_school_day(d, calendar):
            out.append(d)
        d += timedelta(days=1)
    days = np.array(out, dtype="datetime64[D]")
    gap = np.diff(days.astype(int), prepend=days[0].astype(int) - 7)
    return SchoolYear(year, days, gap)
