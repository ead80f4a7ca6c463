"""The city's school calendar: which days are school days.

Japanese national holidays are computed from the rules of the 国民の祝日に関する法律 (fixed
days, Happy Monday days, the equinox formula, 振替休日 and 国民の休日, and the Olympic moves of
2020/2021) rather than taken from a package, so nothing changes with a package update and nothing
is fetched. The long vacations (summer, winter, spring) are the city's 学校管理規則 dates; a city
whose dates differ says so in its city file's ``[calendar]`` (toda_platform/city.py); a home
that closes on a 開校記念日 or opens on a Saturday says so in ``$TODA_HOME/school_calendar.toml``::

    breaks = [["07-20", "08-31"], ["12-25", "01-07"], ["03-25", "04-05"]]
    closed = ["2026-06-01"]   # 開校記念日, 学校閉庁日 ...
    open = ["2026-10-17"]     # 土曜授業

The synthetic city's generator and the platform's schedules use this one calendar.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

CALENDAR_FILE = "school_calendar.toml"

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


BREAKS = (SUMMER_BREAK, WINTER_BREAK, SPRING_BREAK)


def in_break(d: date, breaks=BREAKS) -> bool:
    """Whether ``d`` falls in one of the (month, day) ranges (inclusive); a range whose start is
    after its end (the winter break) wraps the new year."""
    md = (d.month, d.day)
    return any(start <= md <= end if start <= end else (md >= start or md <= end)
               for start, end in breaks)


@dataclass(frozen=True)
class SchoolCalendar:
    breaks: tuple = BREAKS
    closed: frozenset = field(default_factory=frozenset)  # weekdays without school
    open: frozenset = field(default_factory=frozenset)  # days with school besides the rules

    @classmethod
    def load(cls, home: str | Path) -> "SchoolCalendar":
        """The calendar of ``$TODA_HOME/school_calendar.toml``, or the home's city's (its city
        file's ``[calendar]``)."""
        path = Path(home) / CALENDAR_FILE
        if not path.exists():
            from toda_platform.city import home_city

            return home_city(home).calendar
        data = tomllib.loads(path.read_text(encoding="utf-8"))

        def month_day(text: str) -> tuple[int, int]:
            month, day = text.split("-")
            return int(month), int(day)

        breaks = tuple((month_day(a), month_day(b)) for a, b in data.get("breaks", [])) or BREAKS
        return cls(breaks=breaks, closed=frozenset(date.fromisoformat(d) for d in data.get("closed", [])),
                   open=frozenset(date.fromisoformat(d) for d in data.get("open", [])))


DEFAULT = SchoolCalendar()


def is_school_day(d: date, calendar: SchoolCalendar = DEFAULT) -> bool:
    """A weekday that is no national holiday and in no long vacation, unless the calendar
    closes or opens it explicitly."""
    if d in calendar.closed:
        return False
    if d in calendar.open:
        return True
    return d.weekday() < 5 and d not in holidays(d.year) and not in_break(d, calendar.breaks)
