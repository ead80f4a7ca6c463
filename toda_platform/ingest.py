"""Landed CSV files → ``staging.<source_key>``: one engine for every source in the catalogue.

How a delivery travels (the README's "Ingestion semantics" says the same at length):

1. **Seen** (``scan_landing``): files directly under ``landing/<source_key>/`` that have been left
   alone for ``TODA_SETTLE_SECONDS``, in export order (a date in the name, else a plausible
   modification time, else the time first seen). Everything not read is reported; what will
   never be read (a workbook, a folder) is recorded once as ``ignored``. CP932 names are renamed.
2. **Read once** (``_land``): the bytes hashed are the bytes archived (a read-only copy under
   ``archive/<source_key>/<sha256>.csv``) and parsed. A landing already in the manifest is
   skipped; the same bytes landed again after applying leave a ``duplicate`` row; bytes rejected
   or held before are read again.
3. **Typed** (``read_file``): encoding and delimiter detected, headers mapped through the
   catalogue, rows parsed by DuckDB in strict mode, values converted on their distinct values,
   personal identifiers pseudonymised, registry names sent to the identity store only, free text
   reduced to the catalogue's codes. Every error names file, line, column and header, and never
   a personal value (``value_shape`` describes one instead).
4. **Judged**: numbers that changed width (leading zeros lost in Excel) or a registry orphaning
   the pupils already known are *held*; the Great Expectations suite rejects a file to
   ``quarantine/`` with ``.reasons.json``; forms set unknown pupils aside row by row.
5. **Applied** (``_apply``, one transaction per file, or one for all the files of a staged batch,
   whose rows are inserted at once and taken out again for a file not applied; quarantine moves
   wait for the commit): official records replace exactly the (period, school) cells they cover,
   unless a newer export already holds one (then held until ``toda release``); forms replace row
   by row by key. Files rejected for an unknown pupil or school are retried from the archive when
   the references change.
"""

from __future__ import annotations

import codecs
import csv
import functools
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import time
import unicodedata
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable

import duckdb
import pyarrow as pa

from toda_platform import ingest_batch, layouts, parsing
from toda_platform.catalogue import Column, SourceSpec
from toda_platform.identity import IdentityRecord
from toda_platform.pseudonym import normalise_number, pseudonymise
from toda_platform.settings import Paths

META_COLUMNS = (("_file_sha256", "VARCHAR"), ("_line", "INTEGER"), ("known_date", "DATE"))
LIST_CAP = 20  # lines, values or files quoted in one message or reasons entry
TOTAL_MARKERS = ("合計", "計", "総計", "小計", "総合計")
ERROR_SAMPLE = 5
_SQL_ONLY_KINDS = {"int", "float"}
_NUMERIC_FROM = "０１２３４５６７８９．－−，"
_NUMERIC_TO = "0123456789.--,"
_SCHOOL_CODE = re.compile(r"^[A-Z]\d{12}$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::\d{2})?$")
# The dates pandas (and so the quality checks) can hold: datetime64[ns] runs 1677-09-21 ..
# 2262-04-11, and a later date silently wraps round to one ~584 years earlier (2590 → 2005).
_FIRST_DAY = date(1678, 1, 1)
_LAST_DAY = date(2261, 12, 31)
_ENCODING_NAMES = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "cp932": "CP932 (Shift_JIS)"}


class IngestError(Exception):
    """A file that cannot be applied, and exactly where and why."""

    def __init__(
        self,
        file: str,
        reason: str,
        *,
        line: int | None = None,
        column: str | None = None,
        header: str | None = None,
        lines: list[int] | None = None,
        values: list[str] | None = None,
        check: str = "readable",
    ):
        self.file = file
        self.reason = reason
        self.lines = lines or ([line] if line is not None else [])
        self.column = column
        self.header = header
        self.values = values or []
        self.check = check
        super().__init__(self.message)

    @property
    def message(self) -> str:
        where = [self.file]
        if self.lines:
            shown = ", ".join(str(n) for n in self.lines[:ERROR_SAMPLE])
            where.append(f"line{'s' if len(self.lines) > 1 else ''} {shown}")
        if self.column and ", " in self.column:  # a key of several columns
            headers = ", ".join(f"'{h}'" for h in (self.header or "").split(", ") if h)
            where.append(f"columns {self.column}" + (f" (headers {headers})" if headers else ""))
        elif self.column:
            where.append(f"column {self.column}" + (f" (header '{self.header}')" if self.header else ""))
        return f"{', '.join(where)}: {self.reason}"

    def to_dict(self) -> dict:
        return {
            "check": self.check,
            "severity": "error",
            "file": self.file,
            "lines": self.lines,
            "column": self.column,
            "header": self.header,
            "sample_values": self.values,
            "reason": self.reason,
            "message": self.message,
        }


@dataclass
class FileOutcome:
    file_name: str
    sha256: str
    size_bytes: int
    outcome: str  # applied | superseded | duplicate | rejected | held | ignored
    encoding: str | None = None
    period: str | None = None
    rows_read: int = 0
    rows_kept: int = 0
    days: int | None = None
    drop_reasons: dict[str, int] = field(default_factory=dict)
    unknown_headers: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)  # sha256 of files this one replaced
    message: str | None = None
    errors: list[dict] = field(default_factory=list)  # what made the file unusable
    warnings: list[dict] = field(default_factory=list)  # WARN-level findings; the file applied
    validation_seconds: float = 0.0
    superseded_by: str | None = None  # the file that replaced all of this one's rows (same run)
    key_shapes: dict = field(default_factory=dict)  # widths of pupil/resident numbers (no values)
    rows_set_aside: int = 0  # form rows not applied (unknown pupil, older than applied), with reasons

    @property
    def rows_dropped(self) -> int:
        return sum(self.drop_reasons.values())


@dataclass
class SourceReport:
    source_key: str
    files: list[FileOutcome]
    table_rows: int
    rows_inserted: int
    rows_deleted: int
    known_from: str | None
    known_until: str | None
    rebuilt: bool = False
    seconds: float = 0.0
    validations: list = field(default_factory=list)  # quality.FileValidation per file read
    skipped: list[dict] = field(default_factory=list)  # landing entries not read now, and why

    @property
    def validation_seconds(self) -> float:
        return sum(f.validation_seconds for f in self.files)

    def count(self, outcome: str) -> int:
        return sum(1 for f in self.files if f.outcome == outcome)


# ---------------------------------------------------------------------------------------------
# Schema: the staging table's DDL belongs to the catalogue, not to whatever a DataFrame inferred
# ---------------------------------------------------------------------------------------------

MANIFEST_DDL = """
CREATE TABLE IF NOT EXISTS staging.file_manifest (
    source_key VARCHAR NOT NULL,
    file_name VARCHAR NOT NULL,
    sha256 VARCHAR NOT NULL,
    size_bytes BIGINT,
    encoding VARCHAR,
    period VARCHAR,
    landed_at TIMESTAMP,
    processed_at TIMESTAMP NOT NULL,
    outcome VARCHAR NOT NULL,
    rows_read INTEGER,
    rows_kept INTEGER,
    rows_dropped INTEGER,
    drop_reasons VARCHAR,
    unknown_headers VARCHAR,
    superseded_by VARCHAR,
    message VARCHAR,
    archive_path VARCHAR,
    findings VARCHAR,
    days INTEGER
)"""

SCHEMA_VERSIONS_DDL = """
CREATE TABLE IF NOT EXISTS staging._schema_versions (
    source_key VARCHAR PRIMARY KEY,
    fingerprint VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL
)"""


def table_columns(spec: SourceSpec) -> list[tuple[str, str]]:
    return [(c.staged_name, c.sql_type) for c in spec.staged_columns] + list(META_COLUMNS)


def schema_fingerprint(spec: SourceSpec) -> str:
    text = json.dumps([table_columns(spec), spec.known_from, spec.period])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure_base_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS staging")
    con.execute(MANIFEST_DDL)
    con.execute(SCHEMA_VERSIONS_DDL)
    _migrate_manifest(con)


def _create_table(con: duckdb.DuckDBPyConnection, spec: SourceSpec) -> None:
    cols = ", ".join(f'"{name}" {sql_type}' for name, sql_type in table_columns(spec))
    con.execute(f"CREATE OR REPLACE TABLE staging.{spec.key} ({cols})")
    con.execute(
        "INSERT OR REPLACE INTO staging._schema_versions VALUES (?, ?, ?)",
        [spec.key, schema_fingerprint(spec), _now()],
    )


def ensure_table(con: duckdb.DuckDBPyConnection, spec: SourceSpec) -> bool:
    """Create the staging table, or recreate it if the catalogue's schema changed.

    Returns True when the table was (re)created from nothing while files had been applied
    before: the caller then replays those files from the archive.
    """
    ensure_base_schema(con)
    row = next(iter(con.execute(
        "SELECT fingerprint FROM staging._schema_versions WHERE source_key = ?", [spec.key]
    ).fetchall()), None)
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema='staging' AND table_name=?",
        [spec.key],
    ).fetchall()[0][0]
    if exists and row and row[0] == schema_fingerprint(spec):
        return False
    _create_table(con, spec)
    return bool(row)


# ---------------------------------------------------------------------------------------------
# Reading one file
# ---------------------------------------------------------------------------------------------

def normalise_header(header: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", header.replace("\ufeff", "")))


@functools.cache
def _known_headers(city_headers: frozenset[str]) -> frozenset[str]:
    return frozenset(normalise_header(h) for h in city_headers)


def map_headers(spec: SourceSpec, headers: list[str], file: str) -> tuple[dict[str, int], list[str]]:
    """Canonical column name → position in the file, and the headers nobody asked for."""
    normalised = [normalise_header(h) for h in headers]
    known = _known_headers(spec.city_headers or frozenset(h for c in spec.columns for h in c.accepted_headers))
    if not any(h in known for h in normalised):
        # No header the catalogue knows: most likely the header line is missing and this is the
        # first data row. Its values are personal (names, addresses): only their shapes are shown.
        shapes = ", ".join(value_shape(h) for h in headers[:12])
        raise IngestError(
            file, f"the first line holds none of the headers of {spec.key} ({len(headers)} values: {shapes}"
                  f"{', …' if len(headers) > 12 else ''}): is the header line missing? Export the file again "
                  f"with its header line ({', '.join(c.header for c in spec.columns if c.required)})",
            line=1, check="headers")
    seen: dict[str, int] = {}
    for i, h in enumerate(normalised):
        if h in seen and h:
            raise IngestError(file, f"the header '{headers[i]}' appears twice (columns "
                              f"{seen[h] + 1} and {i + 1})", line=1, check="headers")
        seen[h] = i
    positions: dict[str, int] = {}
    for col in spec.columns:
        found = [(h, seen[normalise_header(h)]) for h in col.accepted_headers if normalise_header(h) in seen]
        if col.pseudonym_headers and len({h in col.pseudonym_headers for h, _ in found}) > 1:
            both = ", ".join(f"'{h}'" for h, _ in found)
            raise IngestError(file, f"the file has both {both}: a pupil is given by 学籍番号 or by its 仮名ID "
                                    f"(pseudonym), never both", line=1, column=col.name, check="headers")
        if found:
            positions[col.name] = found[0][1]
        if col.name not in positions and col.required:
            raise IngestError(
                file,
                f"required column '{col.header}' ({col.name}) is missing; accepted headers: "
                f"{', '.join(col.headers)}; the file has: {', '.join(headers)}",
                line=1, column=col.name, header=col.header, check="headers",
            )
    used = set(positions.values())
    unknown = [headers[i] for i in range(len(headers)) if i not in used and normalised[i]]
    return positions, unknown


def _first_record(text_head: str, delim: str = ",") -> list[str]:
    return next(csv.reader(io.StringIO(text_head), delimiter=delim), [])


def _delimiter(first_line: str) -> str:
    """Comma, unless the header line is tab-separated (Excel's "Unicode text" export)."""
    return "\t" if first_line.count("\t") > first_line.count(",") else ","


# A value as a message may show it when the column is personal: its shape, never the value.
_SHAPES = (
    (re.compile(r"^\d+$"), lambda v: f"{len(v)} digits"),
    (re.compile(r"^(令和|平成|昭和|[RHS])\s*(\d+|元)[年.]"), lambda v: "a 和暦 date"),
    (re.compile(r"^\d{4}[-/年]\d{1,2}([-/月]\d{1,2})?"), lambda v: "a date"),
    (re.compile(r"^[\u3041-\u309f\u30a0-\u30ff\s・ー]+$"), lambda v: f"kana, {len(v)} characters"),
)


def value_shape(value: str | None) -> str:
    """'8 digits', 'a 和暦 date', 'text of 5 characters': what a value looks like, not what it is."""
    text = unicodedata.normalize("NFKC", value or "").strip()
    if not text:
        return "blank"
    for pattern, describe in _SHAPES:
        if pattern.match(text):
            return describe(text)
    return f"text of {len(text)} character{'s' if len(text) != 1 else ''}"


def personal(col: Column | None) -> bool:
    """Whether a column's values are personal: never quoted in a message, manifest or log."""
    return col is not None and col.personal


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _duckdb_line(error: Exception) -> int | None:
    m = re.search(r"Line:\s*(\d+)", str(error))
    return int(m.group(1)) if m else None


def _column_at(spec: SourceSpec, headers: list[str], index: int) -> tuple[str | None, str | None]:
    """(canonical column, header as written) of the index-th field of a line."""
    if not 0 <= index < len(headers):
        return None, None
    header = headers[index]
    written = normalise_header(header)
    for col in spec.columns:
        if any(normalise_header(h) == written for h in col.accepted_headers):
            return col.name, header
    return header, header


def _field_index(line_prefix: str) -> int:
    """Which field (0-based) a position is in, given the text of its line up to it."""
    try:
        return max(len(next(csv.reader([line_prefix.replace("\r", " ")]), [""])) - 1, 0)
    except csv.Error:
        return 0


def _line_bounds(data: bytes, pos: int) -> tuple[int, int, int]:
    """(line number, start, end) of the line holding byte ``pos``."""
    newline = b"\n" if b"\n" in data else b"\r"
    start = data.rfind(newline, 0, pos) + 1
    end = data.find(newline, pos)
    return data.count(newline, 0, pos) + 1, start, len(data) if end < 0 else end


def _header_fields(data: bytes, encoding: str) -> list[str]:
    first = data[:65536].decode(encoding, errors="replace").replace("\ufeff", "")
    return _first_record((first.splitlines() or [""])[0])


def _encoding_error(spec: SourceSpec, data: bytes, name: str, reason: str) -> IngestError:
    """Where a file stops being text: its line, column and bytes, in the encoding it reads furthest
    in (a UTF-8 BOM settles which). A line pasted from a CP932 file into a UTF-8 one is the usual
    cause, and the message says so."""
    if b"\x00" in data and not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return IngestError(name, f"cannot be read as text: {reason}", check="encoding")
    failures = []
    for encoding in ("utf-8", "cp932"):
        skip = len(codecs.BOM_UTF8) if encoding == "utf-8" and data.startswith(codecs.BOM_UTF8) else 0
        try:
            data[skip:].decode(encoding)
        except UnicodeDecodeError as e:
            failures.append((e.start + skip, e.end + skip, encoding))
    if not failures:
        return IngestError(name, f"cannot be read as text: {reason}", check="encoding")
    pos, end, encoding = max(failures)
    if data.startswith(codecs.BOM_UTF8):
        pos, end, encoding = next(f for f in failures if f[2] == "utf-8")
    line, start, line_end = _line_bounds(data, pos)
    if line == 1:  # not even a header line: binary data or an unsupported encoding
        return IngestError(name, f"cannot be read as text: {reason}", check="encoding")
    column, header = _column_at(spec, _header_fields(data, encoding), _field_index(
        data[start:pos].decode(encoding, errors="replace")))
    stop = pos + 1
    while stop < min(line_end, pos + 4) and data[stop] >= 0x40:
        stop += 1
    shown = " ".join(f"{b:02X}" for b in data[pos:stop])
    label = _ENCODING_NAMES[encoding]
    other = "cp932" if encoding == "utf-8" else "utf-8"
    hint = ""
    field_start, field_end = data.rfind(b",", start, pos), data.find(b",", pos, line_end)
    try:
        value = data[start if field_start < 0 else field_start + 1:line_end if field_end < 0 else field_end]
        value = value.decode(other).strip('"\r')
        col = next((c for c in spec.columns if c.name == column), None)
        if value and personal(col):
            hint = f" (in {_ENCODING_NAMES[other]} the value reads as {value_shape(value)})"
        elif value:
            hint = f" (in {_ENCODING_NAMES[other]} the value reads '{value[:20]}')"
    except UnicodeDecodeError:
        pass
    return IngestError(
        name, f"the file is {label} up to here, but the bytes {shown} are not {label}{hint}: a line "
              f"pasted from a file in another encoding? Save the whole file again in one encoding "
              f"(UTF-8 or CP932)",
        line=line, column=column, header=header, values=[shown], check="encoding")


def _japanese(encoding: str) -> bool:
    """An encoding a Japanese export can come in: UTF-8/16, CP932 (Shift_JIS), EUC-JP, ISO-2022-JP."""
    name = codecs.lookup(encoding).name
    return name in ("utf-8", "utf-8-sig", "utf-16", "cp932") or name.startswith(("euc_j", "iso2022_jp"))


def _cut_inside_character(data: bytes, encoding: str) -> bool:
    """True when the file ends part-way through a multi-byte character: it was cut off.

    In UTF-8 and CP932 a byte below 0x40 is never part of a multi-byte character, so decoding from
    the last such byte settles it without decoding the whole file again.
    """
    if encoding not in ("utf-8", "utf-8-sig", "cp932"):
        return False
    i, stop = len(data), max(len(data) - 4096, 0)
    while i > stop and data[i - 1] >= 0x40:
        i -= 1
    if i == stop and stop > 0:
        return False  # no character boundary in sight: cannot tell cheaply
    try:
        data[i:].decode(encoding)
    except UnicodeDecodeError:
        return True
    return False


def _truncation_error(spec: SourceSpec, data: bytes, name: str, encoding: str) -> IngestError:
    line, start, _ = _line_bounds(data, len(data) - 1)
    column, header = _column_at(spec, _header_fields(data, encoding),
                                _field_index(data[start:].decode(encoding, errors="ignore")))
    return IngestError(
        name, "the file ends part-way through a character: it was cut off while being exported or "
              "copied (truncated), so its last line is incomplete",
        line=line, column=column, header=header, check="truncated")


def _structure_problem(text: str, n: int, unterminated: bool, delim: str = ",") -> tuple[int, str] | None:
    """(line, reason) of the first record that does not fit the header, found in the text itself."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    previous = start = 0
    try:
        for i, fields in enumerate(reader):
            start, previous = previous + 1, reader.line_num
            if i == 0 or not fields or unterminated:
                continue
            if len(fields) < n or (len(fields) > n and any(f.strip() for f in fields[n:])):
                try:
                    cut = len(fields) < n and not any(any(f.strip() for f in later) for later in reader)
                except csv.Error:
                    cut = False
                return start, (f"the row has {len(fields)} value{'s' if len(fields) != 1 else ''} but the "
                               f"header has {n} columns" + (" — it is the last line: was the file cut off "
                                                            "(truncated)?" if cut else ""))
    except csv.Error:
        return None
    if unterminated and start > 1:
        return start, "a quoted value is never closed (the file may be truncated)"
    return None


def _record_lines(text: str, delim: str = ",") -> list[int] | None:
    """The line each data record starts on, counted as DuckDB reads records: empty lines skipped,
    a quoted value may span lines. None if the text cannot be parsed."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    starts, previous = [], 0
    try:
        for fields in reader:
            if fields:
                starts.append(previous + 1)
            previous = reader.line_num
    except csv.Error:
        return None
    return starts[1:]


def _one_period_error(con, spec: SourceSpec, name: str, periods: list, header_map: dict[str, str]):
    """A file spanning periods: the rows outside the period most of it covers, and the columns
    that decide it."""
    cols = [c for c in spec.staged_columns if re.search(rf"\b{re.escape(c.staged_name)}\b", spec.period)]
    counts = con.execute("SELECT _period, count(*) FROM _typed GROUP BY 1 ORDER BY 2 DESC, 1").fetchall()
    main = next((p for p, _ in counts if p is not None), None)
    lines = [n for (n,) in con.execute(
        f"SELECT _line FROM _typed WHERE _period IS DISTINCT FROM ? ORDER BY 1 LIMIT {ERROR_SAMPLE}",
        [main]).fetchall()]
    shown = ", ".join(str(p) if p is not None else "(none)" for p in periods[:6])
    reason = (f"a file must cover one period of {spec.key} ({spec.export.file_cadence}); this one covers "
              f"{shown}" + (f"; most rows are in {main}" if main is not None and len(counts) > 1 else ""))
    raise IngestError(name, reason, lines=lines, column=", ".join(c.name for c in cols) or None,
                      header=", ".join(header_map[c.name] for c in cols if c.name in header_map) or None,
                      check="one_period")


class _Converter:
    """Turns distinct raw values of one column into typed values, or says why it can't.

    Results are remembered across files: the 12,000 pupil numbers of one month's attendance are
    the same next month, and hashing them again would be most of the cost of a file.
    """

    def __init__(self, col: Column, key: bytes):
        self.col = col
        self.key = key
        self.memo: dict[tuple[str, str | None], object] = {}
        if col.values is not None:
            self.lookup = {parsing.normalise_text(k): v for k, v in col.values.items()}

    def __call__(self, raw: str, school_type: str | None = None):
        """The typed value; raises ParseError."""
        memo_key = (raw, school_type)
        try:
            result = self.memo[memo_key]
        except KeyError:
            try:
                result = self._convert(raw, school_type)
            except parsing.ParseError as e:
                result = e
            if len(self.memo) < 1_000_000:
                self.memo[memo_key] = result
        if isinstance(result, parsing.ParseError):
            raise result
        return result

    def _convert(self, raw: str, school_type: str | None):
        col = self.col
        kind = col.kind
        if kind in ("date", "timestamp_date"):
            day = _representable(raw, parsing.parse_date(raw))
            # A birth date is personal; its month is all that age-based features need.
            return day.replace(day=1) if day is not None and col.pii == "birth_month" else day
        if kind == "month":
            return _representable(raw, parsing.parse_month(raw))
        if kind == "school_year":
            return parsing.parse_school_year(raw)
        if kind == "grade":
            return parsing.parse_grade(raw, school_type)
        if kind == "pseudonym":
            text = (raw or "").strip()
            if not text:
                return None
            if not re.fullmatch(r"[0-9a-f]{16}", text):
                raise parsing.ParseError(raw, f"not a pseudonym (16 characters 0-9, a-f) in {col.header}")
            return text
        if kind in ("pupil_number", "resident_number"):
            number = normalise_number(raw)
            if not number:
                return None
            if not re.fullmatch(r"[0-9A-Za-z-]{1,32}", number):
                raise parsing.ParseError(raw, f"'{raw}' is not a {col.header}")
            return pseudonymise(self.key, number)
        text = parsing.normalise_text(raw)
        if text is None:
            return None
        if kind == "category" or kind == "bool":
            if text not in self.lookup:
                allowed = "、".join(dict.fromkeys(str(k) for k in col.values))
                raise parsing.ParseError(raw, f"'{raw}' is not an allowed value; allowed: {allowed}")
            return self.lookup[text]
        if kind == "multi":
            parts = [p for p in re.split(r"[／/、;；|]", text) if p.strip()]
            codes = []
            for part in parts:
                part = part.strip()
                if part not in self.lookup:
                    allowed = "、".join(dict.fromkeys(str(k) for k in col.values))
                    raise parsing.ParseError(raw, f"'{part}' is not an allowed value; allowed: {allowed}")
                codes.append(self.lookup[part])
            return ";".join(sorted(set(codes))) or None
        if kind == "school_code":
            code = text.upper()
            if not _SCHOOL_CODE.match(code):
                raise parsing.ParseError(raw, f"'{raw}' is not a 13-character MEXT school code")
            return code
        if kind == "time":
            m = _TIME.match(text)
            if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
                raise parsing.ParseError(raw, f"'{raw}' is not a time of day (HH:MM)")
            return f"{int(m.group(1)):02d}:{m.group(2)}"
        return text  # str

    @property
    def arrow_type(self) -> pa.DataType:
        sql = self.col.sql_type
        return {"DATE": pa.date32(), "INTEGER": pa.int64(), "TINYINT": pa.int8(),
                "BOOLEAN": pa.bool_(), "DOUBLE": pa.float64()}.get(sql, pa.string())


def _representable(raw: str, day: date | None) -> date | None:
    if day is not None and not _FIRST_DAY <= day <= _LAST_DAY:
        raise parsing.ParseError(raw, f"not a plausible date: the year {day.year} (dates must lie between "
                                      f"{_FIRST_DAY.year} and {_LAST_DAY.year})")
    return day


_CONVERTERS: dict[tuple[str, str, bytes], _Converter] = {}


def _converter(spec: SourceSpec, col: Column, key: bytes) -> _Converter:
    """One converter per column definition and key, kept for the life of the process."""
    memo_key = (spec.key, repr(col), key)  # the repr covers every field, so an edited spec is new
    found = _CONVERTERS.get(memo_key)
    if found is None:
        found = _CONVERTERS[memo_key] = _Converter(col, key)
    return found


@dataclass
class _StagedFile:
    """A file read into the temporary table ``_typed``, ready to apply."""

    encoding: str
    period: str
    rows_read: int
    rows_kept: int
    drop_reasons: dict[str, int]
    unknown_headers: list[str]
    headers: dict[str, str]  # canonical column name -> the header as it appeared in the file
    days: int | None  # distinct record dates in a monthly file (volume is compared per day)
    key_shapes: dict[str, dict] = field(default_factory=dict)  # number column -> widths, zero-led
    unmapped: dict[str, int] = field(default_factory=dict)  # hand-typed column -> values not kept
    identities: list[IdentityRecord] = field(default_factory=list)  # registry names, for identity/


def read_file(
    con: duckdb.DuckDBPyConnection,
    spec: SourceSpec,
    path: Path,
    key: bytes,
    *,
    display_name: str | None = None,
    scratch: Path | None = None,
    data: bytes | None = None,
) -> _StagedFile:
    """Read one landed file into the temporary table ``_typed``. Raises IngestError.

    ``data`` is the file's content when the caller has already read (and hashed) it."""
    name = display_name or path.name
    if not spec.exported:
        raise IngestError(name, f"the city file has no section [sources.{spec.key}]: this city does not export "
                                f"{spec.title_ja} ({spec.key}), so its files are not read. If it now does, add the "
                                f"section (`toda sources profile FILE --source {spec.key} --draft OUT` drafts it) and "
                                f"land the file again", check="city_file")
    data = path.read_bytes() if data is None else data
    if not data.strip():
        raise IngestError(name, "the file is empty", check="not_empty")
    if spec.export.layout == "monthly_grid":  # a row per pupil and month: made long first (layouts.py)
        return layouts.read_grid(con, spec, path, key, name=name, scratch=scratch, data=data, read=read_file)
    try:
        encoding = parsing.detect_encoding(data)
    except parsing.ParseError as e:
        raise _encoding_error(spec, data, name, e.reason) from e
    if not _japanese(encoding):
        # charset_normalizer's guess for bytes that are neither UTF-8 nor CP932: a single-byte code
        # page (ptcp154, cp1251…) decodes anything, so a UTF-8 file with one CP932 line pasted in
        # would be read as mojibake. Say where the file stops being what it is instead.
        raise _encoding_error(spec, data, name, f"neither UTF-8 nor CP932 (closest guess: {encoding})")
    if _cut_inside_character(data, encoding):
        raise _truncation_error(spec, data, name, encoding)

    utf8 = encoding in ("utf-8", "utf-8-sig")
    # detect_encoding has already decoded a UTF-8 file strictly: DuckDB reads it as it is, and
    # only its first line is needed here. Anything else is decoded once and transcoded below.
    text = None if utf8 else parsing.decode_bytes(data)[0]
    head = data[:65536].decode(encoding, errors="ignore") if utf8 else text[:65536]
    first_line = (head.lstrip("\ufeff").splitlines() or [""])[0]
    delim = _delimiter(first_line)
    headers = _first_record(first_line, delim)
    if not any(h.strip() for h in headers):
        raise IngestError(name, "the first line holds no headers", line=1, check="headers")
    positions, unknown = map_headers(spec, headers, name)
    identity_cols = [c for c in spec.columns if c.pii == "identity" and c.name in _header_positions(spec, headers)]

    csv_path, tmp = path, None
    if not utf8:
        csv_path = tmp = utf8_copy(text, scratch or Path(tempfile.gettempdir()))
    # Lines in the file, trailing blank ones aside: when they outnumber the records (blank lines,
    # values spanning lines), line numbers are worked out from the text instead of the row number.
    newline = b"\n" if b"\n" in data else b"\r"
    physical_lines = data.rstrip(b"\r\n").count(newline) + 1
    del text, head

    def reread() -> str:
        return parsing.decode_bytes(data)[0]

    try:
        staged = _read_csv(con, spec, csv_path, name, encoding, headers, positions, unknown, key,
                           physical_lines, reread, delim)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    if any(c.pii == "identity" for c in spec.columns):
        staged.identities = _identities(con, spec, reread(), delim, headers, identity_cols)
    return staged


def utf8_copy(text: str, scratch: Path) -> Path:
    """``text`` (strictly decoded, so nothing was silently replaced) written as a UTF-8 file in
    ``scratch``, for DuckDB, which reads UTF-8 only (its other encodings need a downloaded
    extension). The caller removes it."""
    scratch.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(suffix=".csv", dir=scratch)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return Path(name)


def _header_positions(spec: SourceSpec, headers: list[str]) -> dict[str, int]:
    written = {normalise_header(h): i for i, h in enumerate(headers)}
    found = {}
    for col in spec.columns:
        pos = next((written[normalise_header(h)] for h in col.accepted_headers if normalise_header(h) in written),
                   None)
        if pos is not None:
            found[col.name] = pos
    return found


def _identities(con, spec: SourceSpec, text: str, delim: str, headers: list[str],
                identity_cols: list[Column]) -> list[IdentityRecord]:
    """Names, kana and seat numbers of a registry file, for the identity store only.

    Read with Python's csv module from the decoded text, never through DuckDB: names must not
    enter the warehouse, not even a temporary table. Joined to the typed rows by line number, so
    a row the reader dropped (blank, 合計) has no identity either."""
    positions = _header_positions(spec, headers)
    typed = {line: (pid, year, school, grade, cls) for line, pid, year, school, grade, cls in con.execute(
        "SELECT _line, pupil_id, school_year, school_code, grade, class_name FROM _typed").fetchall()}
    records = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    starts = _record_lines(text, delim) or []
    rows = [r for r in reader if r][1:]
    for line, fields in zip(starts, rows):
        found = typed.get(line)
        if found is None:
            continue
        values = {c.name: (fields[positions[c.name]].strip() if positions[c.name] < len(fields) else "")
                  for c in identity_cols if c.name in positions}
        seat = parsing.normalise_text(values.get("seat_number") or "")
        records.append(IdentityRecord(
            pupil_id=found[0], school_year=found[1], school_code=found[2], grade=found[3], class_name=found[4],
            seat_number=int(seat) if seat and seat.isdigit() else None,
            name=parsing.normalise_text(values.get("name") or "") or None,
            kana=parsing.normalise_text(values.get("kana") or "") or None))
    return records


def _read_csv(con, spec, csv_path, name, encoding, headers, positions, unknown, key,
              physical_lines: int | None = None, reread: Callable[[], str] | None = None,
              delim: str = ",") -> _StagedFile:
    n = len(headers)
    all_cols = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(n))
    wanted = {c.name: positions[c.name] for c in spec.staged_columns if c.name in positions}
    # The reader gives NULL for an empty field, so a row of bare commas is all NULL.
    blank = " AND ".join(f"c{i} IS NULL" for i in range(n))
    # every marker contains 計: trimming only the cells that do keeps this cheap on big files
    markers = ", ".join(_sql_str(m) for m in TOTAL_MARKERS)
    total = " OR ".join(
        f"(contains(c{i}, '計') AND trim(c{i}, ' 　') IN ({markers}))" for i in range(min(n, 3))
    )
    keep = ", ".join(f"c{i}" for i in sorted(set(wanted.values())))
    try:
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _raw AS
            SELECT {keep},
                   CASE WHEN {blank} THEN 'blank_row' WHEN {total} THEN 'total_row' END AS _drop
            FROM read_csv({_sql_str(str(csv_path))}, header = false, skip = 1, delim = {_sql_str(delim)},
                          quote = '"', escape = '"', auto_detect = false, strict_mode = true,
                          null_padding = false, all_varchar = true, columns = {{{all_cols}}})
        """)
    except duckdb.Error as e:
        first = str(e).split("\n")[0]
        detail = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", str(e))
        reason = (f"the row has {detail.group(2)} value{'s' if detail.group(2) != '1' else ''} but the "
                  f"header has {detail.group(1)} columns" if detail else first.replace("Invalid Input Error: ", ""))
        line = _duckdb_line(e)
        if "unterminated quote" in str(e):
            reason = "a quoted value is never closed (the file may be truncated)"
        # DuckDB counts a value spanning lines as one line: find the row in the text itself
        found = (_structure_problem(reread(), n, "unterminated quote" in str(e), delim)
                 if reread is not None else None)
        if found is not None:
            line, reason = found
        raise IngestError(name, reason, line=line, check="csv_structure") from e

    rows_read, blank_rows, total_rows = con.execute(
        "SELECT count(*), count(*) FILTER (_drop = 'blank_row'), count(*) FILTER (_drop = 'total_row') FROM _raw"
    ).fetchall()[0]
    drops = {k: v for k, v in (("blank_row", blank_rows), ("total_row", total_rows)) if v}
    if rows_read - sum(drops.values()) == 0:
        raise IngestError(name, "the file has a header but no data rows", line=1, check="has_rows")

    # one line per record, the header on line 1; rows of a table made inside an open transaction
    # (a file read by itself while its batch's transaction is open) are numbered from a base
    first, = con.execute("SELECT min(rowid) FROM _raw").fetchall()[0]
    line_sql = f"(r.rowid - {int(first or 0)} + 2)"
    if physical_lines is not None and reread is not None and physical_lines != rows_read + 1:
        starts = _record_lines(reread(), delim)
        if starts is not None and len(starts) == rows_read:
            con.register("_lines_arrow", pa.table({"_ln": pa.array(starts, pa.int32())}))
            con.execute("CREATE OR REPLACE TEMP TABLE _raw_ln AS SELECT r.*, l._ln FROM _raw r "
                        "POSITIONAL JOIN _lines_arrow l")
            con.unregister("_lines_arrow")
            con.execute("DROP TABLE _raw")
            con.execute("ALTER TABLE _raw_ln RENAME TO _raw")
            line_sql = "r._ln"

    _check_values(con, name, [c for c in spec.staged_columns if c.name in positions], positions, headers,
                  line_sql)
    unmapped = {column: n for column, (n, _) in _type_rows(con, spec, name, positions, headers, key,
                                                           line_sql).items()}
    shapes = _number_shapes(con, spec, positions, headers, line_sql).get(0, {})
    header_map = {col: headers[pos] for col, pos in positions.items()}
    _check_required(con, spec, name, positions, headers)
    if spec.handling == "rows":
        superseded = _latest_submission_wins(con, spec).get(0)
        if superseded:
            drops["duplicate_submission"] = superseded
    else:
        _check_unique_key(con, spec, name, header_map)
    periods = [p for (p,) in con.execute("SELECT DISTINCT _period FROM _typed ORDER BY 1").fetchall()]
    if len(periods) != 1 or periods[0] is None:
        _one_period_error(con, spec, name, periods, header_map)
    kept = rows_read - sum(drops.values())
    days = None
    if spec.event_date:
        days, = con.execute(f'SELECT count(DISTINCT "{spec.event_date}") FROM _typed').fetchall()[0]
    return _StagedFile(encoding, periods[0], rows_read, kept, drops, unknown, header_map, days,
                       key_shapes=shapes, unmapped=unmapped)


def _type_rows(con, spec: SourceSpec, name: str, positions, headers, key: bytes, line_sql: str, *,
               source: str = "_raw r", carry: str = "", lookup_line_sql: str | None = None, period: bool = True
               ) -> dict[str, tuple[int, list[str]]]:
    """``_raw`` → ``_typed``: every staged column converted on its distinct raw values, with the
    line each row came from. Raises IngestError on a value that cannot be read. ``source`` and
    ``carry`` let a batch of files bring its file number along (``lookup_line_sql`` is the line
    when only ``_raw`` is at hand, for error messages). Returns, per hand-typed column,
    how many values were not among the catalogue's codes and which raw values they were."""
    typed = _typed_select(con, spec, name, positions, headers, key, lookup_line_sql or line_sql)
    select = [f"{line_sql}::INTEGER AS _line"] + ([carry] if carry else [])
    if spec.handling == "rows":
        submitted = positions.get(spec.submitted_at) if spec.submitted_at else None
        select.append(_timestamp_expr(f"r.c{submitted}") + " AS _order" if submitted is not None
                      else "CAST(NULL AS TIMESTAMP) AS _order")
    select += [f'{expr} AS "{column}"' for column, expr in typed.exprs.items()]
    typed_cols = ", ".join(f'"{c.staged_name}"' for c in spec.staged_columns)
    order = ", _order" if spec.handling == "rows" else ""
    kept = ", _file" if carry else ""
    # a batch leaves the period out: it is worked out per file from its distinct dates (coverage)
    period_col = f", ({spec.period})::VARCHAR AS _period" if period else ""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _typed AS
        SELECT {typed_cols}, _line, ({spec.known_from})::DATE AS known_date{period_col}{order}{kept}
        FROM (SELECT {', '.join(select)} FROM {source} {typed.join_sql()} WHERE r._drop IS NULL)
    """)
    return typed.unmapped


@dataclass
class _Typing:
    """How ``_raw``'s text columns (``r.c<position>``) become the staged columns: per staged
    column an SQL expression over ``r`` and the value maps it joins (``LEFT JOIN <map> ON …``)."""

    exprs: dict[str, str]  # staged name -> SQL expression (a map's value, a numeric cast, a NULL)
    joins: dict[str, str]  # staged name -> its map's LEFT JOIN clause (mapped columns only)
    reads: dict[str, list[int]]  # staged name -> the raw positions its value depends on
    maps: dict[str, str]  # staged name -> its map table (raw, stype, value)
    raw: dict[str, str]  # staged name -> the raw expression its map is keyed on
    unmapped: dict[str, tuple[int, list[str]]]  # hand-typed column -> (rows not kept, raw values)

    def join_sql(self, columns=None) -> str:
        return " ".join(j for c, j in self.joins.items() if columns is None or c in columns)


def raw_reads(spec: SourceSpec, positions: dict[str, int]) -> dict[str, list[int]]:
    """Per staged column, the raw positions its typed value is made from (a grade's school
    type comes from the school code)."""
    school = positions.get("school_code")
    return {c.staged_name: ([] if c.name not in positions else [positions[c.name]] + (
        [school] if c.kind == "grade" and school is not None else []))
        for c in spec.staged_columns}


def _typed_select(con, spec: SourceSpec, name: str, positions, headers, key: bytes, lookup_line_sql: str, *,
                  maps: str = "m", kept: Callable[[list[int]], str] | None = None) -> _Typing:
    """Build the value maps of ``_raw``'s mapped columns (``<maps><position>``: each distinct raw
    value converted once) and the expressions that type a row of ``_raw r``. Raises IngestError
    on a value that cannot be read (``lookup_line_sql``: its line, for the message). ``kept``:
    given the raw positions a map reads, where their values in the rows kept are."""
    typing = _Typing({}, {}, raw_reads(spec, positions), {}, {}, {})
    school_code_pos = positions.get("school_code")
    for col in spec.staged_columns:
        if col.name not in positions:
            typing.exprs[col.staged_name] = f"CAST(NULL AS {col.sql_type})"
            continue
        pos = positions[col.name]
        raw = f"r.c{pos}"
        if col.kind == "timestamp_date":
            raw = _date_part(raw)
        header = headers[pos]
        if col.kind in _SQL_ONLY_KINDS:
            typing.exprs[col.staged_name] = _numeric_expr(raw, col)
            continue
        alias = f"{maps}{pos}"
        by_school_type = col.kind == "grade" and school_code_pos is not None
        school_type_sql = f"trim(r.c{school_code_pos}, ' 　')" if by_school_type else None
        as_written = col
        if normalise_header(header) in {normalise_header(h) for h in col.pseudonym_headers}:
            as_written = replace(col, kind="pseudonym")  # already pseudonymised: checked, not hashed
        lost, values = _build_map(con, name, _converter(spec, as_written, key), header, raw, school_type_sql,
                                  alias, lookup_line_sql, **({"kept": kept(typing.reads[col.staged_name])} if kept else {}))
        if lost:
            typing.unmapped[col.name] = (lost, values)
        cond = f"{raw} = {alias}.raw" + (f" AND {school_type_sql} = {alias}.stype" if by_school_type else "")
        typing.joins[col.staged_name] = f"LEFT JOIN {alias} ON {cond}"
        typing.exprs[col.staged_name] = f"{alias}.value"
        typing.maps[col.staged_name] = alias
        typing.raw[col.staged_name] = raw
    return typing


def _date_part(raw: str) -> str:
    """A form timestamp's date part, in SQL (the value as it is when it has no time of the form
    parsing reads): converted once per day, not once per distinct second (2.2 million in five
    years of mood check-ins)."""
    return (f"coalesce(nullif(regexp_extract({raw}, '^([0-9]{{4}}[-/.][0-9]{{1,2}}[-/.][0-9]{{1,2}})"
            f"[ T][0-9]{{1,2}}:[0-9]{{2}}(?::[0-9]{{2}}(?:[.][0-9]+)?)?$', 1), ''), {raw})")


def _timestamp_expr(raw: str) -> str:
    """A form's timestamp ('2024/4/8 8:12:33', full-width digits too) as a TIMESTAMP, or NULL."""
    cleaned = _digits(raw)
    # the form's own format as written first: coalesce cleans only the values it could not read
    return (f"coalesce(try_strptime({raw}, '%Y/%m/%d %H:%M:%S'), try_strptime({cleaned}, '%Y/%m/%d %H:%M:%S'), "
            f"try_strptime({cleaned}, '%Y-%m-%d %H:%M:%S'), try_strptime({cleaned}, '%Y/%m/%d %H:%M'))")


def _latest_submission_wins(con, spec: SourceSpec, within: str | None = None) -> dict[int, int]:
    """Forms: of several submissions with one key, keep the latest (by the form's timestamp, then
    the later line); returns how many earlier ones were dropped, per value of ``within`` (the
    file of a batch; one file: 0)."""
    keys = ", ".join(f'"{k}"' for k in (*spec.key_columns, *([within] if within else [])))
    group = within or "0"
    # only keys submitted more than once are ranked (a hash shared by chance just ranks a few
    # more, each within its own key): ranking millions of single submissions costs seconds
    con.execute(f"CREATE OR REPLACE TEMP TABLE _resubmitted AS SELECT hash({keys}) AS h FROM _typed "
                f"GROUP BY 1 HAVING count(*) > 1")
    if not con.execute("SELECT count(*) FROM _resubmitted").fetchall()[0][0]:
        return {}
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _earlier AS SELECT {group} AS g, _line FROM (
            SELECT *, row_number() OVER (PARTITION BY {keys} ORDER BY _order DESC NULLS LAST, _line DESC) AS _rank
            FROM _typed WHERE hash({keys}) IN (SELECT h FROM _resubmitted))
        WHERE _rank > 1""")
    con.execute(f"DELETE FROM _typed WHERE ({group}, _line) IN (SELECT (g, _line) FROM _earlier)")
    return dict(con.execute("SELECT g, count(*) FROM _earlier GROUP BY 1").fetchall())


def _number_shapes(con, spec: SourceSpec, positions: dict[str, int], headers: list[str],
                   line_sql: str, by: str = "0", kept: Callable[[list[int]], str] | None = None
                   ) -> dict[int, dict[str, dict]]:
    """How wide each pupil or resident number is, and how many begin with 0: the shape of a key
    (never its values), compared across files to catch numbers that lost their leading zeros.
    Per value of ``by`` (the file of a batch; one file: 0).

    Counted over the distinct numbers with their row counts (12,000 numbers, not 250,000 rows);
    the lines of numbers off the file's usual width are looked up only when there are any.
    ``kept``: given a number's raw position, where its values in the rows kept are, with their
    row counts (``_n``: a batch's raw values grouped per file)."""
    shapes: dict[int, dict[str, dict]] = {}
    for col in spec.staged_columns:
        if col.kind not in ("pupil_number", "resident_number") or col.name not in positions:
            continue
        written = normalise_header(headers[positions[col.name]])
        if written in {normalise_header(h) for h in col.pseudonym_headers}:
            continue  # the portal's pseudonyms have no digits to lose
        raw = f"r.c{positions[col.name]}"
        digits = _digits("v")
        found: dict[int, list[tuple]] = {}
        for g, w, n, z in con.execute(f"""
            SELECT g, length({digits}) AS w, sum(n)::BIGINT, (sum(n) FILTER (starts_with({digits}, '0')))::BIGINT
            FROM (SELECT {by} AS g, {raw} AS v, {"sum(r._n)" if kept else "count(*)"} AS n
                  FROM {kept([positions[col.name]]) if kept else "_raw r WHERE r._drop IS NULL AND"} {raw} IS NOT NULL
                  GROUP BY 1, 2)
            WHERE {digits} <> '' GROUP BY 1, 2""").fetchall():
            found.setdefault(g, []).append((w, n, z))
        for g, rows in found.items():
            lines: list[int] = []
            if len(rows) > 1:
                usual = max(rows, key=lambda r: r[1])[0]
                lines = [n for (n,) in con.execute(
                    f"SELECT {line_sql}::INTEGER AS line FROM _raw r WHERE r._drop IS NULL AND {raw} IS NOT NULL "
                    f"AND {by} = ? AND length({_digits(raw)}) <> ? ORDER BY 1 LIMIT {ERROR_SAMPLE}",
                    [g, usual]).fetchall()]
            shapes.setdefault(g, {})[col.name] = {"widths": {str(w): int(n) for w, n, _ in rows},
                                                  "zero_led": int(sum(z or 0 for _, _, z in rows)), "lines": lines}
    return shapes


def _digits(raw: str) -> str:
    """A number as ASCII digits (full-width digits folded, spaces trimmed), in SQL.

    A value of printable ASCII without spaces, as nearly every value is, is left as it is:
    DuckDB's translate costs about a microsecond a row, which made checking a survey's answer
    columns cost more than reading them."""
    return (f"(CASE WHEN regexp_full_match({raw}, '[!-~]*') THEN {raw} "
            f"ELSE translate(trim({raw}, ' 　'), '{_NUMERIC_FROM}', '{_NUMERIC_TO}') END)")


def _numeric_expr(raw: str, col: Column) -> str:
    cleaned = f"replace({_digits(raw)}, ',', '')"
    target = "DOUBLE" if col.kind == "float" else "INTEGER"
    if col.kind == "int":
        # "12.0" from a spreadsheet is still the integer 12; "12.5" is not.
        return (f"(CASE WHEN TRY_CAST({cleaned} AS DOUBLE) = round(TRY_CAST({cleaned} AS DOUBLE)) "
                f"THEN TRY_CAST(TRY_CAST({cleaned} AS DOUBLE) AS INTEGER) END)")
    value = f"TRY_CAST(NULLIF({cleaned}, '') AS {target})"
    # DuckDB reads 'nan' and 'inf' as doubles; pandas then takes NaN for a blank, so a range check
    # would wave it through: neither is a measurement
    return f"(CASE WHEN isfinite({value}) THEN {value} END)"


def _blank(raw: str) -> str:
    return f"coalesce(trim({raw}, ' 　'), '') = ''"


def _check_values(con, name, columns: list[Column], positions, headers, line_sql="(r.rowid + 2)") -> None:
    """Unreadable numbers, for all numeric columns in one scan of the file."""
    rules = []
    for col in columns:
        raw = f"r.c{positions[col.name]}"
        if col.kind in _SQL_ONLY_KINDS:
            kind = "a whole number" if col.kind == "int" else "a number"
            rules.append((col, "type", f"NOT {_blank(raw)} AND {_numeric_expr(raw, col)} IS NULL", kind))
    if not rules:
        return
    counts = con.execute(
        "SELECT " + ", ".join(f"count(*) FILTER ({cond})" for _, _, cond, _ in rules)
        + " FROM _raw r WHERE r._drop IS NULL").fetchall()[0]
    for (col, check, cond, reason), n in zip(rules, counts):
        if not n:
            continue
        raw = f"r.c{positions[col.name]}"
        bad = con.execute(f"SELECT {line_sql}::INTEGER, {raw} FROM _raw r WHERE r._drop IS NULL AND {cond} "
                          f"ORDER BY 1 LIMIT {ERROR_SAMPLE}").fetchall()
        reason = f"'{bad[0][1]}' is not {reason} ({n} such value{'s' if n > 1 else ''})"
        raise IngestError(name, reason, lines=[b[0] for b in bad], column=col.name,
                          header=headers[positions[col.name]], values=[b[1] for b in bad if b[1]],
                          check=check)


def _build_map(con, name, convert: _Converter, header, raw, school_type_sql, alias,
               line_sql="(r.rowid + 2)", kept: str = "_raw r WHERE r._drop IS NULL AND") -> tuple[int, list[str]]:
    """Convert each distinct raw value once; register the result as a join table. Returns how
    many rows hold a hand-typed value that is not among the codes, and those raw values.
    ``kept``: where the rows kept are (a batch's: its raw values grouped per file)."""
    col = convert.col
    stype_select = f", {school_type_sql} AS stype" if school_type_sql else ""
    distinct = con.execute(
        f"SELECT DISTINCT {raw} AS raw{stype_select} FROM {kept} {raw} IS NOT NULL"
    ).fetchall()
    raws, stypes, values, errors = [], [], [], []
    for row in distinct:
        school_type = parsing.school_type_of_code(row[1]) if school_type_sql and row[1] else None
        try:
            value = convert(row[0], school_type)
        except parsing.ParseError as e:
            errors.append((row[0], row[1] if school_type_sql else None, str(e)))
            continue
        raws.append(row[0])
        stypes.append(row[1] if school_type_sql else None)
        values.append(value)
    lost = 0
    if errors and col.unmapped == "count":
        # free text typed where a code belongs: not stored (it may name a child), only counted
        lost, = con.execute(f"SELECT count(*) FROM _raw r WHERE r._drop IS NULL AND {raw} IN (SELECT unnest(?))",
                            [[e[0] for e in errors]]).fetchall()[0]
    elif errors:
        bad_values = [e[0] for e in errors]
        lines = [r[0] for r in con.execute(
            f"SELECT {line_sql}::INTEGER FROM _raw r WHERE r._drop IS NULL AND {raw} IN "
            f"(SELECT unnest(?)) ORDER BY 1 LIMIT {ERROR_SAMPLE}", [bad_values]).fetchall()]
        reason, shown = errors[0][2], bad_values[:ERROR_SAMPLE]
        if personal(col):
            reason = reason.replace(f"'{errors[0][0]}'", f"a value ({value_shape(errors[0][0])})")
            shown = [value_shape(v) for v in shown]
        raise IngestError(name, reason, lines=lines, column=col.name, header=header, values=shown, check="parse")
    table = pa.table({
        "raw": pa.array(raws, pa.string()),
        "stype": pa.array(stypes, pa.string()),
        "value": pa.array(values, convert.arrow_type),
    })
    con.register(f"{alias}_arrow", table)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {alias} AS SELECT * FROM {alias}_arrow")
    con.unregister(f"{alias}_arrow")
    return lost, [e[0] for e in errors] if lost else []


def _check_required(con, spec: SourceSpec, name: str, positions, headers) -> None:
    """A required value that is blank (its typed value is NULL), in one scan of the file."""
    required = [c for c in spec.staged_columns if not c.nullable and c.name in positions]
    counts = con.execute("SELECT " + ", ".join(
        f'count(*) FILTER ("{c.staged_name}" IS NULL)' for c in required) + " FROM _typed").fetchall()[0]
    for col, n in zip(required, counts):
        if n:
            header = headers[positions[col.name]]
            lines = [r[0] for r in con.execute(
                f'SELECT _line FROM _typed WHERE "{col.staged_name}" IS NULL ORDER BY 1 LIMIT {ERROR_SAMPLE}'
            ).fetchall()]
            raise IngestError(name, f"'{header}' is blank but is required ({n} row{'s' if n > 1 else ''})",
                              lines=lines, column=col.name, header=header, check="not_null")


def _check_unique_key(con, spec: SourceSpec, name: str, header_map: dict[str, str] | None = None,
                      within: str | None = None, table: str = "_typed") -> None:
    """No key twice in a file (``within``: the column telling the files of a batch apart) of the
    typed rows in ``table``."""
    keys = ", ".join(f'"{k}"' for k in (*spec.key_columns, *([within] if within else [])))
    # as many distinct 64-bit hashes of the key as rows proves no key twice (equal keys hash
    # alike) and costs a third less than grouping by the key itself; fewer (a duplicate, or
    # rarely two keys hashing alike) is settled by the exact grouping. A batch is counted file by
    # file: a file's hashes fit in the CPU's caches, all 13 million of a batch's do not (-40 %)
    own = ", ".join(f'"{k}"' for k in spec.key_columns)
    if within:
        groups = [g for (g,) in con.execute(f'SELECT DISTINCT "{within}" FROM {table}').fetchall()]
        # the file number written into the query, so that the scan skips the other files' rows
        if all(isinstance(g, int) for g in groups) and all(con.execute(
                f'SELECT count(*) = count(DISTINCT hash({own})) FROM {table} WHERE "{within}" = {int(g)}'
        ).fetchall()[0][0] for g in groups):
            return
    elif con.execute(f"SELECT count(*) = count(DISTINCT hash({keys})) FROM {table}").fetchall()[0][0]:
        return
    if not con.execute(f"SELECT count(*) FROM (SELECT 1 FROM {table} GROUP BY {keys} HAVING count(*) > 1)").fetchall()[0][0]:
        return
    dup = con.execute(f"""
        SELECT list(_line ORDER BY _line) FROM {table} GROUP BY {keys}
        HAVING count(*) > 1 LIMIT {ERROR_SAMPLE}""").fetchall()
    if dup:
        lines = sorted(n for (ls,) in dup for n in ls[:3])

        def group(ls: list[int]) -> str:
            return " and ".join(map(str, ls[:3])) + (f" (and {len(ls) - 3:,} more lines)" if len(ls) > 3 else "")

        raise IngestError(
            name, f"{len(dup)}+ key(s) appear more than once (key: {', '.join(spec.key_columns)}); "
                  f"lines {', '.join(group(ls) for (ls,) in dup)}",
            lines=lines, column=", ".join(spec.key_columns), check="unique_key",
            header=", ".join(header_map[k] for k in spec.key_columns if k in header_map) if header_map else None,
        )


# ---------------------------------------------------------------------------------------------
# Applying a landing folder
# ---------------------------------------------------------------------------------------------

def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc).replace(tzinfo=None)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# What is in a landing folder: files to read, and everything else said out loud
# ---------------------------------------------------------------------------------------------

SETTLE_ENV = "TODA_SETTLE_SECONDS"
SETTLE_SECONDS = 30.0  # a file untouched this long is taken as completely copied
READABLE_SUFFIXES = (".csv", ".tsv", ".txt")  # .txt: Excel's "Unicode text" (UTF-16, tabs)
_SPREADSHEETS = (".xlsx", ".xlsm", ".xls", ".ods")


def settle_seconds() -> float:
    """How long a landed file must stay unchanged before it is read (``TODA_SETTLE_SECONDS``)."""
    value = os.environ.get(SETTLE_ENV, "").strip()
    return float(value) if value else SETTLE_SECONDS


@dataclass
class Skipped:
    """An entry of a landing folder that is not read, and why. ``record``: leave a manifest row
    (once per name and modification time); transient entries (a copy in progress, an editor's
    lock file) are only logged and shown in the run's metadata."""

    name: str
    reason: str
    record: bool
    mtime: float = 0.0


@dataclass
class Scan:
    files: list[Path]
    skipped: list[Skipped]


def scan_landing(folder: Path, *, settle: float | None = None, now: float | None = None,
                 log: Callable[[str], None] = lambda _msg: None) -> Scan:
    """The files of a landing folder to read now, in export order, and the entries skipped.

    A file is read only once it has been left alone for ``settle`` seconds: its inode change
    time (set by every write, copy, rename or ``touch``, and by nothing a sender can back-date)
    must be that old, so a file still being copied — by hand, by a sync tool, by the sensor's
    own run or a nightly one — is left for the next run. A name written in CP932 bytes (a
    Windows zip) is renamed to its readable form first.
    """
    if not folder.is_dir():
        return Scan([], [])
    settle = settle_seconds() if settle is None else settle
    now = time.time() if now is None else now
    files, skipped = [], []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        name = entry.name
        if not _utf8(name):
            renamed = _readable_name(folder, name, log)
            if renamed is None:
                skipped.append(Skipped(_shown(name), "its name is neither UTF-8 nor CP932 text: rename it "
                                       "(letters, digits, Japanese) and land it again", True, _lmtime(entry)))
                continue
            name = renamed
            entry = next(e for e in os.scandir(folder) if e.name == name)
        if name.startswith((".", "~$")):
            skipped.append(Skipped(name, "a hidden or temporary file (an upload in progress or an editor's lock "
                                         "file): not read", False))
            continue
        suffix = Path(name).suffix.lower()
        if entry.is_dir(follow_symlinks=False):
            skipped.append(Skipped(name, "a folder: files in sub-folders are not read; move them directly into "
                                         f"landing/{folder.name}/", True, _lmtime(entry)))
            continue
        if suffix not in READABLE_SUFFIXES:
            why = ("an Excel workbook: save it as CSV (UTF-8 or CP932) and land the CSV" if suffix in _SPREADSHEETS
                   else f"not a CSV file ({suffix or 'no extension'}): only .csv (and tab-separated .tsv/.txt) "
                        f"exports are read")
            skipped.append(Skipped(name, why, True, _lmtime(entry)))
            continue
        if not entry.is_symlink():
            st = entry.stat(follow_symlinks=False)
            age = now - st.st_ctime
            if settle > 0 and age < settle:
                skipped.append(Skipped(name, f"changed {max(age, 0):.0f} s ago: still being copied? It is read once "
                                             f"it has been left alone for {settle:.0f} s", False))
                continue
        files.append(folder / name)
    files.sort(key=lambda p: (export_time(p.name, p.lstat().st_mtime, now)[0], p.name))
    return Scan(files, skipped)


def landed_files(folder: Path, *, settle: float | None = None, now: float | None = None) -> list[Path]:
    """The files a run would read now (settled, readable kinds), in export order."""
    return scan_landing(folder, settle=settle, now=now).files


def _lmtime(entry: os.DirEntry) -> float:
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return 0.0


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:  # undecodable bytes, kept by Python as lone surrogates
        return False


def _shown(name: str) -> str:
    return os.fsencode(name).decode("utf-8", errors="backslashreplace")


def _readable_name(folder: Path, name: str, log: Callable[[str], None]) -> str | None:
    """Rename a file whose name is CP932 bytes to the same name in UTF-8; None if it is not CP932."""
    try:
        readable = os.fsencode(name).decode("cp932")
    except UnicodeDecodeError:
        return None
    if any(unicodedata.category(c) in ("Co", "Cc") for c in readable):
        return None  # bytes that only Python's table maps (to private-use characters): not a name
    target = folder / readable
    if os.path.lexists(target):
        stem, suffix = os.path.splitext(readable)
        target = folder / f"{stem} (CP932){suffix}"
        if os.path.lexists(target):
            return None
    os.rename(folder / name, target)
    log(f"{folder.name}: renamed a file whose name was written in CP932 (a Windows zip?) to '{target.name}'")
    return target.name


# The export's own time: a date (and time) in the file's name, else its modification time.
_NAME_TIME = re.compile(r"(?<!\d)(20\d\d)[-_.]?(0[1-9]|1[0-2])[-_.]?(0[1-9]|[12]\d|3[01])"
                        r"(?:[T_ -]?([01]\d|2[0-3]):?([0-5]\d)(?::?([0-5]\d))?)?(?!\d)")
_PLAUSIBLE_FROM = datetime(2000, 1, 1)
_JST = timezone(timedelta(hours=9))


def export_time(name: str, mtime: float, now: float | None = None) -> tuple[datetime, str]:
    """(when the department's system wrote the file, in naive UTC; where that came from).

    Used to order deliveries across runs and as the date no record may come after. A date in
    the name (出欠_20250710.csv, _2025-07-10_0930) wins; else the modification time, unless it is
    implausible (before 2000, as a zip without dates leaves it: 1980-01-01; or in the future):
    then the time the file is first seen, and the manifest says so."""
    now = time.time() if now is None else now
    m = _NAME_TIME.search(Path(name).stem)
    if m:
        y, mo, d, hh, mm, ss = (int(g) if g else None for g in m.groups())
        try:
            at = datetime(y, mo, d, hh if hh is not None else 23, mm if hh is not None and mm else 59 if hh is None else 0,
                          ss or (59 if hh is None else 0), tzinfo=_JST)
            return at.astimezone(timezone.utc).replace(tzinfo=None), "file name"
        except ValueError:
            pass
    modified = _utc(mtime)
    if _PLAUSIBLE_FROM <= modified <= _utc(now + 86400):
        return modified, "modification time"
    return _utc(now), (f"first seen (its modification time {modified:%Y-%m-%d} cannot be when it was exported: "
                       f"files taken out of a zip without their dates show 1980-01-01)")


def _exported_on(at: datetime) -> date:
    return at.replace(tzinfo=timezone.utc).astimezone(_JST).date()


# ---------------------------------------------------------------------------------------------
# The manifest, the coverage of each file, releases
# ---------------------------------------------------------------------------------------------

_MANIFEST_ADDED = (("exported_at", "TIMESTAMP"), ("export_time_from", "VARCHAR"), ("key_shapes", "VARCHAR"),
                   ("references_fp", "VARCHAR"), ("rows_set_aside", "INTEGER"), ("quarantine_path", "VARCHAR"))

COVERAGE_DDL = """
CREATE TABLE IF NOT EXISTS staging.file_coverage (
    source_key VARCHAR NOT NULL,
    sha256 VARCHAR NOT NULL,
    file_name VARCHAR,
    exported_at TIMESTAMP,
    period VARCHAR,
    scope VARCHAR,
    rows INTEGER,
    replaced_by VARCHAR,
    replaced_at TIMESTAMP
)"""

RELEASES_DDL = """
CREATE TABLE IF NOT EXISTS staging.file_releases (
    source_key VARCHAR NOT NULL,
    sha256 VARCHAR NOT NULL,
    file_name VARCHAR,
    released_at TIMESTAMP NOT NULL,
    note VARCHAR
)"""


def _migrate_manifest(con) -> None:
    for column, sql_type in _MANIFEST_ADDED:
        con.execute(f"ALTER TABLE staging.file_manifest ADD COLUMN IF NOT EXISTS {column} {sql_type}")
    con.execute(COVERAGE_DDL)
    con.execute(RELEASES_DDL)


def _scope_sql(spec: SourceSpec, table: str = "") -> str:
    """Within a period, what a file's rows cover: its schools (or everything, without a school)."""
    if any(c.staged_name == "school_code" for c in spec.staged_columns):
        return f"coalesce({table}\"school_code\", '*')"
    return "'*'"


def _backfill_coverage(con, spec: SourceSpec) -> None:
    """Coverage of files applied before coverage was recorded (warehouses of earlier versions)."""
    missing = [sha for (sha,) in con.execute(
        "SELECT DISTINCT m.sha256 FROM staging.file_manifest m WHERE m.source_key = ? AND m.outcome = 'applied' "
        "AND NOT EXISTS (SELECT 1 FROM staging.file_coverage c WHERE c.source_key = m.source_key "
        "AND c.sha256 = m.sha256)", [spec.key]).fetchall()]
    if not missing:
        return
    con.execute(f"""
        INSERT INTO staging.file_coverage
        SELECT ?, t._file_sha256, m.file_name, coalesce(m.exported_at, m.landed_at), ({spec.period})::VARCHAR,
               {_scope_sql(spec, 't.')}, count(*)::INTEGER, NULL, NULL
        FROM staging.{spec.key} t
        JOIN (SELECT sha256, any_value(file_name) AS file_name, max(exported_at) AS exported_at,
                     max(landed_at) AS landed_at
              FROM staging.file_manifest WHERE source_key = ? AND outcome = 'applied' GROUP BY 1) m
          ON m.sha256 = t._file_sha256
        WHERE t._file_sha256 IN (SELECT unnest(?))
        GROUP BY ALL""", [spec.key, spec.key, missing])


def references_fingerprint(con) -> str:
    """What the reference tables (school master, registries) hold now: a file rejected for an
    unknown pupil or school is retried when this changes."""
    rows = con.execute(
        "SELECT string_agg(source_key || ':' || sha256, ',' ORDER BY source_key, sha256) FROM "
        "(SELECT DISTINCT source_key, sha256 FROM staging.file_coverage WHERE replaced_by IS NULL "
        "AND source_key IN ('school_master', 'pupil_registry'))").fetchall()
    return hashlib.sha256((rows[0][0] or "").encode()).hexdigest()[:16]


def release(con, spec: SourceSpec, paths: Paths, file_name: str, note: str = "") -> Path:
    """A person decides that a held file is the right one: it goes back to landing and the next
    run applies it whatever the order of exports. Returns where it was put."""
    ensure_table(con, spec)
    row = next(iter(con.execute(
        "SELECT sha256, quarantine_path FROM staging.file_manifest WHERE source_key = ? AND file_name = ? "
        "AND outcome = 'held' ORDER BY processed_at DESC LIMIT 1", [spec.key, file_name]).fetchall()), None)
    if row is None:
        raise ValueError(f"{spec.key}: no held file named '{file_name}' (see `toda files {spec.key}`)")
    sha, held = row
    source = Path(held) if held and Path(held).exists() else paths.archive / spec.key / f"{sha}.csv"
    target = paths.landing_dir(spec.key) / file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    con.execute("INSERT INTO staging.file_releases VALUES (?, ?, ?, ?, ?)", [spec.key, sha, file_name, _now(), note])
    if held and Path(held).exists():
        Path(held).unlink()
        Path(f"{held}.reasons.json").unlink(missing_ok=True)
    return target


# ---------------------------------------------------------------------------------------------
# Archive and quarantine
# ---------------------------------------------------------------------------------------------

def _archive(paths: Paths, spec: SourceSpec, data: bytes, sha: str) -> Path:
    """A true, read-only copy of the bytes that were hashed (never a link to the landed file,
    which its sender may still overwrite): the archive matches its name forever."""
    target = paths.archive / spec.key / f"{sha}.csv"
    if target.exists() and sha256_of(target) == sha:
        return target
    write_readonly(target, data)
    return target


def write_readonly(target: Path, data: bytes, prefix: str = ".archiving-") -> None:
    """``data`` as a read-only file, on disk (fsync) before it takes ``target``'s name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=prefix)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o444)
    os.replace(tmp, target)


def _quarantine(paths: Paths, spec: SourceSpec, path: Path | None, name: str, sha: str, reasons: dict,
                *, data: bytes | None = None, defer: list | None = None) -> Path:
    """Move the landed file (or write the archived bytes, on a retry) to quarantine, reasons beside it.

    ``defer``: a batch's open transaction; the move is appended to it and made after its COMMIT
    (a rolled-back batch leaves its files in landing, to be read again). Returns the target."""
    folder = paths.quarantine / spec.key
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if os.path.lexists(target) and not (path is None and _same_file(target, sha)):
        target = folder / f"{Path(name).stem}.{sha[:12] or time.time_ns()}{Path(name).suffix}"
    if defer is not None:
        defer.append(functools.partial(_move_to_quarantine, spec, path, target, sha, reasons, data))
    else:
        _move_to_quarantine(spec, path, target, sha, reasons, data)
    return target


def _move_to_quarantine(spec: SourceSpec, path: Path | None, target: Path, sha: str, reasons: dict,
                        data: bytes | None) -> None:
    if path is not None:
        shutil.move(str(path), target)  # a symlink is moved as a link: its target is not touched
    elif data is not None and not os.path.lexists(target):
        target.write_bytes(data)
    body = {"source_key": spec.key, "sha256": sha, "quarantined_at": _now().isoformat(), **reasons}
    Path(f"{target}.reasons.json").write_text(json.dumps(body, ensure_ascii=False, indent=2, default=str),
                                              encoding="utf-8")


def _same_file(path: Path, sha: str) -> bool:
    try:
        return path.is_file() and sha256_of(path) == sha
    except OSError:
        return False


def _record(con, spec: SourceSpec, out: "FileOutcome", landed: "Landed | None", archive_path=None,
            quarantine_path=None, references_fp=None) -> None:
    values = {
        "source_key": spec.key, "file_name": out.file_name, "sha256": out.sha256, "size_bytes": out.size_bytes,
        "encoding": out.encoding, "period": out.period,
        "landed_at": landed.landed_at if landed else None, "processed_at": _now(), "outcome": out.outcome,
        "rows_read": out.rows_read, "rows_kept": out.rows_kept, "rows_dropped": out.rows_dropped,
        "drop_reasons": json.dumps(out.drop_reasons, ensure_ascii=False),
        "unknown_headers": json.dumps(out.unknown_headers, ensure_ascii=False), "superseded_by": None,
        "message": out.message, "archive_path": str(archive_path) if archive_path else None,
        "findings": json.dumps(_capped(out.errors + out.warnings), ensure_ascii=False, default=str),
        "days": out.days,
        "exported_at": landed.exported_at if landed else None,
        "export_time_from": landed.export_from if landed else None,
        "key_shapes": json.dumps(out.key_shapes) if out.key_shapes else None,
        "references_fp": references_fp, "rows_set_aside": out.rows_set_aside or None,
        "quarantine_path": str(quarantine_path) if quarantine_path else None,
    }
    con.execute(f"INSERT INTO staging.file_manifest ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                list(values.values()))


def _capped(findings: list[dict]) -> list[dict]:
    """Findings as the manifest and reasons files keep them: lists capped, never a whole column."""
    out = []
    for f in findings[:LIST_CAP]:
        f = dict(f)
        for k in ("lines", "sample_values"):
            if isinstance(f.get(k), list) and len(f[k]) > LIST_CAP:
                f[k] = f[k][:LIST_CAP]
        if isinstance(f.get("message"), str) and len(f["message"]) > 2000:
            f["message"] = f["message"][:2000] + " …"
        out.append(f)
    return out


def _drop_temp(con) -> None:
    """One file's working tables (a batch's typed tables stay until the batch is done)."""
    for name, kind in con.execute(
        "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = 'main' "
        "AND table_catalog = 'temp' AND table_name NOT LIKE 'batch_typed_%'").fetchall():
        con.execute(f'DROP {"VIEW" if kind == "VIEW" else "TABLE"} IF EXISTS temp."{name}"')


# ---------------------------------------------------------------------------------------------
# Applying: what a file replaces
# ---------------------------------------------------------------------------------------------

@dataclass
class Landed:
    """One delivery as read: its bytes (hashed once), and when it was landed and exported."""

    name: str
    sha: str
    data: bytes
    landed_at: datetime  # the file's modification time at landing
    exported_at: datetime
    export_from: str
    path: Path | None = None  # in landing; None when read again from the archive
    note: str | None = None  # why it is read again (re-landed, retried, released)

    @property
    def size(self) -> int:
        return len(self.data)


class _Held(Exception):
    """The file must wait for a person; the reason is the message."""

    def __init__(self, error: IngestError):
        self.error = error
        super().__init__(error.message)


def _covered(con, spec: SourceSpec, cov_from: str | None = None) -> None:
    """What the file in ``_typed`` covers: rows per (period, scope). ``cov_from``: the same,
    already counted for the file with its batch (``ingest_batch.coverage``)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _cov AS SELECT _cov_period, _cov_scope, _cov_rows FROM {cov_from}"
                if cov_from else
                f"CREATE OR REPLACE TEMP TABLE _cov AS SELECT _period AS _cov_period, {_scope_sql(spec)} AS _cov_scope, "
                f"count(*)::INTEGER AS _cov_rows FROM _typed GROUP BY ALL")


def _released(con, spec: SourceSpec, sha: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM staging.file_releases WHERE source_key = ? AND sha256 = ?",
                            [spec.key, sha]).fetchall()[0][0])


def _apply(con, spec: SourceSpec, staged: _StagedFile, out: "FileOutcome", landed: Landed, archive_path,
           references_fp: str | None, tx: "ingest_batch.Open | None" = None, cov_from: str | None = None
           ) -> tuple[int, int]:
    """Delete what the file replaces, insert its rows, record it: one transaction (``tx``: the
    batch's, which may already hold the file's rows). Raises _Held before changing anything."""
    _covered(con, spec, cov_from)
    released = _released(con, spec, out.sha256)
    inserted_already = tx is not None and out.sha256 in tx.pending
    if tx is None:
        con.execute("BEGIN TRANSACTION")
    try:
        # read again (a retry once the registry knows more pupils): its own earlier rows and
        # manifest row give way to this reading
        own = 0 if inserted_already else con.execute(
            f"DELETE FROM staging.{spec.key} WHERE _file_sha256 = ?", [out.sha256]).fetchall()[0][0]
        con.execute("DELETE FROM staging.file_manifest WHERE source_key = ? AND sha256 = ? AND outcome = 'applied'",
                    [spec.key, out.sha256])
        if spec.handling == "rows":
            deleted, replaced = _replace_rows(con, spec, out, landed, released)
        else:
            deleted, replaced = _replace_coverage(con, spec, out, landed, released, tx)
        cols = ", ".join(f'"{c.staged_name}"' for c in spec.staged_columns)
        if inserted_already:  # with the batch's other files, in one INSERT (ingest_batch.Open.commit)
            inserted = staged.rows_kept
        else:
            inserted = con.execute(
                f"INSERT INTO staging.{spec.key} ({cols}, _file_sha256, _line, known_date) "
                f"SELECT {cols}, ?, _line, known_date FROM _typed", [out.sha256]).fetchall()[0][0]
        con.execute("DELETE FROM staging.file_coverage WHERE source_key = ? AND sha256 = ?", [spec.key, out.sha256])
        con.execute("INSERT INTO staging.file_coverage SELECT ?, ?, ?, ?, _cov_period, _cov_scope, _cov_rows, NULL, NULL "
                    "FROM _cov", [spec.key, out.sha256, out.file_name, landed.exported_at])
        out.rows_kept = inserted
        deleted += own
        out.superseded = sorted(replaced)
        if replaced:
            out.message = "; ".join(x for x in [out.message, *replaced.values()] if x)
        _record(con, spec, out, landed, archive_path, references_fp=references_fp)
        if tx is None:
            con.execute("COMMIT")
    except BaseException:
        if tx is None:  # in a batch, the batch rolls back as a whole (ingest_source)
            con.execute("ROLLBACK")
        raise
    return inserted, deleted


def _held_error(spec: SourceSpec, out: "FileOutcome", landed: Landed, newer: list[tuple], what: str) -> IngestError:
    name, at = newer[0][1], newer[0][2]
    return IngestError(
        out.file_name,
        f"older than {name} (exported {_jst(at, landed.exported_at)}; this file "
        f"{_jst(landed.exported_at, at)}, from its "
        f"{landed.export_from.split(' (')[0]}), which already holds {what}: not applied, so the newer data stays. "
        f"If this file is the right one, release it: toda release {spec.key} '{out.file_name}'",
        check="older_than_applied")


def _jst(at: datetime, beside: datetime | None = None) -> str:
    """Japan time to the minute, or to the second when ``beside`` (the time it is shown next
    to) falls in the same minute, so that two exports seconds apart do not read as equal."""
    same_minute = beside is not None and at.replace(second=0, microsecond=0) == beside.replace(second=0, microsecond=0)
    return at.replace(tzinfo=timezone.utc).astimezone(_JST).strftime("%Y-%m-%d %H:%M:%S" if same_minute
                                                                     else "%Y-%m-%d %H:%M")


def _rows_per_file(con, spec, shas: list[str], tx: "ingest_batch.Open | None") -> dict[str, int]:
    """Rows of each of ``shas`` in the table and, for a batch's files, waiting to be written."""
    counts = dict(con.execute(f"SELECT _file_sha256, count(*) FROM staging.{spec.key} t WHERE _file_sha256 IN "
                              f"(SELECT unnest(?)) GROUP BY 1", [shas]).fetchall())
    for sha in shas:
        if tx is not None and sha in tx.pending:
            counts[sha] = counts.get(sha, 0) + tx.count(con, sha)
    return {sha: n for sha, n in counts.items() if n}


def _replace_coverage(con, spec, out, landed: Landed, released: bool, tx: "ingest_batch.Open | None" = None
                      ) -> tuple[int, dict[str, str]]:
    """Official records: the file replaces exactly the (period, school) cells its rows cover."""
    live = con.execute(
        "SELECT c.sha256, c.file_name, c.exported_at, c._cov_period, c._cov_scope, c.rows FROM "
        "(SELECT *, period AS _cov_period, scope AS _cov_scope FROM staging.file_coverage) c "
        "JOIN _cov n USING (_cov_period, _cov_scope) WHERE c.source_key = ? AND c.replaced_by IS NULL "
        "AND c.sha256 <> ?", [spec.key, out.sha256]).fetchall()
    newer = [r for r in live if (r[2], r[1]) > (landed.exported_at, landed.name)]
    if newer and not released:
        cells = {(r[3], r[4]) for r in newer}
        schools = {s for _, s in cells if s != "*"}
        what = f"period {', '.join(sorted({p for p, _ in cells}))}" + (
            f" for {len(schools)} school{'s' if len(schools) > 1 else ''}" if schools else "")
        raise _Held(_held_error(spec, out, landed, sorted(newer, key=lambda r: r[2], reverse=True), what))
    if not live:
        return 0, {}
    old = sorted({r[0] for r in live})
    scope = _scope_sql(spec, "t.")
    period = spec.period  # over t's columns: _cov's own are all prefixed _cov_
    # the old files' rows: in the table, or still waiting to be written with their batch (at COMMIT)
    before = _rows_per_file(con, spec, old, tx)
    covered = f"EXISTS (SELECT 1 FROM _cov n WHERE n._cov_period = ({period})::VARCHAR AND n._cov_scope = {scope})"
    deleted = con.execute(f"DELETE FROM staging.{spec.key} t WHERE _file_sha256 IN (SELECT unnest(?)) AND {covered}",
                          [old]).fetchall()[0][0]
    for sha in old:
        if tx is not None and sha in tx.pending:
            deleted += tx.take(con, sha, "_cov")  # never written: the cells of _cov are left out of its rows
    after = _rows_per_file(con, spec, old, tx)
    con.execute("UPDATE staging.file_coverage c SET replaced_by = ?, replaced_at = ? WHERE source_key = ? "
                "AND replaced_by IS NULL AND sha256 <> ? AND EXISTS (SELECT 1 FROM _cov n WHERE "
                "n._cov_period = c.period AND n._cov_scope = c.scope)", [out.sha256, _now(), spec.key, out.sha256])
    return deleted, _mark_replaced(con, spec, out, live, before, after)


def _mark_replaced(con, spec, out, live: list[tuple], before: dict, after: dict) -> dict[str, str]:
    """Manifest of the files the new one replaced: superseded when nothing of theirs is left,
    else a note of what was replaced. Returns, per file, what the new file's message says."""
    said = {}
    for sha in sorted({r[0] for r in live}):
        name = next(r[1] for r in live if r[0] == sha)
        gone = before.get(sha, 0) - after.get(sha, 0)
        left, = con.execute("SELECT count(*) FROM staging.file_coverage WHERE source_key = ? AND sha256 = ? "
                            "AND replaced_by IS NULL", [spec.key, sha]).fetchall()[0]
        if spec.handling == "rows":
            left = after.get(sha, 0)
        cells = [r for r in live if r[0] == sha]
        schools = sorted({r[4] for r in cells if r[4] != "*"})
        if not left:
            con.execute("UPDATE staging.file_manifest SET outcome = 'superseded', superseded_by = ? "
                        "WHERE source_key = ? AND sha256 = ? AND outcome = 'applied'", [out.sha256, spec.key, sha])
            said[sha] = f"replaces {name} ({gone:,} rows)"
        else:
            where_ = (f"{len(schools)} school{'s' if len(schools) > 1 else ''} ({_listed(schools)})" if schools
                      else f"{len(cells)} part{'s' if len(cells) > 1 else ''}")
            note = (f"partly replaced by {out.file_name}: {gone:,} rows at {where_}; its other "
                    f"{after.get(sha, 0):,} rows stay")
            con.execute("UPDATE staging.file_manifest SET message = CASE WHEN message IS NULL THEN ? "
                        "ELSE message || '; ' || ? END WHERE source_key = ? AND sha256 = ? AND outcome = 'applied'",
                        [note, note, spec.key, sha])
            said[sha] = (f"replaces {name} only where this file has rows: {gone:,} rows at {where_}; "
                         f"{after.get(sha, 0):,} rows of {name} elsewhere stay")
    return said


def _listed(items: list[str], cap: int = 5) -> str:
    return ", ".join(items[:cap]) + (f" and {len(items) - cap} more" if len(items) > cap else "")


def _as_table(con) -> None:
    """``_typed`` as a table of its own, for rows to be taken out of it (a file of a batch is a
    view on the batch's table until then: copying every file's rows costs more than the rare
    set-aside)."""
    kind, = con.execute("SELECT table_type FROM information_schema.tables WHERE table_catalog = 'temp' "
                        "AND table_name = '_typed'").fetchall()[0]
    if kind == "VIEW":
        con.execute("CREATE OR REPLACE TEMP TABLE _typed_rows AS SELECT * FROM _typed")
        con.execute("DROP VIEW _typed")
        con.execute("ALTER TABLE _typed_rows RENAME TO _typed")


def _replace_rows(con, spec, out, landed: Landed, released: bool) -> tuple[int, dict[str, str]]:
    """Forms: a row replaces the stored row with its key, unless that row came from a newer export."""
    on = " AND ".join(f's."{k}" IS NOT DISTINCT FROM t."{k}"' for k in spec.key_columns)
    clash = con.execute(f"""
        SELECT t._line, s._file_sha256, c.file_name, c.exported_at
        FROM _typed t JOIN staging.{spec.key} s ON {on}
        JOIN (SELECT sha256, any_value(file_name) AS file_name, max(exported_at) AS exported_at
              FROM staging.file_coverage WHERE source_key = ? GROUP BY 1) c ON c.sha256 = s._file_sha256
        WHERE s._file_sha256 <> ?""", [spec.key, out.sha256]).fetchall()
    older = [r for r in clash if (r[3], r[2]) > (landed.exported_at, landed.name)] if not released else []
    if older:
        lines = sorted(r[0] for r in older)
        _as_table(con)
        con.execute("DELETE FROM _typed WHERE _line IN (SELECT unnest(?))", [lines])
        _set_aside(out, "older_than_applied", lines,
                   f"a newer export ({older[0][2]}) already holds these keys; the newer rows stay")
        _covered(con, spec)
    old = sorted({r[1] for r in clash if r[0] not in set(r2[0] for r2 in older)})
    if not old:
        return 0, {}
    before = dict(con.execute(f"SELECT _file_sha256, count(*) FROM staging.{spec.key} WHERE _file_sha256 IN "
                              f"(SELECT unnest(?)) GROUP BY 1", [old]).fetchall())
    deleted = con.execute(f"DELETE FROM staging.{spec.key} s WHERE EXISTS (SELECT 1 FROM _typed t WHERE {on})"
                          ).fetchall()[0][0]
    after = dict(con.execute(f"SELECT _file_sha256, count(*) FROM staging.{spec.key} WHERE _file_sha256 IN "
                             f"(SELECT unnest(?)) GROUP BY 1", [old]).fetchall())
    live = [(sha, next(r[2] for r in clash if r[1] == sha), None, None, "*", None) for sha in old]
    return deleted, _mark_replaced(con, spec, out, live, before, after)


def _set_aside(out: "FileOutcome", reason: str, lines: list[int], why: str) -> None:
    out.drop_reasons[reason] = out.drop_reasons.get(reason, 0) + len(lines)
    out.rows_set_aside += len(lines)
    shown = ", ".join(str(n) for n in lines[:5]) + (f" (and {len(lines) - 5:,} more)" if len(lines) > 5 else "")
    out.warnings.append({
        "check": reason, "severity": "warn", "file": out.file_name, "lines": lines[:LIST_CAP], "column": None,
        "header": None, "sample_values": [], "reason": why,
        "message": f"{out.file_name}, line{'s' if len(lines) > 1 else ''} {shown}: {len(lines):,} "
                   f"row{'s' if len(lines) > 1 else ''} set aside: {why}; the rest of the file applied"})


# ---------------------------------------------------------------------------------------------
# Keys that would orphan the pupils already known
# ---------------------------------------------------------------------------------------------

KEY_HISTORY = 6  # earlier files whose number shapes a new file is compared with


def _key_damage(con, spec: SourceSpec, staged: _StagedFile, name: str, refs) -> IngestError | None:
    """A file whose pupil or resident numbers would give known pupils new pseudonyms.

    Caught where it happens — at the registry or the keyed file — instead of later, as unknown
    pupils blamed on attendance: numbers shorter than the earlier files' (leading zeros lost when
    the file went through Excel), and a registry that leaves most already-known pupils out."""
    for column, shape in staged.key_shapes.items():
        error = _width_change(con, spec, name, staged, column, shape)
        if error is not None:
            return error
    if spec.key == "pupil_registry" and refs.known_pupils:
        return _registry_orphans(con, spec, name, staged, refs)
    return None


def _width_change(con, spec, name, staged, column: str, shape: dict) -> IngestError | None:
    earlier = [json.loads(k).get(column) for (k,) in con.execute(
        "SELECT key_shapes FROM staging.file_manifest WHERE source_key = ? AND key_shapes IS NOT NULL AND "
        "outcome IN ('applied', 'superseded') ORDER BY processed_at DESC LIMIT ?", [spec.key, KEY_HISTORY]).fetchall()]
    earlier = [e for e in earlier if e]
    if not earlier:
        return None
    widths: dict[int, int] = {}
    zero_before = 0
    for e in earlier:
        for w, n in e["widths"].items():
            widths[int(w)] = widths.get(int(w), 0) + n
        zero_before += e.get("zero_led", 0)
    total_before = sum(widths.values())
    usual = max(widths, key=widths.get)
    if widths[usual] < 0.98 * total_before:
        return None  # numbers of varying width are this department's normal: nothing to compare
    now = {int(w): n for w, n in shape["widths"].items()}
    total = sum(now.values())
    off = {w: n for w, n in now.items() if w != usual}
    changed = sum(off.values())
    if not total or changed < max(2, 0.005 * total):
        return None
    header = staged.headers.get(column, spec.column(column).header)
    shorter = sum(n for w, n in off.items() if w < usual)
    share_before, share_now = zero_before / total_before, shape.get("zero_led", 0) / total
    if shorter and share_before >= 0.01 and share_now < share_before / 4:
        probable = ("leading zeros lost — was the file opened and saved in Excel? Export it again and land it "
                    "without opening it in Excel (or import the column as text)")
    else:
        probable = "the numbers changed format: a different export setting or system?"
    found = ", ".join(f"{n:,} of {w} digits" for w, n in sorted(off.items()))
    return IngestError(
        name, f"{changed:,} of {total:,} numbers in '{header}' are not the {usual} digits every earlier file had "
              f"({found}); {share_now:.0%} begin with 0 against {share_before:.0%} before: {probable}. Held, "
              f"because applying it would give these pupils new pseudonyms and cut them off from their "
              f"earlier records",
        column=column, header=header, lines=shape.get("lines", [])[:ERROR_SAMPLE], check="key_damage")


def _registry_orphans(con, spec, name, staged: _StagedFile, refs) -> IngestError | None:
    year = int(staged.period)
    rows = con.execute("SELECT pupil_id, school_code, grade FROM _typed").fetchall()
    ids = {r[0] for r in rows}
    schools = sorted({r[1] for r in rows})
    known_here = {pid for (pid,) in con.execute(
        f"SELECT DISTINCT pupil_id FROM staging.{spec.key} WHERE school_year = ? AND school_code IN "
        f"(SELECT unnest(?))", [year, schools]).fetchall()}
    header = staged.headers.get("pupil_id", "学籍番号")
    if known_here:
        lost = known_here - ids
        if len(lost) > max(10, 0.2 * len(known_here)):
            return IngestError(
                name, f"{len(lost):,} of the {len(known_here):,} pupils of school year {year} already known at "
                      f"{'this school' if len(schools) == 1 else f'these {len(schools)} schools'} are not in this "
                      f"file: applying it would orphan their records. Damaged 学籍番号 (leading zeros lost in "
                      f"Excel?) or an incomplete export? Held for a person to check",
                column="pupil_id", header=header, check="key_damage")
        return None
    last_year = refs.known_pupils.get(year - 1)
    continuing = [r[0] for r in rows if r[2] is not None and r[2] not in (1, 7)]  # not new at a school level
    if last_year and len(continuing) >= 20:
        share = sum(1 for pid in continuing if pid in last_year) / len(continuing)
        if share < 0.5:
            return IngestError(
                name, f"only {share:.0%} of the {len(continuing):,} pupils in grades 2–6 and 8–9 are in the "
                      f"registry of school year {year - 1} (most move up a grade): their 学籍番号 do not match "
                      f"(leading zeros lost in Excel?). Held, because applying it would give them new pseudonyms",
                column="pupil_id", header=header, check="key_damage")
    return None


# ---------------------------------------------------------------------------------------------
# A landing folder, file by file
# ---------------------------------------------------------------------------------------------

REFERENCE_CHECKS = {"known_pupil", "known_school", "known_resident", "unknown_pupil"}


def ingest_source(
    con: duckdb.DuckDBPyConnection,
    spec: SourceSpec,
    paths: Paths,
    key: bytes,
    *,
    log: Callable[[str], None] = lambda _msg: None,
    settle: float | None = None,
    now: float | None = None,
) -> SourceReport:
    """Apply every new, settled file under ``landing/<spec.key>/`` to ``staging.<spec.key>``,
    retry quarantined files whose references changed, and say what happened to each."""
    import quality

    started = time.perf_counter()
    now = time.time() if now is None else now
    rebuilt = ensure_table(con, spec)
    _backfill_coverage(con, spec)
    refs = quality.load_references(con)
    refs_fp = references_fingerprint(con)
    report = SourceReport(spec.key, [], 0, 0, 0, None, None, rebuilt)

    def add(result) -> None:
        out, ins, dele, validation = result
        report.files.append(out)
        report.rows_inserted += ins
        report.rows_deleted += dele
        if validation is not None:
            report.validations.append(validation)
        if out.outcome in ("rejected", "held"):
            log(f"{spec.key}: {out.outcome} {out.message}")
        elif out.message:
            log(f"{spec.key}: {out.file_name}: {out.message}")

    if rebuilt:
        log(f"{spec.key}: the catalogue changed the table's schema; replaying applied files from the archive")
        replay = con.execute(
            "SELECT file_name, sha256, archive_path, landed_at, exported_at, export_time_from FROM staging.file_manifest "
            "WHERE source_key = ? AND outcome = 'applied' ORDER BY coalesce(exported_at, landed_at), processed_at",
            [spec.key]).fetchall()
        con.execute("DELETE FROM staging.file_manifest WHERE source_key = ?", [spec.key])
        con.execute("DELETE FROM staging.file_coverage WHERE source_key = ?", [spec.key])
        for file_name, sha, archive_path, landed_at, exported_at, export_from in replay:
            data = Path(archive_path).read_bytes()
            landed = Landed(file_name, sha, data, landed_at, exported_at or landed_at,
                            export_from or "modification time", note="replayed from the archive")
            add(_ingest_file(con, spec, paths, key, landed, refs, refs_fp, archive_path=Path(archive_path)))

    landing = paths.landing_dir(spec.key)
    inside = paths.landing.resolve() / spec.key  # the folder itself may not be a link elsewhere
    scan = scan_landing(landing, settle=settle, now=now, log=log)
    for skip in scan.skipped:
        log(f"{spec.key}: skipped {skip.name}: {skip.reason}")
        report.skipped.append({"file": skip.name, "reason": skip.reason})
        if skip.record:
            _record_ignored(con, spec, skip)
    for chunk in ingest_batch.chunks(scan.files):
        # land the chunk's files (hash, archive), stage the new ones together, then judge and
        # apply each by itself in export order
        entries: list[tuple[Path, Landed | FileOutcome | None]] = []
        for path in chunk:
            try:
                resolved = path.resolve()
            except (OSError, RuntimeError):  # a symlink loop
                resolved = None
            if resolved is None or inside not in resolved.parents or not resolved.is_file():
                entries.append((path, _not_a_landed_file(con, paths, spec, path, resolved,
                                                         ours=landing.resolve() == inside)))
            else:
                entries.append((path, _land(path, now)))
        batch = ingest_batch.Staged()
        ingest_batch.stage(con, spec, paths, key, _new_landings(con, spec, [e for _, e in entries]), refs, batch)
        report.validations += batch.validations
        # the chunk's files are judged and applied in one transaction when a batch was staged
        tx = ingest_batch.begin(con, spec, batch)
        try:
            _judge_chunk(con, spec, paths, key, entries, batch, refs, refs_fp, report, add, log, tx)
            if tx is not None:
                tx.commit(con)
        except BaseException:
            if tx is not None and not tx.committed:
                con.execute("ROLLBACK")
            raise
        finally:
            ingest_batch.release(con, batch)

    for landed, archive_path in _retries(con, spec, paths, refs_fp):
        add(_ingest_file(con, spec, paths, key, landed, refs, refs_fp, archive_path=archive_path))

    _final_outcomes(con, spec, report.files)
    if any(f.drop_reasons.get("erased") for f in report.files):  # toda erase: the archive too
        from toda_platform.governance.erasure import sweep

        sweep(con, spec, paths, key)
    report.table_rows, report.known_from, report.known_until = con.execute(
        f"SELECT count(*), min(known_date)::VARCHAR, max(known_date)::VARCHAR FROM staging.{spec.key}"
    ).fetchall()[0]
    report.seconds = time.perf_counter() - started
    return report


def _judge_chunk(con, spec: SourceSpec, paths: Paths, key: bytes, entries: list, batch: "ingest_batch.Staged",
                 refs, refs_fp: str, report: SourceReport, add: Callable, log: Callable[[str], None],
                 tx: "ingest_batch.Open | None") -> None:
    """Each landed entry of a chunk, in export order: reported, recorded as a duplicate, or read
    (from the batch when it was staged there), judged and applied."""
    for path, entry in entries:
        if isinstance(entry, FileOutcome):
            log(f"{spec.key}: {entry.message}")
            report.files.append(entry)
            continue
        landed = entry
        if landed is None:
            reason = "changed while it was being read: still being copied? It is read on a later run"
            log(f"{spec.key}: skipped {path.name}: {reason}")
            report.skipped.append({"file": path.name, "reason": reason})
            continue
        seen = con.execute(
            "SELECT file_name, outcome, landed_at, quarantine_path FROM staging.file_manifest "
            "WHERE source_key = ? AND sha256 = ? ORDER BY processed_at", [spec.key, landed.sha]).fetchall()
        if any(n == landed.name and at == landed.landed_at and o in ("applied", "superseded", "duplicate")
               for n, o, at, _ in seen):
            continue  # this very landing is already in the manifest
        done = [(n, o) for n, o, _, _ in seen if o in ("applied", "superseded")]
        if done:
            first, outcome = done[-1]
            out = FileOutcome(landed.name, landed.sha, landed.size, "duplicate",
                              message=f"the same bytes as {first} ({outcome}) landed again: nothing changed")
            _record(con, spec, out, landed)
            report.files.append(out)
            log(f"{spec.key}: {landed.name}: {out.message}")
            continue
        if seen:
            landed.note = _seen_note(landed, seen[-1])
        add(_ingest_file(con, spec, paths, key, landed, refs, refs_fp, prestaged=batch.files.pop(landed.sha, None),
                         tx=tx))


def _seen_note(landed: "Landed", last: tuple) -> str:
    """What a landing whose bytes were rejected or held before is: landed again, or the very same
    landing still there because the run that judged it stopped between its commit and the move to
    quarantine (a crash, a power cut) — the manifest names a quarantine copy that was never made."""
    name, outcome, at, quarantined = last
    if name == landed.name and at == landed.landed_at and quarantined and not os.path.lexists(quarantined):
        return (f"still in landing after it was {outcome}: the run that judged it stopped before moving it "
                f"to quarantine; read again")
    return f"landed again after it was {outcome}: read again"


def _land(path: Path, now: float) -> Landed | None:
    """Read a landed file once: the bytes hashed are the bytes archived and parsed. None when it
    changed while being read (a copy still in progress)."""
    before = path.stat()
    data = path.read_bytes()
    after = path.stat()
    if (before.st_size, before.st_mtime_ns, before.st_ctime_ns) != (after.st_size, after.st_mtime_ns,
                                                                    after.st_ctime_ns) or len(data) != after.st_size:
        return None
    exported_at, export_from = export_time(path.name, after.st_mtime, now)
    return Landed(path.name, hashlib.sha256(data).hexdigest(), data, _utc(after.st_mtime), exported_at,
                  export_from, path=path)


def _new_landings(con, spec: SourceSpec, entries: list) -> list[Landed]:
    """The landed files whose bytes were never applied (each sha256 once): what a batch may stage."""
    landed = [e for e in entries if isinstance(e, Landed)]
    if not landed:
        return []
    done = {sha for (sha,) in con.execute(
        "SELECT DISTINCT sha256 FROM staging.file_manifest WHERE source_key = ? AND sha256 IN (SELECT unnest(?)) "
        "AND outcome IN ('applied', 'superseded', 'duplicate')", [spec.key, [e.sha for e in landed]]).fetchall()}
    out, taken = [], set()
    for e in landed:
        if e.sha not in done and e.sha not in taken:
            taken.add(e.sha)
            out.append(e)
    return out


def _record_ignored(con, spec: SourceSpec, skip: Skipped) -> None:
    """A trace, once per name and modification time, of an entry that will never be read."""
    at = _utc(skip.mtime)
    if con.execute("SELECT count(*) FROM staging.file_manifest WHERE source_key = ? AND file_name = ? AND "
                   "outcome = 'ignored' AND landed_at IS NOT DISTINCT FROM ?", [spec.key, skip.name, at]).fetchall()[0][0]:
        return
    out = FileOutcome(skip.name, "", 0, "ignored", message=f"{skip.name}: {skip.reason}")
    con.execute("INSERT INTO staging.file_manifest (source_key, file_name, sha256, landed_at, processed_at, outcome, "
                "message) VALUES (?, ?, '', ?, ?, 'ignored', ?)", [spec.key, skip.name, at, _now(), out.message])


def _retries(con, spec: SourceSpec, paths: Paths, refs_fp: str) -> list[tuple[Landed, Path]]:
    """Quarantined files rejected for what the references said (an unknown pupil or school),
    whose references have changed since: read again from the archive."""
    rows = con.execute("""
        SELECT file_name, sha256, archive_path, landed_at, exported_at, export_time_from, findings, quarantine_path
        FROM staging.file_manifest m WHERE source_key = ? AND archive_path IS NOT NULL
          AND (outcome = 'rejected' OR (outcome = 'applied' AND rows_set_aside > 0))
          AND references_fp IS NOT NULL AND references_fp <> ?
          AND processed_at = (SELECT max(processed_at) FROM staging.file_manifest x
                              WHERE x.source_key = m.source_key AND x.sha256 = m.sha256)""",
                       [spec.key, refs_fp]).fetchall()
    out = []
    for name, sha, archive_path, landed_at, exported_at, export_from, findings, held in rows:
        found = json.loads(findings or "[]")
        errors = {f.get("check") for f in found if f.get("severity") == "error"}
        set_aside = {f.get("check") for f in found if f.get("severity") == "warn"}
        rejected = bool(errors & REFERENCE_CHECKS) and held and os.path.lexists(held)
        if not rejected and "unknown_pupil" not in set_aside:
            continue
        archive = Path(archive_path)
        if not archive.exists() or sha256_of(archive) != sha:
            continue
        out.append((Landed(name, sha, archive.read_bytes(), landed_at, exported_at or landed_at,
                           export_from or "modification time",
                           note="retried: the registry or school master changed since it was quarantined"),
                    archive))
    return out


def _final_outcomes(con, spec: SourceSpec, outcomes: list[FileOutcome]) -> None:
    """A file applied and then superseded in the same run is reported as superseded."""
    applied = [o for o in outcomes if o.outcome == "applied"]
    if not applied:
        return
    final = {sha: by for sha, by in con.execute(
        "SELECT sha256, superseded_by FROM staging.file_manifest WHERE source_key = ? AND outcome = 'superseded' "
        "AND sha256 IN (SELECT unnest(?))", [spec.key, [o.sha256 for o in applied]]).fetchall()}
    names = {o.sha256: o.file_name for o in outcomes}
    for o in applied:
        if o.sha256 in final:
            o.outcome = "superseded"
            o.superseded_by = names.get(final[o.sha256], final[o.sha256])


def _not_a_landed_file(con, paths: Paths, spec: SourceSpec, path: Path, resolved: Path | None, *,
                       ours: bool) -> FileOutcome:
    """A link to somewhere outside the landing folder (or a FIFO, a device…): never opened.

    The link itself is an entry of the landing folder, so it is moved to quarantine like any
    rejected file (its target is neither read nor touched) and the rejection recorded. When the
    source's folder is itself a link elsewhere, its entries are not ours to move: only reported.
    """
    where = "a symlink loop" if resolved is None else str(resolved)
    reason = (f"a link to {where}, outside the landing folder {paths.landing / spec.key}: not read"
              if resolved is None or (paths.landing.resolve() / spec.key) not in resolved.parents
              else "not a regular file: not read")
    message = f"{path.name}: {reason}"
    error = {"check": "inside_landing", "severity": "error", "file": path.name, "lines": [],
             "column": None, "header": None, "sample_values": [], "reason": reason, "message": message}
    out = FileOutcome(path.name, "", 0, "rejected", message=message, errors=[error])
    if ours:
        mtime = path.lstat().st_mtime
        held = _quarantine(paths, spec, path, path.name, "", {"errors": [error]})
        _record(con, spec, out, Landed(path.name, "", b"", _utc(mtime), _utc(mtime), "modification time"),
                quarantine_path=held)
    return out


def _ingest_file(con, spec: SourceSpec, paths: Paths, key: bytes, landed: Landed, refs, refs_fp: str, *,
                 archive_path: Path | None = None, prestaged: "ingest_batch.Prestaged | None" = None,
                 tx: "ingest_batch.Open | None" = None):
    """Read, check and apply one delivery; (outcome, rows inserted, rows deleted, validation).

    ``prestaged``: its rows were already read and validated with a batch of files
    (``ingest_batch``); what the batch could not check for it is checked here, and a file that
    fails that is read again by itself. ``tx``: the batch's open transaction, which may already
    hold the file's rows (taken out again if the file is not applied); quarantine moves wait
    for its COMMIT."""
    import quality

    retry = archive_path is not None  # read again from the archive: nothing in landing to move
    archive_path = archive_path or (prestaged.archive_path if prestaged else None) or _archive(
        paths, spec, landed.data, landed.sha)
    notes = [n for n in (landed.note,) if n]
    if landed.export_from.startswith("first seen"):
        notes.append(f"export time taken as {landed.export_from}")

    def stop(outcome: str, errors: list[dict], message: str, validation=None, staged=None):
        _drop_temp(con)
        if tx is not None:
            tx.withdraw(con, landed.sha)
        if landed.note:  # why these bytes are judged again (landed again, an interrupted move)
            message = f"{message} [{landed.note}]"
        out = FileOutcome(landed.name, landed.sha, landed.size, outcome, message=message, errors=errors,
                          validation_seconds=validation.seconds if validation else 0.0)
        if staged is not None:
            out.encoding, out.period, out.rows_read = staged.encoding, staged.period, staged.rows_read
            out.key_shapes = staged.key_shapes
        reasons = {"outcome": outcome, "errors": _capped(errors)}
        if outcome == "held":
            reasons["what_to_do"] = (f"A person decides: if this file is right, `toda release {spec.key} "
                                     f"'{landed.name}'`; else fix or re-export it and land it again.")
        held = _quarantine(paths, spec, None if retry else landed.path, landed.name, landed.sha, reasons,
                           data=landed.data if retry else None, defer=None if tx is None else tx.moves)
        if retry:  # the earlier copy in quarantine now carries the new reasons
            for old in con.execute("SELECT DISTINCT quarantine_path FROM staging.file_manifest WHERE source_key = ? "
                                   "AND sha256 = ? AND quarantine_path IS NOT NULL AND quarantine_path <> ?",
                                   [spec.key, landed.sha, str(held)]).fetchall():
                _discard_quarantined(Path(old[0]))
        _record(con, spec, out, landed, archive_path, quarantine_path=held, references_fp=refs_fp)
        return out, 0, 0, validation

    if prestaged is not None:  # (a batch is never staged while pupils are erased: see ingest_batch)
        staged = prestaged.staged
        # read where it is, not copied (a form's rows set aside one by one copy it first: _as_table)
        con.execute(f"CREATE OR REPLACE TEMP VIEW _typed AS SELECT * EXCLUDE (_file), ({spec.period})::VARCHAR "
                    f"AS _period FROM {prestaged.table} WHERE _file = {int(prestaged.index)}")
        cov_from = f"{prestaged.table}{ingest_batch.COVERAGE} WHERE _file = {int(prestaged.index)}"
    else:
        cov_from = None
        try:
            staged = read_file(con, spec, archive_path, key, display_name=landed.name, scratch=paths.home / "tmp",
                               data=landed.data)
        except IngestError as error:
            return stop("rejected", [error.to_dict()], error.message)
        from toda_platform.governance.erasure import keep_out

        keep_out(con, spec, staged, paths, key=key, data=landed.data)  # erased pupils never come back

    damage = _key_damage(con, spec, staged, landed.name, refs)
    if damage is not None:
        return stop("held", [damage.to_dict()], damage.message, staged=staged)

    scopes = [s for (s,) in con.execute(f"SELECT DISTINCT _cov_scope FROM {cov_from}" if cov_from else
                                        f"SELECT DISTINCT {_scope_sql(spec)} FROM _typed").fetchall()]
    ctx = quality.file_context(con, spec.key, landed.name, headers=staged.headers,
                               exported_on=_exported_on(landed.exported_at), period=staged.period,
                               references=refs, scopes=scopes)
    set_aside: list[tuple[str, list[int], str]] = []
    if spec.handling == "rows" and prestaged is None:  # a batch has none: it validated known_pupil
        found = _unknown_pupils(con, spec, ctx)
        if found:
            lines, total = found
            if len(lines) > 0.5 * total:
                header = staged.headers.get("pupil_id", "学籍番号")
                error = IngestError(landed.name, f"{len(lines):,} of {total:,} rows are of pupils not in the 学齢簿: "
                                                 f"a file of another city or year, or 学籍番号 damaged (leading zeros "
                                                 f"lost in Excel?). Held rather than set aside row by row",
                                    column="pupil_id", header=header, lines=lines[:ERROR_SAMPLE], check="unknown_pupil")
                return stop("held", [error.to_dict()], error.message, staged=staged)
            set_aside.append(("unknown_pupil", lines, "the pupil is not in the 学齢簿 (pupil_registry) of that school "
                              "year; the file is read again by itself once the registry changes"))
    if prestaged is None:
        # the distinct-value gate first (cheap); a file with any finding is validated row by
        # row, which gives the lines and values of each
        validation = quality.check_batch(spec, con, "_typed", ctx)
        if validation.failures or not quality.file_level_ok(spec, staged.rows_kept, staged.days, {}, ctx):
            validation = quality.check_file(spec, quality.read_typed(con), ctx)
    elif quality.file_level_ok(spec, staged.rows_kept, staged.days, prestaged.latest, ctx):
        validation = replace(prestaged.validation, failures=[], seconds=prestaged.validation.seconds * prestaged.share)
    else:  # its volume or an export date the batch could not judge: by itself, for exact findings
        _drop_temp(con)
        if tx is not None:
            tx.withdraw(con, landed.sha)
        return _ingest_file(con, spec, paths, key, landed, refs, refs_fp, tx=tx)
    if staged.unknown_headers:
        validation.failures.append(_unknown_columns(landed.name, staged.unknown_headers))
    if validation.errors:
        first = validation.errors[0].message
        more = len(validation.errors) - 1
        return stop("rejected", [_finding(f, spec, ctx) for f in validation.failures],
                    first + (f" (and {more} more failed check{'s' if more > 1 else ''})" if more else ""),
                    validation, staged)
    out = FileOutcome(landed.name, landed.sha, landed.size, "applied", encoding=staged.encoding, period=staged.period,
                      rows_read=staged.rows_read, rows_kept=staged.rows_kept, days=staged.days,
                      drop_reasons=dict(staged.drop_reasons), unknown_headers=staged.unknown_headers,
                      warnings=[_finding(f, spec, ctx) for f in validation.warnings],
                      validation_seconds=validation.seconds, key_shapes=staged.key_shapes)
    for reason, lines, why in set_aside:
        _set_aside(out, reason, lines, why)
    for column, n in staged.unmapped.items():
        header = staged.headers.get(column, column)
        out.drop_reasons[f"unmapped_text:{column}"] = n
        out.warnings.append({
            "check": "unmapped_text", "severity": "warn", "file": landed.name, "lines": [], "column": column,
            "header": header, "sample_values": [],
            "reason": "free text where the catalogue has codes: not stored (it may name a child)",
            "message": f"{landed.name}, column {column} (header '{header}'): {n:,} value{'s' if n > 1 else ''} "
                       f"not among the catalogue's codes: counted, not stored (free text may name a child)"})
    if staged.unknown_headers:
        notes.append(f"unknown columns ignored: {', '.join(staged.unknown_headers)}")
    if out.drop_reasons.get("duplicate_submission"):
        notes.append(f"{out.drop_reasons['duplicate_submission']:,} earlier duplicate submission(s) dropped: "
                     f"the latest of each wins")
    out.message = "; ".join(notes) or None
    try:
        ins, dele = _apply(con, spec, staged, out, landed, archive_path, refs_fp, tx, cov_from)
    except _Held as held:
        return stop("held", [held.error.to_dict()], held.error.message, staged=staged)
    if any(c.pii == "identity" for c in spec.columns):
        _store_identities(con, paths, spec, staged)
    if retry:
        for (old,) in con.execute("SELECT DISTINCT quarantine_path FROM staging.file_manifest WHERE source_key = ? "
                                  "AND sha256 = ? AND quarantine_path IS NOT NULL", [spec.key, landed.sha]).fetchall():
            _discard_quarantined(Path(old))
    _drop_temp(con)
    return out, ins, dele, validation if prestaged is None else None


def _discard_quarantined(path: Path) -> None:
    """A quarantined copy whose file has since applied (its bytes stay in the archive)."""
    if os.path.lexists(path):
        path.unlink()
    Path(f"{path}.reasons.json").unlink(missing_ok=True)


def _unknown_pupils(con, spec: SourceSpec, ctx) -> tuple[list[int], int] | None:
    """Form sources: the lines of pupils unknown to the registry, taken out of ``_typed``."""
    from quality import rules as R

    rule = next((r for r in R.row_rules(spec) if r.check == "known_pupil"), None)
    if rule is None or ctx.known_pupils is None:
        return None
    import quality

    frame = quality.read_typed(con)
    bad = rule.evaluate(frame, ctx)
    if bad is None or not len(bad):
        return None
    lines = sorted(int(x) for x in frame.loc[bad.index, "_line"])
    con.execute("DELETE FROM _typed WHERE _line IN (SELECT unnest(?))", [lines])
    return lines, len(frame)


def _store_identities(con, paths: Paths, spec: SourceSpec, staged: _StagedFile) -> None:
    """Registry names to the identity store, replacing exactly the (year, school) cells the
    file covers — after the warehouse transaction committed, so the two never disagree for long."""
    from toda_platform.identity import IdentityStore

    scope = [(int(p), s) for p, s in con.execute("SELECT _cov_period, _cov_scope FROM _cov").fetchall()]
    IdentityStore(paths.identity).replace(scope, staged.identities)


def _unknown_columns(file_name: str, unknown: list[str]):
    """Headers the catalogue does not know: a warning, not an error; the file still applies."""
    import quality

    shown = ", ".join(f"'{h}'" for h in unknown)
    n = len(unknown)
    return quality.Failure(
        "unknown_columns", "custom", quality.WARN, None, n, [1], list(unknown),
        f"{file_name}, line 1: {n} column{'s' if n > 1 else ''} not in the catalogue, ignored (not "
        f"loaded): {shown}; if {'they are' if n > 1 else 'it is'} needed, add the header to the catalogue")


def _finding(failure, spec: SourceSpec, ctx) -> dict:
    """A quality failure as the reasons file and the manifest keep it: with the file and the
    Japanese header(s) as they appeared, like the reader's own errors."""
    from quality.rules import header

    found = failure.to_dict()
    columns = [c for c in (failure.column or "").split(", ") if c]
    found["file"] = ctx.file_name
    found["header"] = ", ".join(h for h in (header(spec, ctx, c) for c in columns) if h) or None
    return found


def outcome_dicts(outcomes: Iterable[FileOutcome]) -> list[dict]:
    return [asdict(o) for o in outcomes]
