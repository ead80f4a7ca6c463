"""The bad-input corpus: broken exports landed beside good ones, each with its asserted outcome.

Every case starts from a real file of a tiny synthetic city (generated once for the module, its
school master and 学齢簿 staged once and copied into each test's TODA_HOME), breaks it the way a
department's hand export breaks, lands it next to good files of the same source and runs the real
ingestion (``ingest_source``; a few cases through the Dagster asset and its checks). Asserted for
each: the outcome (quarantined with a ``.reasons.json`` naming check, file, lines in the original
file, column and the Japanese header as written; or applied with a warning; or applied), the
message, that the staging table is exactly what it was before apart from the good files' rows, and
that those good files applied.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import random
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import dagster as dg
import duckdb
import pandas as pd
import pytest

from tests.conftest import TEST_KEY, write_csv
from toda_platform.city import load_city
from toda_platform.ingest import FileOutcome, SourceReport, ensure_table, ingest_source
from toda_platform.pseudonym import pseudonymise
from toda_platform.settings import Paths
from synthcity import CityConfig, generate_city

CATALOGUE = load_city("toda").specs  # Toda's specs: what each source means and how Toda writes it

TINY = CityConfig(pupils=300, elementary_schools=1, junior_high_schools=1, years=2)
ATT, NURSE, HEALTH, QU, INFANT = ("attendance_daily", "nurse_office_visits", "health_checkup", "qu_survey",
                                  "infant_checkup")
TOKYO = dt.timezone(dt.timedelta(hours=9))
FORMULA = '=HYPERLINK("http://x","y")'
K = 10  # the data row (0-based) most cases break: line K + 2 of the file


# ---------------------------------------------------------------------------------------------
# The city, its real exports, and a TODA_HOME per test with the references already staged
# ---------------------------------------------------------------------------------------------

@dataclass
class Export:
    """A real landed file as rows of text, to be broken and written again as the department would."""

    name: str
    header: list[str]
    rows: list[list[str]]
    encoding: str
    newline: str
    mtime: float

    def col(self, header: str) -> int:
        return self.header.index(header)

    def copy(self, **changes) -> "Export":
        fresh = dict(header=list(self.header), rows=[list(r) for r in self.rows])
        return replace(self, **{**fresh, **changes})

    def line(self, record: list[str]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator=self.newline).writerow(record)
        return buf.getvalue()

    def text(self) -> str:
        return "".join(self.line(r) for r in [self.header, *self.rows])

    def write(self, path: Path, *, encoding: str | None = None, mtime: float | None = None) -> Path:
        return write_csv(path, self.header, self.rows, encoding=encoding or self.encoding,
                         newline=self.newline, mtime=self.mtime if mtime is None else mtime)


def read_export(path: Path) -> Export:
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        encoding = "utf-8-sig"
    else:
        try:
            data.decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError:
            encoding = "cp932"
    text = data.decode(encoding)
    records = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
    return Export(path.name, records[0], records[1:], encoding, "\r\n" if "\r\n" in text else "\n",
                  path.stat().st_mtime)


@dataclass
class City:
    paths: Paths  # the generated city; its warehouse holds the school master and the registries

    def real(self, source: str, name: str) -> Path:
        return self.paths.landing_dir(source) / name

    def export(self, source: str, name: str) -> Export:
        return read_export(self.real(source, name))


@pytest.fixture(scope="module")
def city(tmp_path_factory) -> City:
    home = tmp_path_factory.mktemp("city") / "toda"
    generate_city(home, TINY, progress=False)
    paths = Paths.from_env(home)
    con = duckdb.connect(str(paths.warehouse))
    try:
        for source in ("school_master", "pupil_registry"):
            report = ingest_source(con, CATALOGUE[source], paths, TEST_KEY.encode())
            assert {f.outcome for f in report.files} == {"applied"}, [f.message for f in report.files]
    finally:
        con.close()
    return City(paths)


@pytest.fixture
def db(city, paths, request) -> duckdb.DuckDBPyConnection:
    """This test's warehouse, starting with the city's school master and 学齢簿 staged."""
    shutil.copy(city.paths.warehouse, paths.warehouse)
    if city.paths.identity.exists():  # the registries' names, kept apart from the warehouse
        shutil.copytree(city.paths.identity, paths.identity)
    return request.getfixturevalue("con")


def land_real(city: City, paths: Paths, source: str, name: str) -> Path:
    target = paths.landing_dir(source) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(city.real(source, name), target)  # keeps the export's modification time
    return target


def staged(con, source: str) -> pd.DataFrame:
    return con.execute(f"SELECT * FROM staging.{source} ORDER BY _file_sha256, _line").df()


def manifest(con, source: str) -> pd.DataFrame:
    return con.execute("SELECT * FROM staging.file_manifest WHERE source_key = ? ORDER BY processed_at",
                       [source]).df()


@dataclass
class Batch:
    source: str
    report: SourceReport
    before: pd.DataFrame
    after: pd.DataFrame
    good: list[str] = field(default_factory=list)

    def outcome(self, name: str) -> FileOutcome:
        return next(f for f in self.report.files if f.file_name == name)


def ingest_batch(city: City, paths: Paths, con, key: bytes, source: str, land_bad: Callable[[], object], *,
                 baseline: tuple[str, ...] = (), good: tuple[str, ...] = (), bad_applies: bool = False) -> Batch:
    """Apply ``baseline`` (real files), then land the broken file(s) beside ``good`` real files.

    Asserts the good files applied and that, apart from their rows (and the broken file's when it
    is expected to apply), the staging table is exactly what it was before the batch.
    """
    spec = CATALOGUE[source]
    for name in baseline:
        land_real(city, paths, source, name)
    first = ingest_source(con, spec, paths, key)
    assert [f.outcome for f in first.files] == ["applied"] * len(baseline)
    ensure_table(con, spec)
    before = staged(con, source)

    land_bad()
    for name in good:
        land_real(city, paths, source, name)
    report = ingest_source(con, spec, paths, key)
    after = staged(con, source)

    good_out = [f for f in report.files if f.file_name in good]
    assert [(f.file_name, f.outcome) for f in good_out] == [(n, "applied") for n in good]
    new = {f.sha256 for f in good_out}
    if bad_applies:
        new |= {f.sha256 for f in report.files if f.file_name not in good and f.outcome == "applied"}
    assert after["_file_sha256"].isin({f.sha256 for f in good_out}).sum() == sum(f.rows_kept for f in good_out)
    kept = after[~after["_file_sha256"].isin(new)].reset_index(drop=True)
    if before.empty:
        assert kept.empty
    else:
        pd.testing.assert_frame_equal(kept, before)
    return Batch(source, report, before, after, list(good))


def assert_quarantined(paths: Paths, con, batch: Batch, name: str, *, check: str, lines: list[int] | None,
                       column: str | None, header: str | None, says: tuple[str, ...] = ()) -> dict:
    """Rejected: moved to quarantine with a reasons file that names check, file, lines, column, header."""
    out = batch.outcome(name)
    assert out.outcome == "rejected", out
    assert out.rows_kept == 0
    assert not (paths.landing_dir(batch.source) / name).exists()
    held = paths.quarantine / batch.source / name
    assert held.exists() or held.is_symlink()
    reasons = json.loads(Path(f"{held}.reasons.json").read_text("utf-8"))
    assert reasons["source_key"] == batch.source
    found = [e for e in reasons["errors"] if e["check"] == check]
    assert found, reasons["errors"]
    error = found[0]
    assert error["file"] == name and error["severity"] == "error"
    if lines is not None:
        assert error["lines"][:len(lines)] == lines, error
    assert error["column"] == column, error
    assert error["header"] == header, error

    message = out.message
    assert message.startswith(name), message
    if lines:
        assert f"line{'s' if len(lines) > 1 or len(error['lines']) > 1 else ''} {lines[0]}" in message, message
    if column:
        assert f"column{'s' if ', ' in column else ''} {column}" in message, message
    if header and ", " not in header:
        assert f"'{header}'" in message, message
    for text in says:
        assert text in message, message
    row = manifest(con, batch.source).set_index("file_name").loc[name]
    assert row.outcome == "rejected" and row.message == message
    assert check in {f["check"] for f in json.loads(row.findings)}
    return error


def modified(export: Export, row: int, header: str, value: str) -> Export:
    broken = export.copy()
    broken.rows[row][broken.col(header)] = value
    return broken


def jst(y, m, d, h=9) -> float:
    return dt.datetime(y, m, d, h, tzinfo=TOKYO).timestamp()


# Baselines and good files per source: the broken file takes the period between them.
PLAN = {
    ATT: dict(baseline=("出欠_2026-04.csv",), good=("出欠_2026-06.csv",), bad="出欠_2026-05.csv"),
    NURSE: dict(baseline=("保健室来室_2026-04.csv",), good=("保健室来室_2026-06.csv",), bad="保健室来室_2026-05.csv"),
    HEALTH: dict(baseline=(), good=("健康診断_2025.csv",), bad="健康診断_2026.csv"),
    QU: dict(baseline=("QU_2025-1.csv",), good=("QU_2025-2.csv",), bad="QU_2026-1.csv"),
    INFANT: dict(baseline=("乳幼児健診_2021.csv",), good=("乳幼児健診_2023.csv",), bad="乳幼児健診_2022.csv"),
}


def run_broken(city, paths, con, key, source: str, make: Callable[[Export, Path], object], *,
               bad_applies: bool = False) -> tuple[Batch, Export]:
    """Break the source's planned file with ``make(original, target_path)`` and run the batch."""
    plan = PLAN[source]
    original = city.export(source, plan["bad"])
    target = paths.landing_dir(source) / plan["bad"]

    def land():
        target.parent.mkdir(parents=True, exist_ok=True)
        make(original, target)

    batch = ingest_batch(city, paths, con, key, source, land, baseline=plan["baseline"], good=plan["good"],
                         bad_applies=bad_applies)
    return batch, original


# ---------------------------------------------------------------------------------------------
# Files that are quarantined: (source, break it, check, lines, column, header, message fragments)
# ---------------------------------------------------------------------------------------------

def _pasted_line(export: Export, path: Path, *, row: int, line_encoding: str):
    """The file in its own encoding, except one line pasted from a file in another one."""
    body = [export.line(r).encode(export.encoding.replace("-sig", "")) for r in [export.header, *export.rows]]
    body[row + 1] = export.line(export.rows[row]).encode(line_encoding)
    bom = b"\xef\xbb\xbf" if export.encoding == "utf-8-sig" else b""
    path.write_bytes(bom + b"".join(body))
    os.utime(path, (export.mtime, export.mtime))


def _truncated(export: Export, path: Path, *, inside: str):
    """Cut inside the last row: in the middle of the value ``inside`` of that row."""
    data = export.text().encode(export.encoding)
    last = export.line(export.rows[-1]).encode(export.encoding.replace("-sig", ""))
    start = len(data) - len(last)
    cut = start + last.index(inside.encode(export.encoding.replace("-sig", ""))) + 1
    path.write_bytes(data[:cut])
    os.utime(path, (export.mtime, export.mtime))


def _with_bytes(data: bytes):
    def make(export: Export, path: Path):
        path.write_bytes(data)
        os.utime(path, (export.mtime, export.mtime))
    return make


def _rewrite(change: Callable[[Export], Export], **write):
    def make(export: Export, path: Path):
        change(export).write(path, **write)
    return make


def _drop_column(header: str):
    def change(e: Export) -> Export:
        i = e.col(header)
        return Export(e.name, [h for j, h in enumerate(e.header) if j != i],
                      [[v for j, v in enumerate(r) if j != i] for r in e.rows], e.encoding, e.newline, e.mtime)
    return change


def _rename_header(old: str, new: str):
    def change(e: Export) -> Export:
        broken = e.copy()
        broken.header[broken.col(old)] = new
        return broken
    return change


def _header_only(e: Export) -> Export:
    return e.copy(rows=[])


def _duplicate_row(e: Export) -> Export:
    broken = e.copy()
    broken.rows.append(list(broken.rows[K]))
    return broken


def _cell(row: int, header: str, value: str):
    return lambda e: modified(e, row, header, value)


def _set(row: int, header: str, value: str):
    """Rewrite the file with one cell changed; the value is checked on the reported line later."""
    make = _rewrite(_cell(row, header, value))
    make.value = value
    return make


def _multiline_then_ragged(e: Export) -> Export:
    broken = modified(e, K, "理由", "頭痛\n発熱")  # a quoted value over two lines
    broken.rows[K + 3] = broken.rows[K + 3][:-1]  # and, three rows later, a row one value short
    return broken


def _blank_line_then_bad_value(export: Export, path: Path):
    lines = [export.line(r) for r in [export.header, *export.rows]]
    lines.insert(K + 2, export.newline)  # an empty line after data row K
    bad = list(export.rows[K + 5])
    bad[export.col("出欠")] = "遊"
    lines[K + 5 + 2] = export.line(bad)
    path.write_bytes(b"\xef\xbb\xbf" + "".join(lines).encode("utf-8"))
    os.utime(path, (export.mtime, export.mtime))


def _garbage_with_nul() -> bytes:
    rng = random.Random(7)
    return b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(rng.randrange(256) for _ in range(3000))


def _garbage_without_nul() -> bytes:
    rng = random.Random(11)
    return bytes(rng.randrange(128, 256) for _ in range(3000))


QUARANTINED = [
    # id, source, make, check, lines, column, header, fragments
    ("utf8-file-with-a-cp932-line", ATT, lambda e, p: _pasted_line(e, p, row=K, line_encoding="cp932"),
     "encoding", [K + 2], "status", "出欠", ("UTF-8 up to here", "CP932", "'出席'")),
    ("cp932-file-with-a-utf8-line", NURSE, lambda e, p: _pasted_line(e, p, row=K, line_encoding="utf-8"),
     "encoding", [K + 2], "visit_date", "来室日", ("CP932 (Shift_JIS) up to here", "in UTF-8 the value reads '令和8年5月")),
    ("missing-required-column", ATT, _rewrite(_drop_column("学籍番号")),
     "headers", [1], "pupil_id", "学籍番号", ("required column '学籍番号' (pupil_id) is missing",)),
    ("renamed-header", ATT, _rewrite(_rename_header("出欠", "出欠状況")),
     "headers", [1], "status", "出欠", ("accepted headers: 出欠, 出欠区分", "the file has: 日付, 学校コード, 学籍番号, 出欠状況")),
    ("duplicated-header", ATT, _rewrite(_rename_header("理由", "学籍番号")),
     "headers", [1], None, None, ("the header '学籍番号' appears twice (columns 3 and 6)",)),
    ("empty-file", ATT, _with_bytes(b""), "not_empty", [], None, None, ("the file is empty",)),
    ("blank-lines-only", NURSE, _with_bytes(b"\r\n\r\n  \r\n"), "not_empty", [], None, None, ("the file is empty",)),
    ("header-only", HEALTH, _rewrite(_header_only), "has_rows", [1], None, None, ("a header but no data rows",)),
    ("truncated-last-line", ATT, lambda e, p: _truncated(e, p, inside="/"), "csv_structure", None, None, None,
     ("the row has 1 value but the header has 6 columns", "it is the last line", "truncated")),
    ("truncated-inside-a-character", NURSE, lambda e, p: _truncated(e, p, inside="合計"), "truncated", None,
     "visit_date", "来室日", ("ends part-way through a character", "truncated")),
    ("binary-garbage", QU, _with_bytes(_garbage_with_nul()), "encoding", [], None, None,
     ("cannot be read as text", "binary data")),
    ("high-bytes-no-text", QU, _with_bytes(_garbage_without_nul()), "encoding", [], None, None,
     ("cannot be read as text",)),
    ("duplicated-key", ATT, _rewrite(_duplicate_row), "unique_key", None, "pupil_id, date", "学籍番号, 日付",
     ("appear more than once",)),
    ("unknown-school-code", ATT, _set(K, "学校コード", "B111222409999"), "known_school", [K + 2],
     "school_code", "学校コード", ("not in the school master",)),
    ("wareki-date-that-does-not-exist", NURSE, _set(K, "来室日", "令和6年2月30日"), "parse", [K + 2],
     "visit_date", "来室日", ("'令和6年2月30日'", "February 2024 has 29 days")),
    ("height-of-3-metres", HEALTH, _set(K, "身長", "300.0"), "range", [K + 2], "height_cm", "身長",
     ("outside 90–200 cm", "300")),
    ("negative-weight", HEALTH, _set(K, "体重", "-31.5"), "range", [K + 2], "weight_kg", "体重",
     (f"outside {CATALOGUE[HEALTH].column('weight_kg').min:g}–150 kg", "negative numbers among them")),
    ("height-written-with-a-unit", HEALTH, _set(K, "身長", "3m"), "type", [K + 2], "height_cm", "身長",
     ("'3m' is not a number",)),
    ("qu-score-out-of-scale", QU, _set(K, "承認得点", "55"), "range", [K + 2], "approval", "承認得点",
     ("outside 10–50",)),
    ("value-outside-the-allowed-set", ATT, _set(K, "出欠", "遊び"), "parse", [K + 2], "status", "出欠",
     ("'遊び' is not an allowed value", "出席")),
    ("formula-in-a-category-column", ATT, _set(K, "出欠", FORMULA), "parse", [K + 2], "status", "出欠",
     (f"'{FORMULA}' is not an allowed value",)),
    ("nan-temperature", NURSE, _set(K, "体温", "NaN"), "type", [K + 2], "temperature", "体温",
     ("'NaN' is not a number",)),
    ("birth-date-in-2590", INFANT, _set(K, "生年月日", "2590年5月3日"), "parse", [K + 2], "birth_date",
     "生年月日", ("the year 2590",)),
    ("a-row-of-another-month", ATT, _set(K, "日付", "2026/6/2"), "one_period", [K + 2], "date", "日付",
     ("must cover one period", "2026-05, 2026-06", "most rows are in 2026-05")),
    ("ragged-row-after-a-multiline-value", ATT, _rewrite(_multiline_then_ragged), "csv_structure", [K + 3 + 2 + 1],
     None, None, ("the row has 5 values but the header has 6 columns",)),
    ("bad-value-after-a-blank-line", ATT, _blank_line_then_bad_value, "parse", [K + 5 + 2 + 1], "status", "出欠",
     ("'遊' is not an allowed value",)),
]


@pytest.mark.parametrize("case", QUARANTINED, ids=[c[0] for c in QUARANTINED])
def test_a_broken_file_is_quarantined_and_explained(city, paths, db, key, case):
    _, source, make, check, lines, column, header, says = case
    batch, original = run_broken(city, paths, db, key, source, make)
    name = PLAN[source]["bad"]
    if lines is None:  # where the file was cut, or the duplicate row: worked out from the export
        lines = {"truncated-last-line": [len(original.rows) + 1],
                 "truncated-inside-a-character": [len(original.rows) + 1],
                 "duplicated-key": [K + 2, len(original.rows) + 2]}[case[0]]
    error = assert_quarantined(paths, db, batch, name, check=check, lines=lines, column=column, header=header,
                               says=says)
    assert len(batch.after) > len(batch.before)  # the good file of the batch applied
    if hasattr(make, "value"):  # the line named is the line of the original file holding the value
        held = (paths.quarantine / source / name).read_bytes().decode(original.encoding)
        assert make.value in next(csv.reader([held.split(original.newline)[lines[0] - 1]]))
    if check == "encoding" and lines:
        assert error["sample_values"]  # the offending bytes, in hex


def test_an_unknown_pupil_is_rejected_without_revealing_the_number(city, paths, db, key):
    batch, original = run_broken(city, paths, db, key, ATT, _set(K, "学籍番号", "99999999"))
    error = assert_quarantined(paths, db, batch, "出欠_2026-05.csv", check="known_pupil", lines=[K + 2],
                               column="pupil_id", header="学籍番号", says=("not in the 学齢簿", "school year 2026"))
    assert error["sample_values"] == []  # the line says where; neither number nor pseudonym is quoted
    assert pseudonymise(key, "99999999") not in batch.outcome("出欠_2026-05.csv").message
    reasons = (paths.quarantine / ATT / "出欠_2026-05.csv.reasons.json").read_text("utf-8")
    assert "99999999" not in reasons and "99999999" not in batch.outcome("出欠_2026-05.csv").message


def test_a_date_after_the_export_date_is_rejected(city, paths, db, key):
    exported = jst(2026, 5, 15, 17)  # the file says it was written on the afternoon of May 15th
    batch, original = run_broken(city, paths, db, key, ATT, _rewrite(lambda e: e.copy(), mtime=exported))
    dates = [dt.datetime.strptime(r[original.col("日付")], "%Y/%m/%d").date() for r in original.rows]
    late = [i + 2 for i, d in enumerate(dates) if d > dt.date(2026, 5, 15)]
    assert late and len(late) < len(dates)
    assert_quarantined(paths, db, batch, "出欠_2026-05.csv", check="not_after_export", lines=late[:5],
                       column="date", header="日付", says=("after the file's export date 2026-05-15",))


# ---------------------------------------------------------------------------------------------
# Files that apply: other encodings, shuffled columns, an extra column, formula-looking text
# ---------------------------------------------------------------------------------------------

def _same_rows_as_the_original(city, paths, con, key, source: str, batch: Batch, name: str):
    """Land the department's original file as a later re-export of the same period: it replaces
    the broken one row for row, so every staged value must be the same."""
    out = batch.outcome(name)
    assert out.outcome == "applied" and not out.errors, out
    mine = batch.after[batch.after["_file_sha256"] == out.sha256].drop(columns="_file_sha256")
    original = land_real(city, paths, source, name)
    later = original.stat().st_mtime + 3600
    os.utime(original, (later, later))
    report = ingest_source(con, CATALOGUE[source], paths, key)
    again = report.files[0]
    assert again.outcome == "applied" and again.superseded == [out.sha256]
    theirs = staged(con, source)
    theirs = theirs[theirs["_file_sha256"] == again.sha256].drop(columns="_file_sha256")
    pd.testing.assert_frame_equal(mine.reset_index(drop=True), theirs.reset_index(drop=True))
    return out


def test_a_cp932_export_of_a_utf8_source_is_read_correctly(city, paths, db, key):
    batch, _ = run_broken(city, paths, db, key, ATT, _rewrite(lambda e: e, encoding="cp932"), bad_applies=True)
    out = _same_rows_as_the_original(city, paths, db, key, ATT, batch, "出欠_2026-05.csv")
    assert out.encoding == "cp932"


def test_a_utf8_export_of_a_cp932_source_is_read_correctly(city, paths, db, key):
    batch, _ = run_broken(city, paths, db, key, NURSE, _rewrite(lambda e: e, encoding="utf-8"), bad_applies=True)
    out = _same_rows_as_the_original(city, paths, db, key, NURSE, batch, "保健室来室_2026-05.csv")
    assert out.encoding == "utf-8"


def test_shuffled_columns_pass_with_the_same_values(city, paths, db, key):
    def shuffle(e: Export) -> Export:
        order = list(range(len(e.header)))
        random.Random(3).shuffle(order)
        assert order != sorted(order)
        return Export(e.name, [e.header[i] for i in order], [[r[i] for i in order] for r in e.rows],
                      e.encoding, e.newline, e.mtime)

    batch, _ = run_broken(city, paths, db, key, HEALTH, _rewrite(shuffle), bad_applies=True)
    out = _same_rows_as_the_original(city, paths, db, key, HEALTH, batch, "健康診断_2026.csv")
    assert out.warnings == [] and out.unknown_headers == []


def test_an_unknown_extra_column_warns_and_the_file_applies(city, paths, db, key):
    def extra(e: Export) -> Export:
        return Export(e.name, e.header + ["備考"], [r + [f"メモ{i}"] for i, r in enumerate(e.rows)],
                      e.encoding, e.newline, e.mtime)

    batch, _ = run_broken(city, paths, db, key, ATT, _rewrite(extra), bad_applies=True)
    out = batch.outcome("出欠_2026-05.csv")
    assert out.outcome == "applied" and out.errors == []
    assert out.unknown_headers == ["備考"]
    assert out.message == "unknown columns ignored: 備考"
    warning = next(w for w in out.warnings if w["check"] == "unknown_columns")
    assert warning["severity"] == "warn" and warning["lines"] == [1] and warning["sample_values"] == ["備考"]
    assert warning["message"].startswith("出欠_2026-05.csv, line 1: 1 column not in the catalogue")
    row = manifest(db, ATT).set_index("file_name").loc["出欠_2026-05.csv"]
    assert row.outcome == "applied" and json.loads(row.unknown_headers) == ["備考"]
    assert "unknown_columns" in {f["check"] for f in json.loads(row.findings)}
    assert not (paths.quarantine / ATT).exists()
    assert not db.execute("SELECT count(*) FROM staging.attendance_daily WHERE sub_reason LIKE 'メモ%'").fetchall()[0][0]
    _same_rows_as_the_original(city, paths, db, key, ATT, batch, "出欠_2026-05.csv")


def test_free_text_in_a_coded_column_is_counted_never_stored(city, paths, db, key):
    """A teacher's note in 理由 (naming a classmate) or formula-looking text: not a code of the
    catalogue, so it is counted and dropped; the file applies and no message quotes it."""
    texts = ["山田さんとけんか", FORMULA, "=1+1", "+SUM(A1:A9)", "@cmd"]

    def notes(e: Export) -> Export:
        broken = e.copy()
        for i, text in enumerate(texts):
            broken.rows[K + i][e.col("理由")] = text
        broken.rows[K + 5][e.col("理由")] = "頭痛"
        return broken

    batch, _ = run_broken(city, paths, db, key, ATT, _rewrite(notes), bad_applies=True)
    out = batch.outcome("出欠_2026-05.csv")
    assert out.outcome == "applied" and out.errors == []
    stored = db.execute("SELECT _line, sub_reason FROM staging.attendance_daily WHERE _file_sha256 = ? AND "
                        "_line BETWEEN ? AND ? ORDER BY _line", [out.sha256, K + 2, K + 7]).fetchall()
    assert stored == [(K + 2 + i, None) for i in range(5)] + [(K + 7, "headache")]
    assert out.drop_reasons["unmapped_text:sub_reason"] == 5
    warning = next(w for w in out.warnings if w["check"] == "unmapped_text")
    assert "5 values" in warning["message"] and "'理由'" in warning["message"]
    row = manifest(db, ATT).set_index("file_name").loc["出欠_2026-05.csv"]
    everything = " ".join(str(v) for v in row.to_dict().values())
    assert not any(t in everything for t in texts)
    assert not db.execute("SELECT count(*) FROM staging.attendance_daily WHERE sub_reason LIKE '%山田%' "
                          "OR sub_reason LIKE '=%'").fetchall()[0][0]


# ---------------------------------------------------------------------------------------------
# Names and links that try to leave the landing folder
# ---------------------------------------------------------------------------------------------

def _tree(folder: Path) -> dict[str, bytes | str]:
    """Every entry under a folder with its content (or link target): to prove nothing changed."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = os.readlink(p) if p.is_symlink() else (p.read_bytes() if p.is_file() else "<dir>")
    return out


def test_a_symlink_out_of_the_landing_folder_is_not_followed(city, paths, db, key, tmp_path):
    outside = tmp_path / "outside"
    secret = city.export(ATT, "出欠_2026-05.csv").write(outside / "secret.csv")  # a readable, valid file
    outside_before = _tree(outside)
    everything_else = {p for p in tmp_path.iterdir() if p.name not in ("toda", "outside")}

    def land():
        link = paths.landing_dir(ATT) / "出欠_2026-05.csv"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(secret)
        loop = paths.landing_dir(ATT) / "loop.csv"
        os.symlink(paths.landing_dir(ATT) / "loop2.csv", loop)
        os.symlink(loop, paths.landing_dir(ATT) / "loop2.csv")

    batch = ingest_batch(city, paths, db, key, ATT, land, baseline=PLAN[ATT]["baseline"], good=PLAN[ATT]["good"])
    out = batch.outcome("出欠_2026-05.csv")
    assert out.outcome == "rejected" and "outside the landing folder" in out.message and str(secret) in out.message
    held = paths.quarantine / ATT / "出欠_2026-05.csv"
    assert held.is_symlink() and os.readlink(held) == str(secret)  # the link moved, not its target
    reasons = json.loads(Path(f"{held}.reasons.json").read_text("utf-8"))
    assert reasons["errors"][0]["check"] == "inside_landing" and reasons["errors"][0]["file"] == "出欠_2026-05.csv"
    assert batch.outcome("loop.csv").outcome == "rejected" and "symlink loop" in batch.outcome("loop.csv").message
    assert _tree(outside) == outside_before  # never read into staging, never moved, never written
    assert {p for p in tmp_path.iterdir() if p.name not in ("toda", "outside")} == everything_else
    assert set(manifest(db, ATT).query("outcome == 'rejected'").file_name) == {"出欠_2026-05.csv", "loop.csv",
                                                                             "loop2.csv"}
    # a second run finds nothing left to do
    assert ingest_source(db, CATALOGUE[ATT], paths, key).files == []


def test_a_source_folder_that_is_a_link_elsewhere_is_not_read(city, paths, db, key, tmp_path):
    elsewhere = tmp_path / "share"
    city.export(ATT, "出欠_2026-05.csv").write(elsewhere / "出欠_2026-05.csv")
    before = _tree(elsewhere)
    paths.landing.mkdir(parents=True)
    paths.landing_dir(ATT).symlink_to(elsewhere, target_is_directory=True)
    report = ingest_source(db, CATALOGUE[ATT], paths, key)
    assert [(f.file_name, f.outcome) for f in report.files] == [("出欠_2026-05.csv", "rejected")]
    assert "outside the landing folder" in report.files[0].message
    assert _tree(elsewhere) == before and report.table_rows == 0
    assert not (paths.quarantine / ATT).exists()


def test_dot_dot_names_stay_inside_todahome(city, paths, db, key, tmp_path):
    hidden = "..出欠_2026-05.csv"  # a hidden name: never a candidate (partial uploads, lock files)
    sneaky = "出欠_2026-05..\\..\\..\\evil.csv"  # backslashes and dots are only characters here
    original = city.export(ATT, "出欠_2026-05.csv")
    neighbours = {p.name for p in tmp_path.iterdir()}

    def land():
        modified(original, K, "出欠", "遊").write(paths.landing_dir(ATT) / sneaky)
        original.write(paths.landing_dir(ATT) / hidden)

    batch = ingest_batch(city, paths, db, key, ATT, land, baseline=PLAN[ATT]["baseline"], good=PLAN[ATT]["good"])
    assert hidden not in {f.file_name for f in batch.report.files}
    assert (paths.landing_dir(ATT) / hidden).exists()  # left alone
    assert_quarantined(paths, db, batch, sneaky, check="parse", lines=[K + 2], column="status", header="出欠")
    assert [p.name for p in (paths.quarantine / ATT).iterdir()] and all(
        p.parent == paths.quarantine / ATT for p in (paths.quarantine / ATT).iterdir())
    import quality

    index = quality.render_data_docs(batch.report.validations, paths.reports / "quality")
    assert paths.reports in index.parents
    written = [p for p in (paths.reports / "quality").rglob("*") if p.is_file()]
    assert written and all((paths.reports / "quality") in p.resolve().parents for p in written)
    assert {p.name for p in tmp_path.iterdir()} == neighbours  # nothing written beside TODA_HOME


# ---------------------------------------------------------------------------------------------
# Volume, and fixing the file
# ---------------------------------------------------------------------------------------------

def test_a_tenfold_monthly_file_is_rejected_by_the_volume_band(city, paths, db, key):
    normal = ("保健室来室_2026-04.csv", "保健室来室_2026-05.csv", "保健室来室_2026-06.csv")
    july = city.export(NURSE, "保健室来室_2026-07.csv")
    t, total = july.col("来室時刻"), [r for r in july.rows if r[0] == "合計"]
    rows, seen = [], set()
    for r in (r for r in july.rows if r[0] != "合計"):
        hh, mm = map(int, r[t].split(":"))
        for i in range(10):  # the same visits exported ten times over, a minute apart
            copy = list(r)
            minutes = (hh * 60 + mm + i * 3) % (24 * 60)
            copy[t] = f"{minutes // 60:02d}:{minutes % 60:02d}"
            if (copy[3], copy[0], copy[t]) not in seen:
                seen.add((copy[3], copy[0], copy[t]))
                rows.append(copy)
    spike = july.copy(rows=rows + total)
    assert len(rows) >= 9.5 * (len(july.rows) - len(total))
    batch = ingest_batch(city, paths, db, key, NURSE, lambda: spike.write(paths.landing_dir(NURSE) / july.name),
                         baseline=normal, good=("保健室来室_2026-09.csv",))
    assert_quarantined(paths, db, batch, july.name, check="volume_band", lines=None, column=None, header=None,
                       says=("× the median", "previous 3 files", "A double export"))
    ratio = float(batch.outcome(july.name).message.split("rows, more than ")[1].split("— ")[1].split("×")[0])
    assert ratio > 5


def test_a_fixed_file_landed_again_applies(city, paths, db, key):
    batch, original = run_broken(city, paths, db, key, HEALTH, _set(K, "身長", "300.0"))
    name = "健康診断_2026.csv"
    assert batch.outcome(name).outcome == "rejected"
    fixed = land_real(city, paths, HEALTH, name)  # the school corrects the height and exports again
    os.utime(fixed, (original.mtime + 86400, original.mtime + 86400))
    report = ingest_source(db, CATALOGUE[HEALTH], paths, key)
    assert [(f.file_name, f.outcome) for f in report.files] == [(name, "applied")]
    df = staged(db, HEALTH)
    assert len(df) == len(batch.after) + report.files[0].rows_kept
    assert df["height_cm"].max() < 200
    assert list(manifest(db, HEALTH).set_index("sha256").loc[[batch.outcome(name).sha256, report.files[0].sha256],
                                                             "outcome"]) == ["rejected", "applied"]


def test_out_of_range_dates_never_wrap_round_in_the_quality_frame():
    """pandas holds dates to 2262: a later one used to wrap silently to a plausible date."""
    import quality

    con = duckdb.connect()
    con.execute("CREATE TABLE _typed AS SELECT * FROM (VALUES (DATE '2590-05-01', 2), (DATE '2024-05-01', 3)) "
                "t(birth_month, _line)")
    frame = quality.read_typed(con)
    assert list(frame["birth_month"].astype(str)) == ["2590-05-01", "2024-05-01"]


# ---------------------------------------------------------------------------------------------
# Through the Dagster asset: the asset checks see the outcome
# ---------------------------------------------------------------------------------------------

def _materialize(paths: Paths, con, *sources: str) -> tuple[dg.ExecuteInProcessResult, duckdb.DuckDBPyConnection]:
    """Run the sources' staging assets and their checks; the test's connection is closed for the
    run (DuckDB takes one configuration per file and process) and a new one returned."""
    from assets.sources import staging_assets, staging_checks, staging_key
    from resources import build_resources

    con.close()

    keys = {staging_key(s) for s in sources}
    assets = [a for a in staging_assets if a.key in keys]
    checks = [c for c in staging_checks if {k.asset_key for k in c.check_keys} <= keys]
    result = dg.materialize([*assets, *checks], resources=build_resources(paths),
                            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    return result, duckdb.connect(str(paths.warehouse))


def _checks(result, source: str) -> dict[str, object]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()
            if e.asset_key.path[-1] == source}


def _files(result, source: str) -> dict[str, dict]:
    node = f"staging__{source}"
    meta = result.asset_materializations_for_node(node)[0].metadata
    return {f["file"]: f for f in meta["files"].value}


def test_dagster_quarantines_and_its_checks_say_so(city, paths, db, key):
    """A formula in 出欠 and NaN in 体温, each beside a good file: the asset quarantines them, the
    blocking table check passes (nothing bad reached the table), the quarantine check warns."""
    for source in (ATT, NURSE):
        for name in PLAN[source]["baseline"]:
            land_real(city, paths, source, name)
        ingest_source(db, CATALOGUE[source], paths, key)
    before = {s: staged(db, s) for s in (ATT, NURSE)}
    _set(K, "出欠", FORMULA)(city.export(ATT, "出欠_2026-05.csv"), paths.landing_dir(ATT) / "出欠_2026-05.csv")
    _set(K, "体温", "nan")(city.export(NURSE, "保健室来室_2026-05.csv"),
                                       paths.landing_dir(NURSE) / "保健室来室_2026-05.csv")
    for source in (ATT, NURSE):
        for name in PLAN[source]["good"]:
            land_real(city, paths, source, name)

    result, db = _materialize(paths, db, ATT, NURSE)
    assert result.success
    for source, bad, column, header in ((ATT, "出欠_2026-05.csv", "status", "出欠"),
                                        (NURSE, "保健室来室_2026-05.csv", "temperature", "体温")):
        checks = _checks(result, source)
        assert checks["table_valid"].passed and checks["table_valid"].severity == dg.AssetCheckSeverity.ERROR
        quarantine = checks["no_file_in_quarantine"]
        assert not quarantine.passed and quarantine.severity == dg.AssetCheckSeverity.WARN
        assert quarantine.metadata["files"].value == [bad]
        files = _files(result, source)
        assert files[bad]["outcome"] == "rejected"
        assert files[bad]["message"].startswith(f"{bad}, line {K + 2}, column {column} (header '{header}')")
        good = PLAN[source]["good"][0]
        assert files[good]["outcome"] == "applied"
        after = staged(db, source)
        sha = manifest(db, source).set_index("file_name").loc[good, "sha256"]
        pd.testing.assert_frame_equal(after[after._file_sha256 != sha].reset_index(drop=True), before[source])
    db.close()


def test_dagster_applies_a_file_with_an_unknown_column_and_shows_the_warning(city, paths, db, key):
    original = city.export(ATT, "出欠_2026-05.csv")
    Export(original.name, original.header + ["備考"], [r + ["x"] for r in original.rows], original.encoding,
           original.newline, original.mtime).write(paths.landing_dir(ATT) / original.name)
    result, db = _materialize(paths, db, ATT)
    assert result.success
    checks = _checks(result, ATT)
    assert checks["table_valid"].passed and checks["no_file_in_quarantine"].passed
    f = _files(result, ATT)[original.name]
    assert f["outcome"] == "applied" and f["unknown_headers"] == ["備考"]
    assert any("not in the catalogue" in w and "'備考'" in w for w in f["warnings"])
    assert staged(db, ATT).shape[0] == f["rows_kept"]
    db.close()


def test_dagster_does_not_follow_a_symlink_out_of_landing(city, paths, db, key, tmp_path):
    secret = city.export(ATT, "出欠_2026-05.csv").write(tmp_path / "outside" / "secret.csv")
    content = secret.read_bytes()
    land_real(city, paths, ATT, "出欠_2026-06.csv")
    (paths.landing_dir(ATT) / "出欠_2026-05.csv").symlink_to(secret)
    result, db = _materialize(paths, db, ATT)
    assert result.success
    checks = _checks(result, ATT)
    assert checks["table_valid"].passed
    assert checks["no_file_in_quarantine"].metadata["files"].value == ["出欠_2026-05.csv"]
    files = _files(result, ATT)
    assert files["出欠_2026-05.csv"]["outcome"] == "rejected" and files["出欠_2026-06.csv"]["outcome"] == "applied"
    assert secret.read_bytes() == content
    assert set(staged(db, ATT)["known_date"].astype(str).str[:7]) == {"2026-06"}
    db.close()
