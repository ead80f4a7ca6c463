"""Reading the values the city's exports actually contain: text, dates, grades and encodings.

Dates come in Gregorian and Japanese-era (和暦) forms. We parse eras ourselves rather than use
japanera or jpdatetime: japanera reads "S64.1.7" as the year 64 AD and rejects "令和6年4月8日"
under its %-Y directive, and jpdatetime accepts 令和0年 and has no era-letter forms (R6.4.8).

Every function that reads a value raises ParseError for a value it cannot read, with the raw
value and a plain-English reason, so a quality report can show both.
"""

from __future__ import annotations

import codecs
import functools
import re
from calendar import monthrange
from dataclasses import dataclass
from datetime import date

import charset_normalizer
import jaconv


class ParseError(ValueError):
    """A value that cannot be read. Has .value (the raw text) and .reason (plain English)."""

    def __init__(self, value, reason):
        # Both go to args so the error survives pickling (Dagster ships errors between processes).
        super().__init__(value, reason)
        self.value = value
        self.reason = reason

    def __str__(self):
        return f"cannot read {self.value!r}: {self.reason}"


# ---------------------------------------------------------------------------------------------
# Text

_HALF_WIDTH_KANA = re.compile("[\uff61-\uff9f]")


def normalise_text(value: str | None) -> str | None:
    """Fold the width variants that Japanese systems mix freely, so equal text compares equal.

    Full-width ASCII (letters, digits, symbols, U+3000 space) becomes half-width; half-width
    katakana becomes full-width; whitespace is trimmed and collapsed. Kanji such as 髙 and 﨑
    are kept: they are different characters in people's names, not width variants.
    """
    if value is None:
        return None
    if not value.isascii():  # most cells are plain ASCII: skip jaconv for them
        value = jaconv.z2h(value, kana=False, ascii=True, digit=True)
        if _HALF_WIDTH_KANA.search(value):
            value = jaconv.h2z(value, kana=True, ascii=False, digit=False)
    value = " ".join(value.split())
    return value or None


# ---------------------------------------------------------------------------------------------
# Dates


@dataclass(frozen=True)
class _Era:
    name: str
    letter: str
    start: date
    end: date | None  # the day before the next era began; None for the current era


_ERAS = (
    _Era("明治", "M", date(1868, 10, 23), date(1912, 7, 29)),
    _Era("大正", "T", date(1912, 7, 30), date(1926, 12, 24)),
    _Era("昭和", "S", date(1926, 12, 25), date(1989, 1, 7)),
    _Era("平成", "H", date(1989, 1, 8), date(2019, 4, 30)),
    _Era("令和", "R", date(2019, 5, 1), None),
)
# Full name (令和), JIS X 0301 kanji abbreviation (令) and letter (R) all name the same era.
_ERA_BY_PREFIX = {
    prefix: era
    for era in _ERAS
    for prefix in (era.name, era.name[0], era.letter, era.letter.lower())
}
_ERA_PREFIX = "|".join(sorted(_ERA_BY_PREFIX, key=len, reverse=True))
_ERA_YEAR = "[0-9]{1,3}|元"

_SEPARATED_DATE = re.compile(
    r"(?P<year>[0-9]{4})(?P<sep>[-/.])(?P<month>[0-9]{1,2})(?P=sep)(?P<day>[0-9]{1,2})"
    r"(?:[ T][0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?)?"  # form timestamps: date part only
)
_KANJI_DATE = re.compile(r"(?P<year>[0-9]{4}) ?年 ?(?P<month>[0-9]{1,2}) ?月 ?(?P<day>[0-9]{1,2}) ?日")
_COMPACT_DATE = re.compile(r"(?P<year>[0-9]{4})(?P<month>[0-9]{2})(?P<day>[0-9]{2})")
_ERA_DATE = re.compile(
    rf"(?P<era>{_ERA_PREFIX}) ?(?P<year>{_ERA_YEAR})"
    r"(?:(?P<sep>[-/.])(?P<month>[0-9]{1,2})(?P=sep)(?P<day>[0-9]{1,2})"
    r"| ?年 ?(?P<kanji_month>[0-9]{1,2}) ?月 ?(?P<kanji_day>[0-9]{1,2}) ?日)"
)
# Only to explain a rejection: a year, or a year and month, where a full date was expected.
_PARTIAL_DATE = re.compile(
    rf"(?:(?:{_ERA_PREFIX}) ?(?:{_ERA_YEAR})|[0-9]{{4}})"
    r"(?: ?年)?(?P<month>(?: ?[0-9]{1,2} ?月)|[-/.][0-9]{1,2})?"
)

_MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)


def parse_date(value: str | None) -> date | None:
    """Read a date in any form the city's exports use; None for a blank cell."""
    if value is None:
        return None
    result = _read_date(value)
    if isinstance(result, str):
        raise ParseError(value, result)
    return result


@functools.lru_cache(maxsize=65536)
def _read_date(value: str) -> date | str | None:
    """The date, None for blank, or the reason it is unreadable (a str, so it caches)."""
    text = normalise_text(value)
    if text is None:
        return None
    for pattern in (_SEPARATED_DATE, _KANJI_DATE, _COMPACT_DATE):
        match = pattern.fullmatch(text)
        if match:
            return _checked_date(int(match["year"]), int(match["month"]), int(match["day"]))
    match = _ERA_DATE.fullmatch(text)
    if match:
        month, day = match["month"] or match["kanji_month"], match["day"] or match["kanji_day"]
        return _era_date(match["era"], match["year"], int(month), int(day))
    match = _PARTIAL_DATE.fullmatch(text)
    if match:
        missing = "the day is" if match["month"] else "the month and day are"
        return f"not a full date: {missing} missing"
    return "not a date in any known form (e.g. 2024-04-08, 2024/4/8, 令和6年4月8日, R6.4.8)"


def _era_date(prefix: str, written_year: str, month: int, day: int) -> date | str:
    era = _ERA_BY_PREFIX[prefix]
    era_year = 1 if written_year == "元" else int(written_year)
    if era_year == 0:
        return f"not a real date: era years start at 1 (元年), there is no {era.name}0年"
    result = _checked_date(era.start.year + era_year - 1, month, day)
    if isinstance(result, str):
        return result
    written = f"not a real date: {era.name}{era_year}年{month}月{day}日 would be {result}"
    if result < era.start:
        return f"{written}, before {era.name} began on {era.start}"
    if era.end is not None and result > era.end:
        return f"{written}, after {era.name} ended on {era.end}"
    return result


def _checked_date(year: int, month: int, day: int) -> date | str:
    if year == 0:
        return "not a real date: there is no year 0"
    if not 1 <= month <= 12:
        return f"not a real date: there is no month {month}"
    days_in_month = monthrange(year, month)[1]
    if not 1 <= day <= days_in_month:
        month_name = _MONTH_NAMES[month - 1]
        return f"not a real date: {month_name} {year} has {days_in_month} days, so no day {day}"
    return date(year, month, day)


_MONTH = re.compile(
    rf"(?:(?P<era>{_ERA_PREFIX}) ?(?P<era_year>{_ERA_YEAR})|(?P<year>[0-9]{{4}}))"
    r"(?: ?年 ?(?P<kanji_month>[0-9]{1,2}) ?月|[-/.](?P<month>[0-9]{1,2})|(?P<compact>[0-9]{2}))"
)
_SCHOOL_YEAR = re.compile(
    rf"(?:(?P<era>{_ERA_PREFIX}) ?(?P<era_year>{_ERA_YEAR})|(?P<year>[0-9]{{4}}))(?: ?年度?)?"
)


def _gregorian_year(prefix: str | None, era_year: str | None, year: str | None) -> int | str:
    if prefix is None:
        return int(year)
    era = _ERA_BY_PREFIX[prefix]
    n = 1 if era_year == "元" else int(era_year)
    if n == 0:
        return f"era years start at 1 (元年), there is no {era.name}0年"
    gregorian = era.start.year + n - 1
    if era.end is not None and gregorian > era.end.year:
        return f"{era.name}{n}年 would be {gregorian}, after {era.name} ended on {era.end}"
    return gregorian


def parse_month(value: str | None) -> date | None:
    """A year and month (2024-05, 2024年5月, R6.5, 令和6年5月) as the first day of the month."""
    text = normalise_text(value) if value is not None else None
    if text is None:
        return None
    match = _MONTH.fullmatch(text)
    if not match:
        raise ParseError(value, "not a year and month in any known form (e.g. 2024-05, 2024年5月, R6.5)")
    year = _gregorian_year(match["era"], match["era_year"], match["year"])
    if isinstance(year, str):
        raise ParseError(value, f"not a real month: {year}")
    month = int(match["month"] or match["kanji_month"] or match["compact"])
    if not 1 <= month <= 12:
        raise ParseError(value, f"not a real month: there is no month {month}")
    return date(year, month, 1)


def parse_school_year(value: str | None) -> int | None:
    """A school year (年度) named by the calendar year of its April: 2024, 2024年度, R6, 令和6年度.

    平成31年度 and 令和元年度 are the same school year, 2019: April 2019 was still 平成.
    """
    text = normalise_text(value) if value is not None else None
    if text is None:
        return None
    match = _SCHOOL_YEAR.fullmatch(text)
    if not match:
        raise ParseError(value, "not a school year in any known form (e.g. 2024, 2024年度, R6, 令和6年度)")
    year = _gregorian_year(match["era"], match["era_year"], match["year"])
    if isinstance(year, str):
        raise ParseError(value, f"not a real school year: {year}")
    return year


# ---------------------------------------------------------------------------------------------
# Grades

_SCHOOL_TYPE_ALIASES = {"小": "小", "elementary": "小", "中": "中", "junior_high": "中"}
_SCHOOL_NAMES = {"小": "an elementary school", "中": "a junior high school"}
_FIRST_SCHOOL_YEAR = {"小": 1, "中": 7}  # city-wide school year of each school type's grade 1
_GRADE_COUNT = {"小": 6, "中": 3}
_KANJI_DIGITS = str.maketrans("一二三四五六七八九", "123456789")  # formal 第二学年, 小一

_TYPED_GRADE = re.compile(r"(?P<type>[小中])(?:学校?)?第?(?P<number>[0-9]{1,2})(?:年生?|学年)?")
_UNTYPED_GRADE = re.compile(r"第?(?P<number>[0-9]{1,2})(?:年生?|学年)?")


def parse_grade(value: str | None, school_type: str | None = None) -> int | None:
    """Read a grade as the city-wide school year 1..9 (小1..小6 = 1..6, 中1..中3 = 7..9).

    A number without 小/中 is a grade within the pupil's school, so it needs `school_type`
    ('小'/'中' or 'elementary'/'junior_high'; blank means unknown). Without one, only 7..9
    (city-wide numbering) is unambiguous.
    """
    kind = _SCHOOL_TYPE_ALIASES.get(school_type) if school_type else None
    if school_type and kind is None:
        raise ParseError(
            school_type, "unknown school type: expected 小, 中, elementary or junior_high"
        )
    if value is None:
        return None
    result = _read_grade(value, kind)
    if isinstance(result, str):
        raise ParseError(value, result)
    return result


@functools.lru_cache(maxsize=4096)
def _read_grade(value: str, school_type: str | None) -> int | str | None:
    """The school year, None for blank, or the reason it is unreadable (a str, so it caches)."""
    text = normalise_text(value)
    if text is None:
        return None
    text = text.replace(" ", "").translate(_KANJI_DIGITS)
    match = _TYPED_GRADE.fullmatch(text)
    if match:
        written_type = match["type"]
        if school_type is not None and written_type != school_type:
            return f"{_SCHOOL_NAMES[written_type]} grade given for {_SCHOOL_NAMES[school_type]}"
        return _school_year(written_type, int(match["number"]))
    match = _UNTYPED_GRADE.fullmatch(text)
    if not match:
        return "not a grade in any known form (e.g. 小3, 中1, 3年 with the school type, or 1-9)"
    number = int(match["number"])
    if 7 <= number <= 9 and school_type in (None, "中"):
        return number  # city-wide numbering, as in 義務教育学校 (7年生 = 中1)
    if school_type is None:
        if 1 <= number <= 6:
            return f"ambiguous: grade {number} needs the school type (小 or 中)"
        return f"there is no school year {number}: school years run 1-9"
    return _school_year(school_type, number)


def _school_year(school_type: str, grade: int) -> int | str:
    count = _GRADE_COUNT[school_type]
    if not 1 <= grade <= count:
        return f"{_SCHOOL_NAMES[school_type]} has grades 1-{count}, not {grade}"
    return _FIRST_SCHOOL_YEAR[school_type] + grade - 1


def school_type_of_code(school_code: str) -> str | None:
    """School type from a MEXT 学校コード: 13 characters, 'B' = 小 (elementary), 'C' = 中."""
    code = (school_code or "").strip()
    if len(code) != 13:
        return None
    return {"B": "小", "C": "中"}.get(code[0])


# ---------------------------------------------------------------------------------------------
# Encodings

# Shift_JIS by any name is decoded as cp932: real registries contain 髙, 﨑, ① and ～,
# which only Microsoft's cp932 has.
_SHIFT_JIS_FAMILY = frozenset({"shift_jis", "shift_jis_2004", "shift_jisx0213", "cp932"})
_GUESS_SAMPLE_BYTES = 200_000


def detect_encoding(data: bytes) -> str:
    """The codec that decodes these bytes: 'utf-8-sig', 'utf-8', 'cp932', or another codec name.

    Raises ParseError if the bytes are not text. A file cut inside a multi-byte character (a
    truncated export) still gets its encoding: the broken last line is the CSV reader's problem.
    """
    return _detect_and_decode(data)[1]


def decode_bytes(data: bytes) -> tuple[str, str]:
    """(text, encoding): decoded strictly, BOM removed, newlines as \\n.

    An incomplete multi-byte sequence at the very end (a truncated export) is dropped.
    """
    text, encoding = _detect_and_decode(data)
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return text, encoding


def _detect_and_decode(data: bytes) -> tuple[str, str]:
    if data.startswith(codecs.BOM_UTF8):
        candidates = ("utf-8-sig",)
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = ("utf-16",)  # Excel's "Unicode text" export; full of NUL bytes by design
    elif b"\x00" in data:
        raise ParseError(data[:40], "contains NUL bytes, so it is binary data, not text")
    else:
        candidates = ("utf-8", "cp932")
    for encoding in candidates:
        text = _decode_allowing_truncation(data, encoding)
        if text is not None:
            return text, encoding

    best = charset_normalizer.from_bytes(data[:_GUESS_SAMPLE_BYTES]).best()
    if best is None:
        raise ParseError(data[:40], "not text in any supported encoding")
    encoding = "cp932" if codecs.lookup(best.encoding).name in _SHIFT_JIS_FAMILY else best.encoding
    text = _decode_allowing_truncation(data, encoding)
    if text is None:  # the guess came from a sample; the whole file must decode too
        reason = f"not text in any supported encoding (closest guess: {encoding})"
        raise ParseError(data[:40], reason)
    return text, encoding


def _decode_allowing_truncation(data: bytes, encoding: str) -> str | None:
    """Strict decode that drops only an incomplete sequence at the very end; None if invalid.

    An incremental decoder without `final` buffers exactly such a trailing fragment instead of
    failing, while any invalid byte elsewhere still raises.
    """
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    try:
        return decoder.decode(data, final=False)
    except UnicodeDecodeError:
        return None
