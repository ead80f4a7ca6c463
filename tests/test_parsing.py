"""Tests for toda_platform.parsing against the shared test vectors and the real exports' quirks."""

from __future__ import annotations

import codecs
import csv
import os
import pickle
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toda_platform.parsing import (
    ParseError,
    decode_bytes,
    detect_encoding,
    normalise_text,
    parse_date,
    parse_grade,
    school_type_of_code,
)


# ---------------------------------------------------------------------------------------------
# Shared test vectors: read from /work/shared/testdata at test time, never copied here.


def _testdata_dir() -> Path:
    override = os.environ.get("TODA_TESTDATA")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "shared" / "testdata"


def _vector_rows(name: str) -> list[dict[str, str]]:
    path = _testdata_dir() / name
    if not path.is_file():
        pytest.fail(
            f"shared test vectors not found at {path}; set TODA_TESTDATA to the testdata folder",
            pytrace=False,
        )
    with path.open(encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


def _params(rows: list[dict[str, str]]) -> list:
    return [pytest.param(row, id=f"{row['input']!r}-{row['note']}") for row in rows]


@pytest.mark.parametrize("row", _params(_vector_rows("dates.csv")))
def test_date_vector(row):
    raw, expected = row["input"], row["expected"]
    if expected == "empty":
        assert parse_date(raw) is None
    elif expected == "invalid":
        with pytest.raises(ParseError) as error:
            parse_date(raw)
        assert raw in str(error.value)
        assert error.value.value == raw
    else:
        assert parse_date(raw) == date.fromisoformat(expected)


@pytest.mark.parametrize("row", _params(_vector_rows("grades.csv")))
def test_grade_vector(row):
    raw, school_type, expected = row["input"], row["school_type"] or None, row["expected"]
    if expected == "empty":
        assert parse_grade(raw, school_type) is None
    elif expected == "invalid":
        with pytest.raises(ParseError) as error:
            parse_grade(raw, school_type)
        assert raw in str(error.value)
        assert error.value.value == raw
    else:
        assert parse_grade(raw, school_type) == int(expected)


# ---------------------------------------------------------------------------------------------
# Dates beyond the vectors


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024.4.8", date(2024, 4, 8)),
        ("20240408", date(2024, 4, 8)),
        ("２０２４年４月８日", date(2024, 4, 8)),
        ("2024-04-08T08:12:33", date(2024, 4, 8)),
        ("r6.4.8", date(2024, 4, 8)),
        ("R6/4/8", date(2024, 4, 8)),
        ("Ｒ６．４．８", date(2024, 4, 8)),
        ("令和 6年 4月 8日", date(2024, 4, 8)),
        ("平01.01.08", date(1989, 1, 8)),
        ("昭和元年12月25日", date(1926, 12, 25)),
        ("大正元年7月30日", date(1912, 7, 30)),
        ("T15.12.24", date(1926, 12, 24)),
        ("明治45年7月29日", date(1912, 7, 29)),
        ("M1.10.23", date(1868, 10, 23)),
        ("\u3000令和６年４月８日\u3000", date(2024, 4, 8)),
        (None, None),
        ("   ", None),
        ("\u3000", None),
    ],
)
def test_parse_date_more_forms(raw, expected):
    assert parse_date(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason_part"),
    [
        ("令和6年2月30日", "February 2024 has 29 days"),
        ("平成32年4月1日", "after 平成 ended on 2019-04-30"),
        ("H32.4.1", "after 平成 ended on 2019-04-30"),
        ("令和1年4月1日", "before 令和 began on 2019-05-01"),
        ("昭和64年1月8日", "after 昭和 ended on 1989-01-07"),
        ("平成元年1月7日", "before 平成 began on 1989-01-08"),
        ("R0.4.1", "there is no 令和0年"),
        ("2024/13/1", "no month 13"),
        ("2024/0/1", "no month 0"),
        ("2024/4/0", "no day 0"),
        ("0000-01-01", "no year 0"),
        ("令和6年", "month and day are missing"),
        ("2024年4月", "day is missing"),
        ("R6.4", "day is missing"),
        ("2024/4-8", "not a date"),
        ("2024", "month and day are missing"),
        ("明日", "not a date"),
    ],
)
def test_parse_date_rejects_with_reason(raw, reason_part):
    with pytest.raises(ParseError) as error:
        parse_date(raw)
    assert reason_part in error.value.reason
    assert raw in str(error.value)


def test_parse_error_is_a_value_error_and_pickles():
    with pytest.raises(ValueError):
        parse_date("令和6年2月30日")
    error = ParseError("x", "because")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.value, copy.reason, str(copy)) == ("x", "because", str(error))


def test_parse_date_is_cached_for_repeated_values_and_errors():
    assert parse_date("R5.3.31") is parse_date("R5.3.31")
    for _ in range(2):  # a cached failure still raises a fresh error each time
        with pytest.raises(ParseError):
            parse_date("H25.2.29")


_ERAS = (  # name, letter, start: an independent copy of the era table for the property tests
    ("昭和", "S", date(1926, 12, 25)),
    ("平成", "H", date(1989, 1, 8)),
    ("令和", "R", date(2019, 5, 1)),
)
_FULL_WIDTH = str.maketrans("0123456789/-.", "０１２３４５６７８９／－．")


def _written_forms(day: date) -> list[str]:
    """Every way the city's exports write this date."""
    name, letter, start = next(era for era in reversed(_ERAS) if era[2] <= day)
    year, month, dom = day.year, day.month, day.day
    era_year = year - start.year + 1
    forms = [
        day.isoformat(),
        f"{year}/{month}/{dom}",
        f"{year}/{month:02}/{dom:02}",
        f"{year}.{month}.{dom}",
        f"{year:04}{month:02}{dom:02}",
        f"{year}年{month}月{dom}日",
        f"{year}/{month}/{dom} 8:12:33",
        f" {day.isoformat()} ",
        f"{letter}{era_year}.{month}.{dom}",
        f"{letter}{era_year:02}.{month:02}.{dom:02}",
        f"{name[0]}{era_year:02}.{month:02}.{dom:02}",
        f"{name}{era_year}年{month}月{dom}日",
    ]
    if era_year == 1:
        forms.append(f"{name}元年{month}月{dom}日")
    return forms + [form.translate(_FULL_WIDTH) for form in forms]


@settings(max_examples=300, deadline=None)
@given(st.dates(min_value=date(1926, 12, 25), max_value=date(2040, 12, 31)))
def test_every_written_form_parses_back(day):
    for form in _written_forms(day):
        assert parse_date(form) == day, form


_DATE_LIKE = st.from_regex(
    r"(令和|平成|昭和|大正|明治|[令平昭大明RHSTMr]|)[0-9０-９元]{1,4}[-/.年．／－]?[0-9０-９]{0,3}"
    r"[-/.月．／－]?[0-9０-９]{0,3}日?( [0-9]{1,2}:[0-9]{2}(:[0-9]{2})?)?",
    fullmatch=True,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), _DATE_LIKE))
def test_parse_date_only_raises_parse_error(text):
    try:
        result = parse_date(text)
    except ParseError as error:
        assert error.value == text
    else:
        assert result is None or isinstance(result, date)


# ---------------------------------------------------------------------------------------------
# Grades beyond the vectors


@pytest.mark.parametrize(
    ("raw", "school_type", "expected"),
    [
        ("小学1年", None, 1),
        ("小学校1年", None, 1),
        ("中学3年", None, 9),
        ("中学校3年", None, 9),
        ("中学校第2学年", None, 8),
        ("小3", "小", 3),
        ("小3", "elementary", 3),
        ("2年", "junior_high", 8),
        ("3年生", "小", 3),
        ("第二学年", "中", 8),
        ("８", None, 8),
        ("9", "中", 9),
        (None, None, None),
        ("", "小", None),
        ("\u3000", None, None),
    ],
)
def test_parse_grade_more_forms(raw, school_type, expected):
    assert parse_grade(raw, school_type) == expected


@pytest.mark.parametrize(
    ("raw", "school_type", "reason_part"),
    [
        ("1", None, "ambiguous"),
        ("6", None, "ambiguous"),
        ("5", "", "ambiguous"),  # a blank school type is unknown
        ("1年", None, "ambiguous"),
        ("0", None, "no school year 0"),
        ("10", None, "no school year 10"),
        ("小7", None, "grades 1-6"),
        ("中4", None, "grades 1-3"),
        ("中0", None, "grades 1-3"),
        ("7", "小", "grades 1-6"),
        ("4", "中", "grades 1-3"),
        ("小1", "中", "elementary school grade given for a junior high school"),
        ("高1", None, "not a grade"),
        ("three", "小", "not a grade"),
    ],
)
def test_parse_grade_rejects_with_reason(raw, school_type, reason_part):
    with pytest.raises(ParseError) as error:
        parse_grade(raw, school_type)
    assert reason_part in error.value.reason
    assert raw in str(error.value)


def test_parse_grade_rejects_unknown_school_type():
    with pytest.raises(ParseError, match="unknown school type"):
        parse_grade("1", "high_school")


_SCHOOL_TYPES = st.sampled_from([None, "", "小", "中", "elementary", "junior_high"])
_GRADE_LIKE = st.from_regex(r"(小|中|小学|中学校|)第?[0-9０-９一二三九]{1,2}(年|年生|学年|)", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), _GRADE_LIKE), _SCHOOL_TYPES)
def test_parse_grade_only_raises_parse_error(text, school_type):
    try:
        result = parse_grade(text, school_type)
    except ParseError as error:
        assert error.value == text
    else:
        assert result is None or result in range(1, 10)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("B111221000011", "小"),
        ("C111221000010", "中"),
        (" C111221000010 ", "中"),
        ("D111221000019", None),  # 高等学校
        ("B11122100001", None),  # 12 characters
        ("", None),
    ],
)
def test_school_type_of_code(code, expected):
    assert school_type_of_code(code) == expected


# ---------------------------------------------------------------------------------------------
# Text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("１２３", "123"),
        ("ＡＢＣａｂｃ", "ABCabc"),
        ("２０２４／４／８", "2024/4/8"),
        ("２０２４－０４－０８", "2024-04-08"),
        ("山田\u3000太郎", "山田 太郎"),
        ("ﾔﾏﾀﾞ ﾀﾛｳ", "ヤマダ タロウ"),
        ("ｶﾞｯｺｳ", "ガッコウ"),
        ("  髙橋   一郎 \t", "髙橋 一郎"),
        ("山﨑\n花子", "山﨑 花子"),
        ("やまだ", "やまだ"),  # hiragana and full-width katakana are already canonical
        ("ヤマダ", "ヤマダ"),
        ("", None),
        (" \u3000 ", None),
        (None, None),
    ],
)
def test_normalise_text(raw, expected):
    assert normalise_text(raw) == expected


@given(st.text())
def test_normalise_text_is_idempotent(text):
    once = normalise_text(text)
    assert normalise_text(once) == once


# ---------------------------------------------------------------------------------------------
# Encodings

_REGISTRY = (
    "学籍番号,氏名,ふりがな,備考\n"
    "1,髙橋 一郎,ﾀｶﾊｼ ｲﾁﾛｳ,①\n"
    "2,山﨑 花子,やまさき はなこ,4月～7月\n"
    "3,山田 太郎,ﾔﾏﾀﾞ ﾀﾛｳ,\n"
)


@pytest.mark.parametrize("encoding", ["cp932", "utf-8-sig", "utf-8"])
@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_round_trip_through_real_encodings(encoding, newline):
    data = _REGISTRY.replace("\n", newline).encode(encoding)
    assert detect_encoding(data) == encoding
    assert decode_bytes(data) == (_REGISTRY, encoding)


def test_utf16_with_bom_is_text():
    data = _REGISTRY.encode("utf-16")
    assert decode_bytes(data) == (_REGISTRY, "utf-16")


def test_shift_jis_cannot_hold_real_names_so_cp932_is_used():
    with pytest.raises(UnicodeEncodeError):
        "髙".encode("shift_jis")
    assert b"\x81\x60".decode("shift_jis") == "\u301c"  # WAVE DASH under plain shift_jis
    assert decode_bytes(b"\x81\x60") == ("\uff5e", "cp932")  # FULLWIDTH TILDE, as Windows shows it


@pytest.mark.parametrize("encoding", ["cp932", "utf-8", "utf-8-sig"])
def test_truncated_export_keeps_its_encoding(encoding):
    complete = _REGISTRY.encode(encoding)
    last_name = "山田".encode(encoding).removeprefix(codecs.BOM_UTF8)
    cut = complete[: complete.rindex(last_name) + 1]  # one byte into 山
    assert detect_encoding(cut) == encoding
    text, _ = decode_bytes(cut)
    assert text == _REGISTRY[: _REGISTRY.rindex("山田")]


def test_invalid_byte_in_the_middle_is_not_forgiven_as_truncation():
    data = "髙橋,".encode() + b"\xc0\xaf" + ",山﨑".encode()[:-1]  # overlong '/', then cut
    with pytest.raises(ParseError, match="not text"):
        detect_encoding(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00",
        b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00",
        _REGISTRY.encode("cp932") + b"\x00",
    ],
)
def test_binary_is_not_text(data):
    with pytest.raises(ParseError, match="not text"):
        detect_encoding(data)
    with pytest.raises(ParseError):
        decode_bytes(data)


def test_other_encodings_fall_back_to_detection():
    data = ("Café au lait, naïve résumé, déjà vu, crème brûlée.\n" * 5).encode("cp1252")
    text, encoding = decode_bytes(data)
    assert encoding not in ("utf-8", "utf-8-sig", "cp932")
    assert codecs.lookup(encoding)  # a real Python codec name
    assert text.startswith("Caf")


def test_empty_bytes_are_empty_text():
    assert decode_bytes(b"") == ("", "utf-8")
