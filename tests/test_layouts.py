"""Attendance as a monthly grid (toda_platform/layouts.py): one row per pupil and month, a column
per day, marks → the same long rows, with errors in the grid's own lines and day columns."""

from __future__ import annotations

import io
import tomllib
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import write_csv
from toda_platform.city import City, load_city, parse_city
from toda_platform.ingest import IngestError, read_file
from toda_platform.layouts import grid_table, long_from_grid

SCHOOL = "B211222400015"
MARKS = {"／": "present", "欠": "absent_sick", "事": "absent_other", "遅": "late", "早": "early_leave",
         "公": "suspended", "忌": "mourning"}
DAY_HEADERS = [f"{d}日" for d in range(1, 32)]
HEADER = ["学校コード", "学籍番号", "氏名", "年月", *DAY_HEADERS]


def grid_city() -> City:
    """Toda's city file with attendance exported as a monthly grid (another vendor's system)."""
    raw = tomllib.loads(load_city("toda").file.read_text(encoding="utf-8"))
    att = raw["sources"]["attendance_daily"]
    att["layout"] = "monthly_grid"
    att["encoding"] = "cp932"
    for gone in ("date", "status", "room", "sub_reason"):
        att["headers"].pop(gone)
    att["values"] = {}
    att["grid"] = {"month": ["年月", "対象月"], "day_header": "{day}日", "marks": MARKS}
    return parse_city(raw, Path("grid.toml"))


SPEC = grid_city().spec("attendance_daily")


def row(pupil: str, month: str, marks: dict[int, str], school: str = SCHOOL, name: str = "戸田 花子") -> list[str]:
    return [school, pupil, name, month, *(marks.get(d, "") for d in range(1, 32))]


def as_bytes(rows: list[list[str]], header=HEADER, encoding="cp932") -> bytes:
    buf = io.StringIO()
    import csv
    csv.writer(buf, lineterminator="\r\n").writerows([header, *rows])
    return buf.getvalue().encode(encoding)


def long_rows(data: bytes) -> list[dict]:
    con = duckdb.connect()
    long = long_from_grid(con, SPEC, data, "出欠_2024-06.csv")
    frame = pacsv.read_csv(io.BytesIO(long.data), convert_options=pacsv.ConvertOptions(
        column_types={h: pa.string() for h in ("学校コード", "学籍番号", "date", "status")})).to_pylist()
    return [dict(r, origin=long.origin[i]) for i, r in enumerate(frame)]


def test_grid_cells_become_long_rows_with_their_grid_line():
    data = as_bytes([row("240001", "2024-06", {3: "／", 4: "欠", 5: "遅"}),
                     row("240002", "令和6年6月", {3: "忌", 28: "／"})])
    rows = long_rows(data)
    assert [(r["学籍番号"], r["date"], r["status"], r["origin"]) for r in rows] == [
        ("240001", "2024-06-03", "／", (2, 3)), ("240001", "2024-06-04", "欠", (2, 4)),
        ("240001", "2024-06-05", "遅", (2, 5)), ("240002", "2024-06-03", "忌", (3, 3)),
        ("240002", "2024-06-28", "／", (3, 28))]
    assert all(r["学校コード"] == SCHOOL and r["氏名"] == "戸田 花子" for r in rows)  # other columns ride along


def test_spec_of_a_grid_maps_marks_to_status_codes():
    status = SPEC.column("status")
    assert {status.values[m] for m in MARKS} == set(MARKS.values())
    assert SPEC.export.layout == "monthly_grid" and SPEC.export.grid.day_name(17) == "17日"


def _error(data: bytes) -> IngestError:
    with pytest.raises(IngestError) as e:
        long_rows(data)
    return e.value


def test_unknown_mark_names_the_grid_line_and_day_column():
    rows = [row(f"2400{i:02d}", "2024-06", {3: "／"}) for i in range(12)]
    rows.append(row("240099", "2024-06", {3: "／", 17: "◎"}))
    e = _error(as_bytes(rows))
    assert e.lines == [14] and e.column == "17日"
    assert e.message.startswith("出欠_2024-06.csv, line 14, column 17日: unknown mark '◎'")


def test_full_width_and_half_width_marks_are_the_same_mark():
    rows = long_rows(as_bytes([row("240001", "2024-06", {3: "/", 4: "／"})]))
    assert [r["status"] for r in rows] == ["／", "／"]


def test_missing_day_column_is_a_header_error():
    header = [h for h in HEADER if h != "15日"]
    data = as_bytes([[c for c, h in zip(row("240001", "2024-06", {3: "／"}), HEADER) if h != "15日"]], header)
    e = _error(data)
    assert e.lines == [1] and "lacks day column 15日" in e.message


def test_a_30_day_month_may_lack_the_31st_but_a_31_day_month_may_not():
    header = HEADER[:-1]
    june = [row("240001", "2024-06", {30: "／"})[:-1]]
    assert [r["date"] for r in long_rows(as_bytes(june, header))] == ["2024-06-30"]
    may = [row("240001", "2024-05", {31: "／"})[:-1]]
    e = _error(as_bytes(may, header))
    assert e.lines == [2] and "2024-05 has 31 days but the grid has no column 31日" in e.message


def test_the_31st_of_a_30_day_month_marked_is_an_error():
    e = _error(as_bytes([row("240001", "2024-06", {3: "／"}), row("240002", "2024-06", {31: "欠"})]))
    assert e.lines == [3] and e.column == "31日" and "day 31, but 2024-06 has 30 days" in e.message


def test_bad_month_and_missing_month_column():
    e = _error(as_bytes([row("240001", "2024-13", {3: "／"})]))
    assert e.lines == [2] and e.column == "年月" and "no month 13" in e.message
    header = [h if h != "年月" else "月" for h in HEADER]
    e = _error(as_bytes([row("240001", "2024-06", {3: "／"})], header))
    assert e.lines == [1] and "no month column (年月、対象月)" in e.message


def test_blank_lines_and_total_rows_are_skipped():
    total = ["合計", "", "", "", *(["12"] * 31)]
    rows = long_rows(as_bytes([row("240001", "2024-06", {3: "／"}), ["" for _ in HEADER], total]))
    assert [(r["学籍番号"], r["origin"]) for r in rows] == [("240001", (2, 3))]


def test_read_file_stages_grid_rows_and_reports_later_errors_on_grid_lines(tmp_path, key):
    con = duckdb.connect()
    good = write_csv(tmp_path / "出欠_2024-06.csv", HEADER,
                     [row("240001", "2024-06", {3: "／", 4: "欠"}), row("240002", "2024-06", {3: "公"})],
                     encoding="cp932")
    staged = read_file(con, SPEC, good, key)
    typed = con.execute("SELECT _line, date, status FROM _typed ORDER BY _line, date").fetchall()
    assert typed == [(2, date(2024, 6, 3), "present"), (2, date(2024, 6, 4), "absent_sick"),
                     (3, date(2024, 6, 3), "suspended")]
    assert staged.rows_read == 3 and staged.period == "2024-06" and staged.days == 2
    # a school code that is no 学校コード: found on the long rows, reported on the grid's line
    bad = write_csv(tmp_path / "出欠_2024-07.csv", HEADER,
                    [row("240001", "2024-07", {1: "／"}), row("240002", "2024-07", {1: "／", 2: "／"}, school="X1")],
                    encoding="cp932")
    with pytest.raises(IngestError) as e:
        read_file(con, SPEC, bad, key)
    assert e.value.lines == [3] and "学校コード" in e.value.message


def test_a_pupil_twice_in_one_month_is_a_duplicate_on_its_grid_lines(tmp_path, key):
    con = duckdb.connect()
    twice = write_csv(tmp_path / "出欠_2024-06.csv", HEADER,
                      [row("240001", "2024-06", {3: "／"}), row("240002", "2024-06", {3: "／"}),
                       row("240001", "2024-06", {3: "欠"})], encoding="cp932")
    with pytest.raises(IngestError) as e:
        read_file(con, SPEC, twice, key)
    assert e.value.lines == [2, 4]


@st.composite
def attendance(draw):
    """Long attendance rows of a few pupils over one or two months: unique (pupil, date)."""
    first = draw(st.dates(date(2019, 4, 1), date(2030, 2, 1))).replace(day=1)
    span = draw(st.integers(1, 59))
    pupils = draw(st.lists(st.from_regex(r"[0-9]{6}", fullmatch=True), min_size=1, max_size=4, unique=True))
    cells = draw(st.dictionaries(
        st.tuples(st.sampled_from(pupils), st.integers(0, span - 1)),
        st.sampled_from(sorted(set(MARKS.values()))), min_size=1, max_size=40))
    return pd.DataFrame([{"date": pd.Timestamp(first + timedelta(days=d)), "school_code": SCHOOL, "pupil_id": p,
                          "status": code} for (p, d), code in cells.items()])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(attendance(), st.sampled_from([lambda d: f"{d.year}-{d.month:02d}", lambda d: f"{d.year}年{d.month}月",
                                      lambda d: f"R{d.year - 2018}.{d.month}"]))
def test_long_to_grid_to_long_gives_back_the_same_rows(frame, month_text):
    columns = [SPEC.column(c) for c in ("date", "school_code", "pupil_id", "status")]
    texts = [pa.array(frame[c.name].astype(str)) for c in columns]
    table = grid_table(SPEC, frame, columns, texts, month_text)
    buf = io.BytesIO()
    pacsv.write_csv(table, buf, pacsv.WriteOptions(quoting_style="needed"))
    back = long_rows(buf.getvalue().decode("utf-8").encode("cp932"))
    got = sorted((r["学籍番号"], r["date"], MARKS[r["status"]]) for r in back)
    want = sorted((p, d.date().isoformat(), s) for p, d, s in zip(frame.pupil_id, frame.date, frame.status))
    assert got == want


def test_the_generator_writes_the_grid_and_staging_gets_the_same_rows_as_from_long_files(tmp_path, key, monkeypatch):
    """The same synthetic pupils exported by Toda (long) and by a grid city: attendance stages to
    the same (pupil, date, school, status) rows; the grid only lacks the room and sub-reason."""
    from toda_platform.ingest import ingest_source
    from toda_platform.settings import Paths
    from synthcity import CityConfig, generate_city

    monkeypatch.setenv("TODA_PSEUDONYM_KEY", key.decode())

    raw = tomllib.loads(load_city("toda").file.read_text(encoding="utf-8"))
    att = raw["sources"]["attendance_daily"]
    att.update(layout="monthly_grid", encoding="cp932", file_name="出席簿_{period}.csv")
    for gone in ("date", "status", "room", "sub_reason"):
        att["headers"].pop(gone)
    att["values"] = {"status": "attendance_status"}  # the builder's raw spellings, then the marks
    att["grid"] = {"month": ["対象月"], "day_header": "{day}", "marks": MARKS}
    grid_file = tmp_path / "grid.toml"
    grid_file.write_text(_toml(raw), encoding="utf-8")
    config = CityConfig(pupils=150, elementary_schools=1, junior_high_schools=1, years=1,
                        today=date(2026, 7, 10))
    staged = {}
    for name in ("toda", "grid"):
        paths = Paths.from_env(tmp_path / name)
        if name == "grid":  # the home says which city it is: the generator writes that city's exports
            paths.home.mkdir(parents=True)
            paths.city_file.write_bytes(grid_file.read_bytes())
        generate_city(paths.home, config, progress=False)
        city = paths.city
        assert city.spec("attendance_daily").export.layout == ("monthly_grid" if name == "grid" else "long")
        if name == "grid":
            first = sorted(paths.landing_dir("attendance_daily").glob("*.csv"))[0]
            head = first.read_bytes().decode("cp932").splitlines()[0].split(",")
            assert first.name.startswith("出席簿_") and head[-31:] == [str(d) for d in range(1, 32)]
            assert "対象月" in head and "出欠" not in head
        sources = ("school_master", "pupil_registry", "attendance_daily")
        if name == "grid":  # through the staging assets: they take the spec from the home's city at run time
            _materialize(paths, sources)
        con = duckdb.connect(str(paths.warehouse))
        for source in sources if name == "toda" else ():
            report = ingest_source(con, city.spec(source), paths, key)
            assert report.count("rejected") == 0, [f.message for f in report.files]
        staged[name] = con.execute("SELECT pupil_id, date, school_code, status FROM staging.attendance_daily "
                                   "ORDER BY ALL").fetchall()
        con.close()
    assert len(staged["toda"]) > 5_000 and {r[3] for r in staged["toda"]} >= {"present", "absent_sick", "late"}
    assert staged["grid"] == staged["toda"]


def _materialize(paths, sources) -> None:
    import dagster as dg

    from assets.sources import staging_assets, staging_checks, staging_key
    from resources import build_resources

    keys = {staging_key(s) for s in sources}
    result = dg.materialize([*(a for a in staging_assets if a.key in keys),
                             *(c for c in staging_checks if {k.asset_key for k in c.check_keys} <= keys)],
                            resources=build_resources(paths), instance=dg.DagsterInstance.ephemeral())
    assert result.success
    for event in result.get_asset_check_evaluations():
        if event.check_name == "table_valid":
            assert event.passed, event.asset_key
    md = result.asset_materializations_for_node("staging__attendance_daily")[0].metadata
    assert md["files_quarantined"].value == 0 and md["files_applied"].value >= 3


def _toml(data: dict, prefix: str = "") -> str:
    """A minimal TOML writer for the test's city file (tables, strings, numbers, bools, lists)."""
    import json

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return str(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, date):
            return v.isoformat()
        return json.dumps(v, ensure_ascii=False)

    lines = [f"{json.dumps(k, ensure_ascii=False)} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for k, v in data.items():
        if isinstance(v, dict):
            name = f"{prefix}.{json.dumps(k, ensure_ascii=False)}" if prefix else json.dumps(k, ensure_ascii=False)
            lines += ["", f"[{name}]", _toml(v, name)]
    return "\n".join(lines)
