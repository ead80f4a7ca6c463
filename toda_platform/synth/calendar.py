"""The school calendar: Japanese national holidays, school breaks and school days.

Holidays are computed from the rules of the 国民の祝日に関する法律 (fixed days, Happy Monday
days, the equinox formula, 振替休日 and 国民の休日, and the Olympic moves of 2020/2021) rather
than taken from a package, so the city's bytes never change with a package update.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import numpy as np

SUMMER_BREAK = ((7, 21), (8, 31))  # inclusive
WINTER_BREAK = ((12, 26), (1, 7))
SPRING_BREAK = ((3, 25), (4, 5))


def _nth_monday(year: int, month: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(7 - first.weekday()) % 7 + 7 * (n - 1))


def _equinox(year: int, base: float) -> int:
    """Day of March (base 20.8431) or September (base 23.2488) of the equinox, valid 1980-2099."""
    return int(base + 0.242194 * (year - 1980) - (year - 1980) // 4)


@lru_cache(maxsize=None)
def holidays(year: int) -> frozenset[date]:
    """National holidays of a calendar year (valid 2007-2099)."""
    days = {
        date(year, 1, 1), _nth_monday(year, 1, 2), date(year, 2, 11),
        date(year, 3, _equinox(year, 20.8431)), date(year, 4, 29), date(year, 5, 3),
        date(year, 5, 4), date(year, 5, 5), _nth_monday(year, 9, 3),
        date(year, 9, _equinox(year, 23.2488)), date(year, 11, 3), date(year, 11, 23),
    }
    if year >= 2020:
        days.add(date(year, 2, 23))  # 天皇誕生日 (Reiwa)
    elif year <= 2018:
        days.add(date(year, 12, 23))  # 天皇誕生日 (Heisei)
    moved = {2020: (date(2020, 7, 23), date(2020, 7, 24), date(2020, 8, 10)),
             2021: (date(2021, 7, 22), date(2021, 7, 23), date(2021, 8, 8))}
    if year in moved:  # 海の日, スポーツの日 and 山の日 moved for the Tokyo Olympics
        days.update(moved[year])
    else:
        days.add(_nth_monday(year, 7, 3))
        days.add(_nth_monday(year, 10, 2))
        if year >= 2016:
            days.add(date(year, 8, 11))
    if year == 2019:
        days.update({date(2019, 4, 30), date(2019, 5, 1), date(2019, 5, 2), date(2019, 10, 22)})
    # 国民の休日: a weekday between two holidays.
    for d in sorted(days):
        between = d + timedelta(days=1)
        if between + timedelta(days=1) in days and between not in days and between.weekday() != 6:
            days.add(between)
    # 振替休日: a holiday on a Sunday moves to the next day that is not a holiday.
    for d in sorted(days):
        if d.weekday() == 6:
            sub = d + timedelta(days=1)
            while sub in days:
                sub += timedelta(days=1)
            days.add(sub)
    return frozenset(days)


def _in_break(d: date) -> bool:
    md = (d.month, d.day)
    (summer_from, summer_to), (winter_from, winter_to), (spring_from, spring_to) = (
        SUMMER_BREAK, WINTER_BREAK, SPRING_BREAK)
    return (summer_from <= md <= summer_to or md >= winter_from or md <= winter_to
            or spring_from <= md <= spring_to)


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
def school_year(year: int) -> SchoolYear:
    d, end = date(year, 4, 1), date(year + 1, 3, 31)
    out = []
    while d <= end:
        if d.weekday() < 5 and d not in holidays(d.year) and not _in_break(d):
            out.append(d)
        d += timedelta(days=1)
    days = np.array(out, dtype="datetime64[D]")
    gap = np.diff(days.astype(int), prepend=days[0].astype(int) - 7)
    return SchoolYear(year, days, gap)
