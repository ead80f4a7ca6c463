"""The city file: Toda's merged spec is exactly the catalogue as it was before the split, and every
error in a city file names the file and the key path."""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict
from pathlib import Path

import pytest

from toda_platform import catalogue
from toda_platform.city import CityFileError, City, load_city, parse_city
from toda_platform.school_calendar import BREAKS, SchoolCalendar
from toda_platform.settings import Paths

BEFORE = Path(__file__).parent / "data" / "toda_catalogue_before.json"
TODA_FILE = Path(catalogue.__file__).with_name("cities") / "toda.toml"


def toda_raw() -> dict:
    return tomllib.loads(TODA_FILE.read_text(encoding="utf-8"))


def errors_of(raw: dict, name: str = "warabi.toml") -> CityFileError:
    with pytest.raises(CityFileError) as e:
        parse_city(raw, Path(name))
    return e.value


def test_toda_merged_spec_equals_the_catalogue_before_the_split():
    """Headers, accepted aliases, pseudonym headers, raw value maps (order and types) and every
    export setting: what the reader and the generator used before the split."""
    before = json.loads(BEFORE.read_text(encoding="utf-8"))
    toda = load_city("toda")
    assert list(toda.specs) == list(before) == list(catalogue.CATALOGUE)
    for key, old in before.items():
        spec = toda.spec(key)
        export = asdict(spec.export)
        assert export.pop("layout") == "long" and export.pop("grid") is None
        assert export == old["export"], key
        assert [c.name for c in spec.columns] == [c["name"] for c in old["columns"]]
        for col, was in zip(spec.columns, old["columns"]):
            assert list(col.headers) == was["headers"], (key, col.name)
            assert list(col.pseudonym_headers) == was["pseudonym_headers"], (key, col.name)
            values = None if col.values is None or col.kind not in ("category", "multi", "bool") else [
                [k, v] for k, v in col.values.items()]
            assert values == was["values"], (key, col.name)
            if values:  # types kept: True is not 1, 4 is not "4"
                assert [type(v) for _, v in col.values.items()] == [type(v) for _, v in was["values"]]
    status = toda.spec("attendance_daily").column("status")
    assert status.header == "出欠" and status.values["欠席(病気)"] == "absent_sick"
    assert toda.spec("mood_checkin").column("mood").sql_type == "INTEGER"
    assert toda.spec("counseling_records").column("linked_agency").values["○"] is True


def test_meaning_only_catalogue_has_no_headers_and_says_where_they_are():
    col = catalogue.spec("attendance_daily").column("status")
    assert col.headers == () and col.values is None
    assert col.codes == ("present", "absent_sick", "absent_other", "suspended", "mourning", "late", "early_leave")
    with pytest.raises(LookupError, match="City.spec"):
        col.header
    assert catalogue.spec("attendance_daily").export is None


def test_city_identity_and_legal_text_take_the_board_name():
    toda = load_city("toda")
    assert (toda.name, toda.title_ja, toda.board_ja) == ("toda", "戸田市", "戸田市教育委員会")
    assert toda.spec("attendance_daily").use.legal_basis.startswith("戸田市教育委員会が、学校教育に関する所掌事務")
    raw = toda_raw()
    raw["city"] = {"name": "warabi", "title_ja": "蕨市", "board_ja": "蕨市教育委員会"}
    warabi = parse_city(raw, Path("warabi.toml"))
    basis = warabi.spec("school_life_survey").use.legal_basis
    assert basis.startswith("蕨市教育委員会が、") and "戸田" not in basis
    # the prefecture's and the welfare department's wording is not the board's
    assert warabi.spec("prefectural_achievement").use.legal_basis.startswith("埼玉県教育委員会が実施し")


def test_pilot_schools_gate_publication():
    toda = load_city("toda")
    assert toda.pilot_schools == () and toda.published("B111222333444")
    raw = toda_raw()
    raw["publication"] = {"pilot_schools": ["B111222333444"]}
    city = parse_city(raw, Path("x.toml"))
    assert city.published("B111222333444") and not city.published("C111222333444")


def test_calendar_from_the_city_file(tmp_path):
    toda = load_city("toda")
    assert toda.calendar == SchoolCalendar()  # Toda's file repeats the former defaults
    assert toda.calendar.breaks == BREAKS
    raw = toda_raw()
    raw["calendar"] = {"breaks": [["07-20", "08-31"], ["12-25", "01-07"], ["03-24", "04-05"]],
                       "closed": [tomllib.loads("d = 2026-06-01")["d"]]}
    city = parse_city(raw, Path("x.toml"))
    assert city.calendar.breaks[0] == ((7, 20), (8, 31))
    assert len(city.calendar.closed) == 1


def test_home_city_file_then_env_then_toda(tmp_path, monkeypatch):
    monkeypatch.delenv("TODA_CITY", raising=False)
    paths = Paths.from_env(tmp_path)
    assert paths.city.name == "toda"
    raw = TODA_FILE.read_text(encoding="utf-8").replace('name = "toda"', 'name = "warabi"', 1)
    other = tmp_path / "elsewhere.toml"
    other.write_text(raw, encoding="utf-8")
    monkeypatch.setenv("TODA_CITY", str(other))
    assert paths.city.name == "warabi"
    paths.city_file.write_text(raw.replace('name = "warabi"', 'name = "kawaguchi"', 1), encoding="utf-8")
    assert paths.city.name == "kawaguchi"  # the home's own file wins
    assert SchoolCalendar.load(tmp_path) == paths.city.calendar


@pytest.mark.parametrize("edit, path, words", [
    (lambda r: r["sources"]["attendance_daily"]["headers"].update(statuss=["x"]),
     "sources.attendance_daily.headers.statuss", "unknown column 'statuss'"),
    (lambda r: r["sources"]["attendance_daily"]["headers"].pop("status"),
     "sources.attendance_daily.headers", "missing column 'status'"),
    (lambda r: r["sources"]["attendance_daily"].update(encoding="latin-1"),
     "sources.attendance_daily.encoding", "'cp932'"),
    (lambda r: r["sources"]["rst"].update(delimiter=";"),
     "sources.rst.delimiter", "Unknown key (the schema has no such key)"),
    (lambda r: r["city"].pop("board_ja"), "city.board_ja", "Missing: this key is required"),
    (lambda r: r["sources"]["attendance_daily"]["values"].update(status=5),
     "sources.attendance_daily.values.status", "value should be a valid string or a valid dictionary"),
    (lambda r: r["sources"]["attendance_daily"]["values"].update(status="no_such_set"),
     "sources.attendance_daily.values.status", "no value set 'no_such_set'"),
    (lambda r: r["value_sets"]["attendance_status"].update({"◎": "presnt"}),
     'value_sets.attendance_status."◎"', "'presnt' is not a code of status"),
    (lambda r: r["value_sets"]["yes_no"].update({"要": "yes"}),
     'value_sets.yes_no."要"', "is not true or false"),
    (lambda r: r["sources"]["rst"].setdefault("values", {}).update(dependency={"a": "b"}),
     "sources.rst.values.dependency", "it has no value map"),
    (lambda r: r["sources"]["rst"].update(file_name="RST.csv"),
     "sources.rst.file_name", "needs {period}"),
    (lambda r: r["sources"].pop("attendance_daily"), "sources", "missing attendance_daily: every city exports"),
    (lambda r: r["sources"].update(lunch_money=r["sources"]["rst"]), "sources.lunch_money", "unknown source"),
    (lambda r: r["publication"].update(pilot_schools=["B1234"]),
     "publication.pilot_schools.0", "not a 学校コード"),
    (lambda r: r["city"].update(name="Toda City"), "city.name", "should match pattern"),
    (lambda r: r.update(schema_version=2), "schema_version", "1"),
    (lambda r: r["calendar"].update(breaks=[["07-21", "08-32"]]), "calendar.breaks.0", "MM-DD"),
    (lambda r: r["sources"]["attendance_daily"].update(layout="monthly_grid"),
     "sources.attendance_daily.grid", "needs a [grid] section"),
    (lambda r: r["sources"]["attendance_daily"].update(
        layout="monthly_grid", grid={"month": ["年月"], "day_header": "{day}日", "marks": {"◎": "star"}}),
     'sources.attendance_daily.grid.marks."◎"', "'star' is not a code of status"),
    (lambda r: r["sources"]["rst"].update(
        layout="monthly_grid", grid={"month": ["年月"], "day_header": "{day}日", "marks": {"／": "present"}}),
     "sources.rst.grid.status_column", "not a category column of rst"),
    (lambda r: r["sources"]["rst"].update(total_row="yes"), "sources.rst.total_row", "valid boolean"),
    (lambda r: r["sources"]["attendance_daily"].setdefault("pseudonym_headers", {}).update(pupil_id=["仮名"]),
     "sources.attendance_daily.pseudonym_headers.pupil_id", "never arrives pseudonymised"),
])
def test_errors_name_the_file_and_the_key_path(edit, path, words):
    raw = toda_raw()
    edit(raw)
    error = errors_of(raw)
    assert path in error.paths, str(error)
    line = next(line for line in str(error).splitlines() if line.startswith(f"warabi.toml: {path}: "))
    assert words in line, line


def test_every_problem_is_reported_at_once():
    raw = toda_raw()
    raw["sources"]["rst"]["headers"]["depndency"] = ["係り受け"]
    raw["value_sets"]["sex"]["X"] = "other"
    error = errors_of(raw)
    assert {"sources.rst.headers.depndency", "value_sets.sex.X"} <= set(error.paths)
    assert error.paths.count("value_sets.sex.X") == 1  # said once, though two sources use the set


def test_a_file_that_is_not_toml_names_the_file(tmp_path):
    bad = tmp_path / "broken.toml"
    bad.write_text("schema_version = \n", encoding="utf-8")
    with pytest.raises(CityFileError, match=r"^broken.toml: not TOML"):
        load_city(bad)
    with pytest.raises(FileNotFoundError, match="no packaged city 'atlantis'"):
        load_city("atlantis")


def test_city_is_a_value_object_per_file_version(tmp_path):
    assert load_city("toda") is load_city("toda")
    assert isinstance(load_city(TODA_FILE), City)


def test_a_city_that_does_not_export_a_source_leaves_its_section_out(tmp_path):
    """Not every city runs RST or AIGROW: their sections are left out, their specs are marked not
    exported (complete, so the empty staging tables and their features build as any other)."""
    raw = toda_raw()
    for key in ("rst", "aigrow"):
        raw["sources"].pop(key)
    city = parse_city(raw, tmp_path / "small.toml")
    assert set(city.not_exported) == {"aigrow", "rst"}
    assert list(city.specs) == list(catalogue.CATALOGUE)  # every source still has a spec, in the catalogue's order
    assert not city.spec("rst").exported and city.spec("attendance_daily").exported
    assert city.spec("rst").columns and city.spec("rst").export is not None
    assert load_city("toda").not_exported == ()
