"""How one canonical value is written in a department's export (dates, 和暦, grades, widths).

These functions format single values; the writer applies them to the *distinct* values of a
column only, so formatting 14 million attendance rows costs a few hundred calls.
"""

from __future__ import annotations

from datetime import date, datetime

# (start, kanji name, letter) — newest first. Only eras that pupils' birth dates can reach.
_ERAS = ((date(2019, 5, 1), "令和", "R"), (date(1989, 1, 8), "平成", "H"), (date(1926, 12, 25), "昭和", "S"))

FULLWIDTH_DIGITS = str.maketrans("0123456789", "０１２３４５６７８９")


def era_of(d: date) -> tuple[str, str, int]:
    """(kanji name, letter, year within the era) of a date."""
    for start, name, letter in _ERAS:
        if d >= start:
            return name, letter, d.year - start.year + 1
    raise ValueError(f"{d} is before the eras this city writes")


def _era_year_kanji(n: int) -> str:
    return "元" if n == 1 else str(n)


def format_date(d: date | datetime, style: str) -> str:
    """A date as the department writes it (see ExportStyle.date_format)."""
    if style == "iso":
        return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"
    if style == "slash":
        return f"{d.year}/{d.month}/{d.day}"
    if style == "form_timestamp":  # Google Forms: zero-padded date, unpadded hour
        t = d if isinstance(d, datetime) else datetime(d.year, d.month, d.day)
        return f"{t.year}/{t.month:02d}/{t.day:02d} {t.hour}:{t.minute:02d}:{t.second:02d}"
    name, letter, n = era_of(d if not isinstance(d, datetime) else d.date())
    if style == "wareki_kanji":
        return f"{name}{_era_year_kanji(n)}年{d.month}月{d.day}日"
    if style == "wareki_letter":
        return f"{letter}{n}.{d.month}.{d.day}"
    if style == "wareki_letter_padded":
        return f"{letter}{n:02d}.{d.month:02d}.{d.day:02d}"
    raise ValueError(f"unknown date format {style!r}")


def format_month(d: date, style: str) -> str:
    """A year-month (the first day of the month) in the date style's family."""
    if style in ("iso", "form_timestamp"):
        return f"{d.year:04d}-{d.month:02d}"
    if style == "slash":
        return f"{d.year}/{d.month}"
    name, letter, n = era_of(d)
    if style == "wareki_kanji":
        return f"{name}{_era_year_kanji(n)}年{d.month}月"
    if style == "wareki_letter":
        return f"{letter}{n}.{d.month}"
    if style == "wareki_letter_padded":
        return f"{letter}{n:02d}.{d.month:02d}"
    raise ValueError(f"unknown date format {style!r}")


def format_school_year(year: int, style: str) -> str:
    """年度 in the date style's family: 2024, or R6 / 令和6年度 where the system writes 和暦.

    A school year takes the era in force on May 1 of its first calendar year, so FY2019 is
    令和元年度 as the city calls it.
    """
    if style in ("iso", "slash", "form_timestamp"):
        return str(year)
    name, letter, n = era_of(date(year, 5, 1))
    if style == "wareki_kanji":
        return f"{name}{_era_year_kanji(n)}年度"
    return f"{letter}{n}"


def format_grade(grade: int, style: str) -> str:
    """City-wide school year 1-9 written as 小3/中1, 3年, 3 or 1-9 (see ExportStyle.grade_format)."""
    within = grade if grade <= 6 else grade - 6
    if style == "kanji":
        return f"{'小' if grade <= 6 else '中'}{within}"
    if style == "within_school":
        return f"{within}年"
    if style == "bare_within_school":
        return str(within)
    if style == "citywide":
        return str(grade)
    raise ValueError(f"unknown grade format {style!r}")


def fullwidth(text: str) -> str:
    return text.translate(FULLWIDTH_DIGITS)
