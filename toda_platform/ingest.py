"""Landed CSV files → ``staging.<source_key>``: one engine for every source in the catalogue.

How a file travels (see the README, "Ingestion semantics"):

1. **Seen.** Every ``*.csv`` directly under ``landing/<source_key>/`` is a candidate, oldest
   modification time first. A file whose bytes (sha256) were already handled for this source is
   skipped; under a new name it is recorded once as ``duplicate``. Landing the same file twice
   changes nothing.
2. **Archived.** Before it is read, the file is hard-linked (or copied) to
   ``archive/<source_key>/<sha256>.csv``: nothing that landed is ever lost.
3. **Read.** Encoding detected (UTF-8, UTF-8 with BOM, CP932…); headers mapped to canonical
   names through the catalogue; rows parsed by DuckDB's CSV reader in strict mode; blank and
   total (合計) rows dropped with their reason; values converted by kind — dates in every form,
   grades to 1-9, categories to codes, width normalised — on the *distinct* values only, then
   joined back, so a 14-million-row source costs little more than reading it. Personal
   identifiers are pseudonymised or dropped before anything is written; dropped columns are never
   even loaded into a temporary table.
4. **Applied or quarantined.** A file that cannot be read (bad encoding, missing column,
   unreadable value, ragged row, duplicate key, no data, cut off inside a character) is moved to
   ``quarantine/<source_key>/`` with a ``.reasons.json`` beside it and its rows are not applied;
   the table keeps its last good content and the other files still apply. Every reason names the
   file, the line in the *original* file, the column and its header as written. A symlink that
   leads out of the landing folder is never opened: the link itself is quarantined. Columns the
   catalogue does not know are ignored with a warning (``unknown_columns``); the file applies.
5. **Corrected re-exports.** Every file covers one *period* (the catalogue's ``period``
   expression: a month for monthly files, a school year, a survey round). A newer file for a
   period that already has an applied file **supersedes** it: the old file's rows are deleted and
   the new file's rows inserted, in one transaction. Newer = later modification time, then name.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import duckdb
import pyarrow as pa

from toda_platform import parsing
from toda_platform.catalogue import Column, SourceSpec
from toda_platform.pseudonym import normalise_number, pseudonymise
from toda_platform.settings import Paths

META_COLUMNS = (("_file_sha256", "VARCHAR"), ("_line", "INTEGER"), ("known_date", "DATE"))
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
    outcome: str  # applied | duplicate | rejected
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


def map_headers(spec: SourceSpec, headers: list[str], file: str) -> tuple[dict[str, int], list[str]]:
    """Canonical column name → position in the file, and the headers nobody asked for."""
    normalised = [normalise_header(h) for h in headers]
    seen: dict[str, int] = {}
    for i, h in enumerate(normalised):
        if h in seen and h:
            raise IngestError(file, f"the header '{headers[i]}' appears twice (columns "
                              f"{seen[h] + 1} and {i + 1})", line=1, check="headers")
        seen[h] = i
    positions: dict[str, int] = {}
    for col in spec.columns:
        for candidate in col.headers:
            pos = seen.get(normalise_header(candidate))
            if pos is not None:
                positions[col.name] = pos
                break
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


def _first_record(text_head: str) -> list[str]:
    return next(csv.reader(io.StringIO(text_head)), [])


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
        if any(normalise_header(h) == written for h in col.headers):
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
        if value:
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


def _structure_problem(text: str, n: int, unterminated: bool) -> tuple[int, str] | None:
    """(line, reason) of the first record that does not fit the header, found in the text itself."""
    reader = csv.reader(io.StringIO(text, newline=""))
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


def _record_lines(text: str) -> list[int] | None:
    """The line each data record starts on, counted as DuckDB reads records: empty lines skipped,
    a quoted value may span lines. None if the text cannot be parsed."""
    reader = csv.reader(io.StringIO(text, newline=""))
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


def read_file(
    con: duckdb.DuckDBPyConnection,
    spec: SourceSpec,
    path: Path,
    key: bytes,
    *,
    display_name: str | None = None,
    scratch: Path | None = None,
) -> _StagedFile:
    """Read one landed file into the temporary table ``_typed``. Raises IngestError."""
    name = display_name or path.name
    data = path.read_bytes()
    if not data.strip():
        raise IngestError(name, "the file is empty", check="not_empty")
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
    headers = _first_record((head.splitlines() or [""])[0])
    if not any(h.strip() for h in headers):
        raise IngestError(name, "the first line holds no headers", line=1, check="headers")
    positions, unknown = map_headers(spec, headers, name)

    csv_path, tmp = path, None
    if not utf8:
        # DuckDB reads UTF-8 only (its other encodings need a downloaded extension): hand it a
        # transcoded copy. Decoding is strict, so nothing is silently replaced.
        scratch = scratch or Path(tempfile.gettempdir())
        scratch.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(suffix=".csv", dir=scratch)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        csv_path = tmp = Path(tmp_name)
    # Lines in the file, trailing blank ones aside: when they outnumber the records (blank lines,
    # values spanning lines), line numbers are worked out from the text instead of the row number.
    newline = b"\n" if b"\n" in data else b"\r"
    physical_lines = data.rstrip(b"\r\n").count(newline) + 1
    del text, data, head

    def reread() -> str:
        return parsing.decode_bytes(path.read_bytes())[0]

    try:
        return _read_csv(con, spec, csv_path, name, encoding, headers, positions, unknown, key,
                         physical_lines, reread)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _read_csv(con, spec, csv_path, name, encoding, headers, positions, unknown, key,
              physical_lines: int | None = None, reread: Callable[[], str] | None = None) -> _StagedFile:
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
            FROM read_csv({_sql_str(str(csv_path))}, header = false, skip = 1, delim = ',',
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
        found = _structure_problem(reread(), n, "unterminated quote" in str(e)) if reread is not None else None
        if found is not None:
            line, reason = found
        raise IngestError(name, reason, line=line, check="csv_structure") from e

    rows_read, blank_rows, total_rows = con.execute(
        "SELECT count(*), count(*) FILTER (_drop = 'blank_row'), count(*) FILTER (_drop = 'total_row') FROM _raw"
    ).fetchall()[0]
    drops = {k: v for k, v in (("blank_row", blank_rows), ("total_row", total_rows)) if v}
    if rows_read - sum(drops.values()) == 0:
        raise IngestError(name, "the file has a header but no data rows", line=1, check="has_rows")

    line_sql = "(r.rowid + 2)"  # one line per record, the header on line 1
    if physical_lines is not None and reread is not None and physical_lines != rows_read + 1:
        starts = _record_lines(reread())
        if starts is not None and len(starts) == rows_read:
            con.register("_lines_arrow", pa.table({"_ln": pa.array(starts, pa.int32())}))
            con.execute("CREATE OR REPLACE TEMP TABLE _raw_ln AS SELECT r.*, l._ln FROM _raw r "
                        "POSITIONAL JOIN _lines_arrow l")
            con.unregister("_lines_arrow")
            con.execute("DROP TABLE _raw")
            con.execute("ALTER TABLE _raw_ln RENAME TO _raw")
            line_sql = "r._ln"

    present = [c for c in spec.staged_columns if c.name in positions]
    _check_values(con, name, present, positions, headers, line_sql)
    select = [f"{line_sql}::INTEGER AS _line"]
    joins = []
    school_code_pos = positions.get("school_code")
    for col in spec.staged_columns:
        if col.name not in positions:
            select.append(f"CAST(NULL AS {col.sql_type}) AS \"{col.staged_name}\"")
            continue
        raw = f"r.c{positions[col.name]}"
        header = headers[positions[col.name]]
        if col.kind in _SQL_ONLY_KINDS:
            select.append(f"{_numeric_expr(raw, col)} AS \"{col.staged_name}\"")
        else:
            alias = f"m{positions[col.name]}"
            by_school_type = col.kind == "grade" and school_code_pos is not None
            school_type_sql = f"trim(r.c{school_code_pos}, ' 　')" if by_school_type else None
            _build_map(con, name, _converter(spec, col, key), header, raw, school_type_sql, alias, line_sql)
            cond = f"{raw} = {alias}.raw" + (f" AND {school_type_sql} = {alias}.stype" if by_school_type else "")
            joins.append(f"LEFT JOIN {alias} ON {cond}")
            select.append(f"{alias}.value AS \"{col.staged_name}\"")

    typed_cols = ", ".join(f'"{c.staged_name}"' for c in spec.staged_columns)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _typed AS
        SELECT {typed_cols}, _line, ({spec.known_from})::DATE AS known_date, ({spec.period})::VARCHAR AS _period
        FROM (SELECT {', '.join(select)} FROM _raw r {' '.join(joins)} WHERE r._drop IS NULL)
    """)
    header_map = {col: headers[pos] for col, pos in positions.items()}
    _check_required(con, spec, name, positions, headers)
    _check_unique_key(con, spec, name, header_map)
    periods = [p for (p,) in con.execute("SELECT DISTINCT _period FROM _typed ORDER BY 1").fetchall()]
    if len(periods) != 1 or periods[0] is None:
        _one_period_error(con, spec, name, periods, header_map)
    kept = rows_read - sum(drops.values())
    days = None
    if spec.event_date:
        days, = con.execute(f'SELECT count(DISTINCT "{spec.event_date}") FROM _typed').fetchall()[0]
    return _StagedFile(encoding, periods[0], rows_read, kept, drops, unknown, header_map, days)


def _numeric_expr(raw: str, col: Column) -> str:
    cleaned = f"replace(translate(trim({raw}, ' 　'), '{_NUMERIC_FROM}', '{_NUMERIC_TO}'), ',', '')"
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


def _build_map(con, name, convert: _Converter, header, raw, school_type_sql, alias, line_sql="(r.rowid + 2)") -> None:
    """Convert each distinct raw value once; register the result as a join table."""
    col = convert.col
    stype_select = f", {school_type_sql} AS stype" if school_type_sql else ""
    distinct = con.execute(
        f"SELECT DISTINCT {raw} AS raw{stype_select} FROM _raw r WHERE r._drop IS NULL AND {raw} IS NOT NULL"
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
    if errors:
        bad_values = [e[0] for e in errors]
        lines = [r[0] for r in con.execute(
            f"SELECT {line_sql}::INTEGER FROM _raw r WHERE r._drop IS NULL AND {raw} IN "
            f"(SELECT unnest(?)) ORDER BY 1 LIMIT {ERROR_SAMPLE}", [bad_values]).fetchall()]
        raise IngestError(name, errors[0][2], lines=lines, column=col.name, header=header,
                          values=bad_values[:ERROR_SAMPLE], check="parse")
    table = pa.table({
        "raw": pa.array(raws, pa.string()),
        "stype": pa.array(stypes, pa.string()),
        "value": pa.array(values, convert.arrow_type),
    })
    con.register(f"{alias}_arrow", table)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {alias} AS SELECT * FROM {alias}_arrow")
    con.unregister(f"{alias}_arrow")


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


def _check_unique_key(con, spec: SourceSpec, name: str, header_map: dict[str, str] | None = None) -> None:
    keys = ", ".join(f'"{k}"' for k in spec.key_columns)
    if not con.execute(f"SELECT count(*) FROM (SELECT 1 FROM _typed GROUP BY {keys} HAVING count(*) > 1)").fetchall()[0][0]:
        return
    dup = con.execute(f"""
        SELECT list(_line ORDER BY _line) FROM _typed GROUP BY {keys}
        HAVING count(*) > 1 LIMIT {ERROR_SAMPLE}""").fetchall()
    if dup:
        lines = sorted(n for (ls,) in dup for n in ls)
        raise IngestError(
            name, f"{len(dup)}+ key(s) appear more than once (key: {', '.join(spec.key_columns)}); "
                  f"lines {', '.join(' and '.join(map(str, ls)) for (ls,) in dup)}",
            lines=lines, column=", ".join(spec.key_columns), check="unique_key",
            header=", ".join(header_map[k] for k in spec.key_columns if k in header_map) if header_map else None,
        )


# ---------------------------------------------------------------------------------------------
# Applying a landing folder
# ---------------------------------------------------------------------------------------------

def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def landed_files(folder: Path) -> list[Path]:
    """Candidate files, oldest first. Partial uploads and editor lock files are not candidates."""
    if not folder.is_dir():
        return []
    files = [
        p for p in folder.iterdir()
        if p.suffix.lower() == ".csv" and not p.name.startswith((".", "~$")) and not p.is_dir()
    ]
    return sorted(files, key=lambda p: (p.lstat().st_mtime, p.name))


def _archive(paths: Paths, spec: SourceSpec, path: Path, sha: str) -> Path:
    target = paths.archive / spec.key / f"{sha}.csv"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
    return target


def _quarantine(paths: Paths, spec: SourceSpec, path: Path, sha: str, errors: list[dict]) -> Path:
    folder = paths.quarantine / spec.key
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if os.path.lexists(target):
        target = folder / f"{path.stem}.{sha[:12] or time.time_ns()}{path.suffix}"
    shutil.move(str(path), target)  # a symlink is moved as a link: its target is not touched
    reasons = {"source_key": spec.key, "sha256": sha, "quarantined_at": _now().isoformat(),
               "errors": errors}
    Path(f"{target}.reasons.json").write_text(json.dumps(reasons, ensure_ascii=False, indent=2),
                                              encoding="utf-8")
    return target


def _record(con, spec: SourceSpec, out: FileOutcome, landed_at, archive_path) -> None:
    con.execute(
        "INSERT INTO staging.file_manifest VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [spec.key, out.file_name, out.sha256, out.size_bytes, out.encoding, out.period, landed_at,
         _now(), out.outcome, out.rows_read, out.rows_kept, out.rows_dropped,
         json.dumps(out.drop_reasons, ensure_ascii=False),
         json.dumps(out.unknown_headers, ensure_ascii=False), None, out.message,
         str(archive_path) if archive_path else None,
         json.dumps(out.errors + out.warnings, ensure_ascii=False, default=str) or None, out.days],
    )


def _apply(con, spec: SourceSpec, staged: _StagedFile, out: FileOutcome, landed_at, archive_path) -> tuple[int, int]:
    """Delete what the file supersedes, insert its rows, record it: one transaction."""
    con.execute("BEGIN TRANSACTION")
    try:
        old = [sha for (sha,) in con.execute(
            "SELECT sha256 FROM staging.file_manifest WHERE source_key = ? AND period = ? "
            "AND outcome = 'applied'", [spec.key, staged.period]).fetchall()]
        deleted = 0
        if old:
            deleted, = con.execute(
                f"SELECT count(*) FROM staging.{spec.key} WHERE _file_sha256 IN (SELECT unnest(?))",
                [old]).fetchall()[0]
            con.execute(f"DELETE FROM staging.{spec.key} WHERE _file_sha256 IN (SELECT unnest(?))", [old])
            con.execute(
                "UPDATE staging.file_manifest SET outcome = 'superseded', superseded_by = ? "
                "WHERE source_key = ? AND sha256 IN (SELECT unnest(?)) AND outcome = 'applied'",
                [out.sha256, spec.key, old])
        cols = ", ".join(f'"{c.staged_name}"' for c in spec.staged_columns)
        con.execute(
            f"INSERT INTO staging.{spec.key} ({cols}, _file_sha256, _line, known_date) "
            f"SELECT {cols}, ?, _line, known_date FROM _typed", [out.sha256])
        out.superseded = old
        _record(con, spec, out, landed_at, archive_path)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return staged.rows_kept, deleted


def _drop_temp(con) -> None:
    for (name,) in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
        "AND table_catalog = 'temp'").fetchall():
        con.execute(f'DROP TABLE IF EXISTS temp."{name}"')


def ingest_source(
    con: duckdb.DuckDBPyConnection,
    spec: SourceSpec,
    paths: Paths,
    key: bytes,
    *,
    log: Callable[[str], None] = lambda _msg: None,
) -> SourceReport:
    """Apply every new file under ``landing/<spec.key>/`` to ``staging.<spec.key>``."""
    import quality

    started = time.perf_counter()
    rebuilt = ensure_table(con, spec)
    refs = quality.load_references(con)
    outcomes: list[FileOutcome] = []
    validations = []
    inserted = deleted = 0
    if rebuilt:
        log(f"{spec.key}: the catalogue changed the table's schema; replaying applied files from the archive")
        replay = con.execute(
            "SELECT file_name, sha256, archive_path, landed_at FROM staging.file_manifest "
            "WHERE source_key = ? AND outcome = 'applied' ORDER BY processed_at", [spec.key]).fetchall()
        con.execute("DELETE FROM staging.file_manifest WHERE source_key = ?", [spec.key])
        for file_name, sha, archive_path, landed_at in replay:
            out, ins, dele, validation = _process(con, spec, paths, key, Path(archive_path), file_name,
                                                  sha, landed_at, refs, replay=True)
            outcomes.append(out)
            validations += [validation] if validation else []
            inserted += ins
            deleted += dele

    landing = paths.landing_dir(spec.key)
    inside = paths.landing.resolve() / spec.key  # the folder itself may not be a link elsewhere
    for path in landed_files(landing):
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            resolved = None
        if resolved is None or inside not in resolved.parents or not resolved.is_file():
            out = _not_a_landed_file(con, paths, spec, path, resolved, ours=landing.resolve() == inside)
            log(f"{spec.key}: {out.message}")
            outcomes.append(out)
            continue
        sha = sha256_of(path)
        seen = con.execute(
            "SELECT file_name, outcome FROM staging.file_manifest WHERE source_key = ? AND sha256 = ?",
            [spec.key, sha]).fetchall()
        if any(o in ("applied", "superseded") for _, o in seen) or any(n == path.name for n, _ in seen):
            if not any(n == path.name for n, _ in seen):
                first = next(n for n, o in seen if o in ("applied", "superseded"))
                out = FileOutcome(path.name, sha, path.stat().st_size, "duplicate",
                                  message=f"same bytes as {first}, already handled")
                _record(con, spec, out, _mtime(path), None)
                outcomes.append(out)
                log(f"{spec.key}: {path.name} is a duplicate of {first}; skipped")
            continue
        out, ins, dele, validation = _process(con, spec, paths, key, path, path.name, sha, _mtime(path), refs)
        outcomes.append(out)
        validations += [validation] if validation else []
        inserted += ins
        deleted += dele
        if out.outcome == "rejected":
            log(f"{spec.key}: quarantined {out.message}")

    total, lo, hi = con.execute(
        f"SELECT count(*), min(known_date)::VARCHAR, max(known_date)::VARCHAR FROM staging.{spec.key}"
    ).fetchall()[0]
    return SourceReport(spec.key, outcomes, total, inserted, deleted, lo, hi, rebuilt,
                        seconds=time.perf_counter() - started, validations=validations)


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
        landed_at = datetime.fromtimestamp(path.lstat().st_mtime, timezone.utc).replace(tzinfo=None)
        _quarantine(paths, spec, path, "", [error])
        _record(con, spec, out, landed_at, None)
    return out


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).replace(tzinfo=None)


def _process(con, spec, paths, key, path, file_name, sha, landed_at, refs, *, replay=False):
    import quality

    size = path.stat().st_size
    archive_path = path if replay else _archive(paths, spec, path, sha)

    def reject(errors: list[dict], message: str, validation_seconds: float = 0.0):
        _drop_temp(con)
        out = FileOutcome(file_name, sha, size, "rejected", message=message, errors=errors,
                          validation_seconds=validation_seconds)
        if not replay:
            _quarantine(paths, spec, path, sha, errors)
        _record(con, spec, out, landed_at, archive_path)
        return out, 0, 0, None

    try:
        staged = read_file(con, spec, path, key, display_name=file_name, scratch=paths.home / "tmp")
    except IngestError as error:
        return reject([error.to_dict()], error.message)

    ctx = quality.file_context(con, spec.key, file_name, headers=staged.headers,
                               exported_on=quality.export_date(path), period=staged.period,
                               references=refs)
    validation = quality.check_file(spec, quality.read_typed(con), ctx)
    if staged.unknown_headers:
        validation.failures.append(_unknown_columns(file_name, staged.unknown_headers))
    if validation.errors:
        first = validation.errors[0].message
        more = len(validation.errors) - 1
        out = reject([_finding(f, spec, ctx) for f in validation.failures],
                     first + (f" (and {more} more failed check{'s' if more > 1 else ''})" if more else ""),
                     validation.seconds)
        return out[:3] + (validation,)
    out = FileOutcome(file_name, sha, size, "applied", encoding=staged.encoding, period=staged.period,
                      rows_read=staged.rows_read, rows_kept=staged.rows_kept, days=staged.days,
                      drop_reasons=staged.drop_reasons, unknown_headers=staged.unknown_headers,
                      warnings=[_finding(f, spec, ctx) for f in validation.warnings],
                      validation_seconds=validation.seconds)
    if staged.unknown_headers:
        out.message = f"unknown columns ignored: {', '.join(staged.unknown_headers)}"
    ins, dele = _apply(con, spec, staged, out, landed_at, archive_path)
    _drop_temp(con)
    return out, ins, dele, validation


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
