"""`toda sources profile`: the profiler proposes the right source, mapping and export style for
every export of both synthetic cities, says what it cannot map, and never shows a personal value."""

from __future__ import annotations

import re
import tomllib
from dataclasses import replace
from datetime import date

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from synthcity import CityConfig, generate_city
from synthcity.formats import format_date
from toda_platform.city import load_city, parse_city
from toda_platform.profiler import column_shape, draft_section, knowledge, profile_export, report_lines

SMALL = CityConfig(pupils=300, elementary_schools=2, junior_high_schools=1, years=2)
STYLE_KEYS = ("encoding", "date_format", "grade_format", "total_row", "trailing_blank_lines",
              "fullwidth_digits", "file_cadence", "file_name", "layout")


@pytest.fixture(scope="module", params=["toda", "warabi"])
def landing(request, tmp_path_factory):
    """Each city's exports of the same small population."""
    home = tmp_path_factory.mktemp(request.param)
    generate_city(home, SMALL, progress=False, city_file=request.param)
    return request.param, home / "landing"


def _latest(landing, key):
    return sorted((landing / key).glob("*.csv"))[-1]


def _style(p) -> dict:
    e = p.export
    return {"encoding": e.encoding, "date_format": p.date_format or "iso", "grade_format": p.grade_format or "kanji",
            "total_row": e.total_row, "trailing_blank_lines": e.trailing_blank_lines,
            "fullwidth_digits": e.fullwidth_digits, "file_cadence": p.file_cadence, "file_name": p.file_name,
            "layout": p.layout}


def test_every_export_is_recognised_with_its_mapping_and_style(landing):
    city_name, root = landing
    city = load_city(city_name)
    wrong = {}
    for key, spec in city.specs.items():
        f = _latest(root, key)
        p = profile_export(f.read_bytes(), f.name)
        written = {c.name: c.header for c in spec.columns if c.headers != (c.name,)}  # what the city writes
        if spec.export.grid:
            written = {k: v for k, v in written.items() if k not in ("date", "status")}
        header_line = p.export.headers
        expected_mapping = {k: h for k, h in written.items() if h in header_line}
        style = {k: getattr(spec.export, k) for k in STYLE_KEYS}
        got = _style(p)
        if p.source != key or p.mapping() != expected_mapping or p.missing or p.unmapped or got != style:
            wrong[key] = (p.source, p.mapping(), expected_mapping, {k: (got[k], style[k]) for k in got
                                                                    if got[k] != style[k]})
    assert not wrong, wrong
    assert len(city.specs) == 23


def test_the_grid_is_recognised_with_its_marks(landing):
    city_name, root = landing
    if city_name != "warabi":
        pytest.skip("Toda writes attendance in long form")
    f = _latest(root, "attendance_daily")
    p = profile_export(f.read_bytes(), f.name)
    assert (p.source, p.layout) == ("attendance_daily", "monthly_grid")
    assert p.grid["month"] == "対象月" and p.grid["day_header"] == "{day}日"
    assert p.grid["marks"]["／"] == "present"
    assert set(p.grid["marks"]) <= {"／", "欠", "事", "遅", "早", "公", "忌"}
    assert all(code is not None for code in p.grid["marks"].values())


def test_with_only_todas_knowledge_warabis_new_headers_map_by_shape_or_are_reported(landing):
    city_name, root = landing
    if city_name != "warabi":
        pytest.skip("warabi's exports only")
    toda_only = knowledge([load_city("toda").specs])
    att = _latest(root, "attendance_daily")
    p = profile_export(att.read_bytes(), att.name, know=toda_only)
    assert p.source == "attendance_daily"
    by_header = {m.header: (m.column, m.how) for m in p.columns}
    assert by_header["児童生徒ID"] == ("pupil_id", "shape")  # an unknown alias, 8 digits: the one number column
    assert by_header["学校番号"] == ("school_code", "header")  # Toda accepts 学校番号 too
    assert p.grid["marks"]["／"] is None and p.grid["marks"]["遅"] == "late"  # Toda types 出, not ／
    lines = report_lines(p)
    assert "could not map the grid mark '／': give its status code" in lines
    reg = _latest(root, "pupil_registry")
    p = profile_export(reg.read_bytes(), reg.name, know=toda_only)
    assert p.source == "pupil_registry"
    assert {"pupil_id", "resident_id"} <= set(p.missing)  # two number columns: too close to call
    unmapped = {m.header: m.shape.name for m in p.unmapped}
    assert unmapped["児童生徒ID"] == "8 digits" and unmapped["住民番号"] == "10 digits"
    assert "could not map column '住民番号' (10 digits): it will not be read unless the city file names it" in \
        report_lines(p)


def test_an_unmappable_column_is_reported_by_shape_and_no_personal_value_is_shown(landing):
    city_name, root = landing
    if city_name != "toda":
        pytest.skip("one city is enough")
    f = _latest(root, "pupil_registry")
    text = f.read_bytes().decode("cp932")
    lines = text.split("\r\n")
    lines[0] += ",メモ"
    secret = "山田さんの家に電話"
    lines[1:] = [ln + f",{secret}{i}" if ln else ln for i, ln in enumerate(lines[1:])]
    data = "\r\n".join(lines).encode("cp932")
    p = profile_export(data, f.name)
    assert p.source == "pupil_registry"
    assert [m.header for m in p.unmapped] == ["メモ"]
    out = "\n".join(report_lines(p)) + draft_section(p)
    assert "could not map column 'メモ' (text, 10-12 characters)" in out
    # no value of a personal or unmapped column: numbers, names, birth dates, the memo
    reader = [ln.split(",") for ln in lines[1:4] if ln]
    personal = [row[i] for row in reader for i in (1, 2, 3, 5, 11, 14)]
    assert personal and not [v for v in personal if v and v in out]
    assert secret not in out
    # the 8-digit numbers appear nowhere in the output
    assert not re.search(r"(?<![0-9])[0-9]{8}(?![0-9])", out)


def test_the_draft_is_a_valid_city_file_section(landing, tmp_path):
    """Put the drafts in place of Toda's sections: the city file loads, and reads as the city wrote."""
    city_name, root = landing
    raw = tomllib.loads(load_city("toda").file.read_text(encoding="utf-8"))
    for key in ("attendance_daily", "pupil_registry", "bullying_records"):
        f = _latest(root, key)
        draft = tomllib.loads(draft_section(profile_export(f.read_bytes(), f.name)))
        raw["sources"][key] = draft["sources"][key]
    city = parse_city(raw, tmp_path / "draft.toml")
    want = load_city(city_name)
    for key in ("attendance_daily", "pupil_registry", "bullying_records"):
        assert city.spec(key).export == replace(want.spec(key).export, grid=city.spec(key).export.grid)
        assert {c.name: c.header for c in city.spec(key).columns if c.headers != (c.name,)} == \
            {c.name: c.header for c in want.spec(key).columns if c.headers != (c.name,)
             and not (want.spec(key).export.grid and c.name in ("date", "status"))}


def test_forcing_the_source_and_an_unknown_source(landing):
    city_name, root = landing
    f = _latest(root, "nurse_office_visits")
    p = profile_export(f.read_bytes(), f.name, source="health_checkup")
    assert p.source == "health_checkup" and p.missing  # forced: its own columns are missing
    with pytest.raises(KeyError, match="unknown source 'nope'"):
        profile_export(f.read_bytes(), f.name, source="nope")


def test_the_cli_prints_the_proposal_and_writes_the_draft(landing, tmp_path):
    from toda_platform.cli import main

    city_name, root = landing
    f = _latest(root, "school_master")
    out = tmp_path / "draft.toml"
    result = CliRunner().invoke(main, ["sources", "profile", str(f), "--draft", str(out)])
    assert result.exit_code == 0, result.output
    assert "proposed source: school_master (score 1.00)" in result.output
    assert tomllib.loads(out.read_text(encoding="utf-8"))["sources"]["school_master"]["encoding"] == \
        load_city(city_name).spec("school_master").export.encoding
    bad = CliRunner().invoke(main, ["sources", "profile", str(f), "--source", "nope"])
    assert bad.exit_code == 2 and "unknown source 'nope'" in bad.output


STYLES = ("iso", "slash", "wareki_kanji", "wareki_letter", "wareki_letter_padded")


@settings(max_examples=60, deadline=None)
@given(style=st.sampled_from(STYLES),
       days=st.lists(st.dates(min_value=date(2019, 5, 1), max_value=date(2030, 12, 31)), min_size=3, max_size=30))
def test_a_date_column_shows_its_style(style, days):
    shape = column_shape([format_date(d, style) for d in days])
    assert "date" in shape.kinds
    if style == "wareki_letter" and all(d.month >= 10 and d.day >= 10 and (d.year - 2018) >= 10 for d in days):
        return  # every part two digits: indistinguishable from the padded style
    assert shape.style == style, (shape, [format_date(d, style) for d in days][:3])


def test_excels_unicode_text_is_read_and_the_draft_still_loads(landing):
    city_name, root = landing
    f = _latest(root, "health_checkup")
    text = f.read_bytes().decode(load_city(city_name).spec("health_checkup").export.encoding)
    p = profile_export(text.replace(",", "\t").encode("utf-16"), "健診.txt")
    assert (p.source, p.export.encoding, p.export.delimiter, p.missing) == ("health_checkup", "utf-16", "\t", [])
    draft = tomllib.loads(draft_section(p))["sources"]["health_checkup"]
    assert draft["encoding"] == "utf-8" and "the file is utf-16" in draft_section(p)
