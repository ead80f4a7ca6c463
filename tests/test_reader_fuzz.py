"""The reader against arbitrary bytes and against real exports broken at random.

Whatever lands, ``read_file`` either reads it (and every row it keeps has a line number inside
the file) or raises the project's own ``IngestError``, whose message names the file and, when it
gives them, the line and the column with its header. Never another exception. ``ingest_source``
gets fewer examples: whatever the broken file, the batch finishes, the broken file is applied or
quarantined with its reasons, and the good file beside it applies.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TEST_KEY
from toda_platform.city import load_city
from toda_platform.ingest import IngestError, ingest_source, read_file
from toda_platform.settings import Paths
from synthcity import CityConfig, generate_city

CATALOGUE = load_city("toda").specs  # Toda's specs: what each source means and how Toda writes it

KEY = TEST_KEY.encode()
HEAD_LINES = 30  # real files are cut to their first lines: the examples stay fast
SOURCES = {  # source -> (file to break, a good file of another period)
    "attendance_daily": ("出欠_2026-05.csv", "出欠_2026-04.csv"),
    "nurse_office_visits": ("保健室来室_2026-05.csv", "保健室来室_2026-04.csv"),
    "pupil_registry": ("学齢簿_2026.csv", "学齢簿_2025.csv"),
    "health_checkup": ("健康診断_2026.csv", "健康診断_2025.csv"),
    "qu_survey": ("QU_2026-1.csv", "QU_2025-1.csv"),
    "mood_checkin": ("シャボテン_2026-05.csv", "シャボテン_2026-04.csv"),
    "bullying_records": ("いじめ認知_2026.csv", "いじめ認知_2025.csv"),
    "school_master": ("学校一覧.csv", None),
}
ENCODINGS = ["utf-8", "utf-8-sig", "cp932", "utf-16", "utf-16-le", "euc_jp", "iso2022_jp", "latin-1",
             "gb18030", "ptcp154"]
NAME = "出欠 2026-05 (訂正).csv"  # the display name every message must start with


def _head(path: Path) -> bytes:
    data = path.read_bytes()
    newline = b"\r\n" if b"\r\n" in data else b"\n"
    return newline.join(data.split(newline)[:HEAD_LINES]) + newline


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Real exports of a tiny city (their first lines), a scratch folder and a DuckDB connection."""
    root = tmp_path_factory.mktemp("fuzz")
    home = root / "city"
    generate_city(home, CityConfig(pupils=300, elementary_schools=1, junior_high_schools=1, years=2),
                  progress=False)
    landing = Paths.from_env(home).landing
    seeds = {}
    for source, (bad, good) in SOURCES.items():
        seeds[source] = (_head(landing / source / bad), (landing / source / bad).stat().st_mtime,
                         _head(landing / source / good) if good else None,
                         (landing / source / good).stat().st_mtime if good else None)
    con = duckdb.connect()
    yield {"seeds": seeds, "root": root, "con": con}
    con.close()


# ---------------------------------------------------------------------------------------------
# Mutations of a real file
# ---------------------------------------------------------------------------------------------

def _decoded(data: bytes) -> tuple[str, str] | None:
    for encoding in ("utf-8-sig", "cp932"):
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            pass
    return None


def _swap_columns(data: bytes, i: int, j: int) -> bytes:
    found = _decoded(data)
    if found is None:
        return data
    text, encoding = found
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error:
        return data
    for row in rows:
        if len(row) > max(i, j):
            row[i], row[j] = row[j], row[i]
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode(encoding, errors="replace")


@st.composite
def mutated(draw, data: bytes) -> bytes:
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "delete_line", "duplicate_line", "swap_columns",
                                   "encode", "insert_bytes", "insert_syntax"]))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data = data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1:]
        elif op == "truncate" and data:
            data = data[:draw(st.integers(0, len(data) - 1))]
        elif op in ("delete_line", "duplicate_line"):
            lines = data.split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            if op == "delete_line":
                del lines[i]
            else:
                lines.insert(i, lines[i])
            data = b"\n".join(lines)
        elif op == "swap_columns":
            data = _swap_columns(data, draw(st.integers(0, 8)), draw(st.integers(0, 8)))
        elif op == "encode":
            found = _decoded(data)
            if found is not None:
                data = found[0].encode(draw(st.sampled_from(ENCODINGS)), errors="replace")
        elif op == "insert_bytes":
            i = draw(st.integers(0, len(data)))
            data = data[:i] + draw(st.binary(min_size=1, max_size=8)) + data[i:]
        elif op == "insert_syntax":
            i = draw(st.integers(0, len(data)))
            piece = draw(st.sampled_from([b'"', b",", b"\n", b"\r", b"\r\n", b"\n\n", b'""', b"\xef\xbb\xbf",
                                          "合計".encode(), "=HYPERLINK(\"x\")".encode(), b"NaN", b"\x00"]))
            data = data[:i] + piece + data[i:]
    return data


# ---------------------------------------------------------------------------------------------
# The property
# ---------------------------------------------------------------------------------------------

def _read_or_explain(con, source: str, data: bytes, folder: Path) -> str:
    path = folder / "landed.csv"
    path.write_bytes(data)
    try:
        staged = read_file(con, CATALOGUE[source], path, KEY, display_name=NAME, scratch=folder)
    except IngestError as e:
        message = e.message
        assert e.file == NAME and message.startswith(NAME), message
        if e.lines:
            assert re.search(rf"\blines? {e.lines[0]}\b", message), message
            assert all(n >= 1 for n in e.lines)
        if e.column:
            assert e.column in message, message
        if e.header:
            assert e.header.split(", ")[0] in message, message
        json.dumps(e.to_dict(), ensure_ascii=False)  # the reasons file can be written
        return e.check
    rows, lo, hi = con.execute("SELECT count(*), min(_line), max(_line) FROM _typed").fetchall()[0]
    assert rows == staged.rows_kept > 0
    newline = b"\n" if b"\n" in data else b"\r"
    assert 2 <= lo <= hi <= data.count(newline) + 1
    return "parsed"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.sampled_from(sorted(SOURCES)), data=st.binary(max_size=2000))
def test_arbitrary_bytes_are_read_or_explained(world, source, data):
    _read_or_explain(world["con"], source, data, world["root"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.sampled_from(sorted(SOURCES)),
       header=st.lists(st.sampled_from(["日付", "学校コード", "学籍番号", "出欠", "理由", "x", "", '"']),
                       max_size=8),
       body=st.text(alphabet=st.sampled_from(list("出欠病事,\"\n\r 12/0R令和年月日BC=合計\u3000")), max_size=300),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp932"]))
def test_arbitrary_text_under_plausible_headers_is_read_or_explained(world, source, header, body, encoding):
    text = ",".join(header) + "\n" + body
    _read_or_explain(world["con"], source, text.encode(encoding, errors="replace"), world["root"])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.sampled_from(sorted(SOURCES)), data=st.data())
def test_broken_real_exports_are_read_or_explained(world, source, data):
    original = world["seeds"][source][0]
    assert _read_or_explain(world["con"], source, original, world["root"]) == "parsed"
    broken = data.draw(mutated(original), label="broken file")
    _read_or_explain(world["con"], source, broken, world["root"])


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.sampled_from(["attendance_daily", "nurse_office_visits", "health_checkup"]), data=st.data())
def test_a_broken_export_never_stops_the_batch(world, source, data):
    bad, bad_mtime, good, good_mtime = world["seeds"][source]
    broken = data.draw(mutated(bad), label="broken file")
    home = Path(tempfile.mkdtemp(dir=world["root"]))
    try:
        paths = Paths.from_env(home)
        landing = paths.landing_dir(source)
        landing.mkdir(parents=True)
        (landing / NAME).write_bytes(broken)
        (landing / "good.csv").write_bytes(good)
        os.utime(landing / "good.csv", (good_mtime, good_mtime))
        os.utime(landing / NAME, (bad_mtime, bad_mtime))
        con = duckdb.connect(str(paths.warehouse))
        try:
            report = ingest_source(con, CATALOGUE[source], paths, KEY)
        finally:
            con.close()
        outcomes = {f.file_name: f for f in report.files}
        assert outcomes["good.csv"].outcome == "applied"
        out = outcomes[NAME]
        assert out.outcome in ("applied", "rejected")
        if out.outcome == "rejected":
            held = paths.quarantine / source / NAME
            assert held.read_bytes() == broken and not (landing / NAME).exists()
            reasons = json.loads(Path(f"{held}.reasons.json").read_text("utf-8"))
            assert reasons["errors"] and all(e["file"] == NAME for e in reasons["errors"])
            assert out.message.startswith(NAME)
    finally:
        shutil.rmtree(home, ignore_errors=True)
