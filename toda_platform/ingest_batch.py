"""Many landed files of one source read, typed and validated in one go.

A month of attendance is ~200,000 rows, and a city lands dozens of months at once (the first
load, a re-export of a year). Read one by one, most of the time goes to work that does not
grow with the rows: DuckDB queries, a GX validation and the pseudonymisation of the same
12,000 pupil numbers, 64 times over. Here the new files of a source that share a layout
(UTF-8, same headers and delimiter) are read by one multi-file ``read_csv`` (each row carrying
its file's number), converted on the distinct values of the whole batch, checked in SQL per file
(one period, no key twice, blank required values) and validated by Great Expectations once
(``check_batch``).

Nothing about a file's fate changes: each file is still applied, held or rejected by itself,
in export order, by ``ingest._ingest_file``, inside one transaction for the batch (``begin``):
the rows of official records wait in the batch table, where a later file of the batch that
replaces them deletes them, and the applied files' rows are written by one INSERT just before
the commit (``Open.commit``); quarantine moves wait for the commit, so a batch that fails
part-way leaves no trace and its files in landing. Whenever
a batch finds anything wrong — a value it cannot read, a failed expectation, even a warning —
it is split in two and each half is tried again, down to single files, which take the
one-file path (``read_file`` + ``check_file``) and get its exact messages: line, column, header
and values. A clean file costs the batch path; a bad one costs a few extra reads.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa

from toda_platform import ingest as I
from toda_platform import parsing
from toda_platform.catalogue import SourceSpec
from toda_platform.settings import Paths

# Landed bytes held at once: files are read (hashed, archived) and staged in chunks of this size.
BATCH_BYTES = int(float(os.environ.get("TODA_BATCH_MB", "512")) * 1e6)
TABLE_PREFIX = "batch_typed_"  # temporary tables that outlive one file (ingest._drop_temp keeps them)
COVERAGE = "_cov"  # beside each batch table: its rows per file, period and scope


@dataclass
class Prestaged:
    """A file's typed rows, ready in a batch table, and what the batch learnt of it."""

    staged: "I._StagedFile"
    table: str  # the batch's temporary table; this file's rows have _file = index
    index: int
    archive_path: Path
    latest: dict[str, date | None]  # each date column's latest value (checked against the export date)
    validation: object  # quality.FileValidation of the whole batch
    share: float  # this file's share of the batch's rows (its part of the validation time)


@dataclass
class Staged:
    files: dict[str, Prestaged] = field(default_factory=dict)  # sha256 -> prestaged
    validations: list = field(default_factory=list)  # one quality.FileValidation per batch
    tables: list[str] = field(default_factory=list)


@dataclass
class _Candidate:
    landed: "I.Landed"
    archive_path: Path
    read_path: Path  # the archive, or a UTF-8 copy of a CP932 export in the scratch folder
    encoding: str
    headers: list[str]
    delim: str
    positions: dict[str, int]
    unknown: list[str]
    physical_lines: int


class _Unfit(Exception):
    """Something in the batch is not clean: narrow it down."""


def eligible(spec: SourceSpec) -> bool:
    """Sources whose files carry no names (the registry's go to the identity store, file by file)
    and are written row by row (a monthly grid is turned into rows file by file: layouts.py)."""
    return not any(c.pii == "identity" for c in spec.columns) and spec.export.layout == "long"


def chunks(paths: list[Path]) -> list[list[Path]]:
    """The landing files in their order, cut so that no chunk holds more than BATCH_BYTES."""
    out: list[list[Path]] = [[]]
    size = 0
    for path in paths:
        try:
            n = path.stat().st_size
        except OSError:
            n = 0
        if out[-1] and size + n > BATCH_BYTES:
            out.append([])
            size = 0
        out[-1].append(path)
        size += n
    return [c for c in out if c]


def stage(con: duckdb.DuckDBPyConnection, spec: SourceSpec, paths: Paths, key: bytes, landed: list["I.Landed"],
          refs, into: Staged) -> None:
    """Stage what can be staged together of ``landed`` (new files of one source) into ``into``."""
    from toda_platform.governance.erasure import erased_tokens

    # erased pupils are dropped file by file (governance.erasure.keep_out): rare, so no batch then
    if not eligible(spec) or len(landed) < 2 or erased_tokens(paths):
        return
    groups: dict[tuple, list[_Candidate]] = {}
    # the files' archive copies (written and fsynced) and encoding checks, two at a time: the
    # disk waits and hashing release the GIL, so they overlap with the decoding of the next file
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(_candidate, spec, paths, item) for item in landed]
    found = [f.result() for f in futures if f.exception() is None]
    try:
        for c in found:
            if c is not None:
                groups.setdefault((tuple(c.headers), c.delim), []).append(c)
        for f in futures:
            if f.exception() is not None:
                raise f.exception()
        for group in groups.values():
            _narrowing(con, spec, paths, key, group, refs, into)
    finally:
        for c in found:
            if c is not None and c.read_path != c.archive_path:
                c.read_path.unlink(missing_ok=True)


def _candidate(spec: SourceSpec, paths: Paths, landed: "I.Landed") -> _Candidate | None:
    """A file fit for a batch: UTF-8 or CP932, its headers known to the catalogue. Anything else
    (and whatever the one-file path would reject before reading rows) takes that path."""
    data = landed.data
    if not data.strip() or not spec.exported:  # the one-file path says why
        return None
    try:
        encoding = parsing.detect_encoding(data)
    except parsing.ParseError:
        return None
    if encoding not in ("utf-8", "utf-8-sig", "cp932") or I._cut_inside_character(data, encoding):
        return None
    utf8 = encoding != "cp932"
    try:
        # DuckDB reads UTF-8 only: a CP932 export is decoded strictly (as the one-file path does)
        # and read from a UTF-8 copy; line breaks stay where they were, so lines keep their numbers
        text = None if utf8 else parsing.decode_bytes(data)[0]
    except parsing.ParseError:
        return None
    head = data[:65536].decode(encoding, errors="ignore") if utf8 else text[:65536]
    first_line = (head.lstrip("\ufeff").splitlines() or [""])[0]
    delim = I._delimiter(first_line)
    headers = I._first_record(first_line, delim)
    if not any(h.strip() for h in headers):
        return None
    try:
        positions, unknown = I.map_headers(spec, headers, landed.name)
    except I.IngestError:
        return None
    newline = b"\n" if b"\n" in data else b"\r"
    archive = I._archive(paths, spec, data, landed.sha)
    read_path = archive if text is None else I.utf8_copy(text, paths.home / "tmp")
    return _Candidate(landed, archive, read_path, encoding, headers, delim, positions, unknown,
                      data.rstrip(b"\r\n").count(newline) + 1)


def _narrowing(con, spec, paths, key, group: list[_Candidate], refs, into: Staged) -> None:
    if len(group) < 2:
        return  # a file by itself takes the one-file path
    try:
        _stage_group(con, spec, key, group, refs, into)
    except (_Unfit, I.IngestError, duckdb.Error):
        I._drop_temp(con)
        half = len(group) // 2
        _narrowing(con, spec, paths, key, group[:half], refs, into)
        _narrowing(con, spec, paths, key, group[half:], refs, into)


def _label(group: list[_Candidate]) -> str:
    return f"{group[0].landed.name} … {group[-1].landed.name} ({len(group)} files)"


def _stage_group(con, spec: SourceSpec, key: bytes, group: list[_Candidate], refs, into: Staged) -> None:
    import quality

    first = group[0]
    headers, positions, delim = first.headers, first.positions, first.delim
    label = _label(group)
    n = len(headers)
    wanted = sorted({positions[c.name] for c in spec.staged_columns if c.name in positions})
    all_cols = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(n))
    blank = " AND ".join(f"c{i} IS NULL" for i in range(n))
    markers = ", ".join(I._sql_str(m) for m in I.TOTAL_MARKERS)
    total = " OR ".join(f"(contains(c{i}, '計') AND trim(c{i}, ' 　') IN ({markers}))" for i in range(min(n, 3)))
    # one read of all the files (DuckDB spreads the files over its threads), each row carrying
    # its file's number (file_index: the position in the list); rows keep file and line order,
    # so a row's line is its rowid less its file's first, plus 2
    listing = ", ".join(I._sql_str(str(c.read_path)) for c in group)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _raw AS
        SELECT {', '.join(f'c{i}' for i in wanted)},
               CASE WHEN {blank} THEN 'blank_row' WHEN {total} THEN 'total_row' END AS _drop,
               file_index::USMALLINT AS _file
        FROM read_csv([{listing}], header = false, skip = 1, delim = {I._sql_str(delim)}, quote = '"', escape = '"',
                      auto_detect = false, strict_mode = true, null_padding = false, all_varchar = true,
                      columns = {{{all_cols}}})""")
    stats = {i: row for i, *row in con.execute("""
        SELECT _file, min(rowid), max(rowid), count(*), count(*) FILTER (_drop = 'blank_row'),
               count(*) FILTER (_drop = 'total_row') FROM _raw GROUP BY _file""").fetchall()}
    if set(stats) != set(range(len(group))):
        raise _Unfit("a file of the batch has no rows")
    for i, (lo, hi, rows, blanks, totals) in stats.items():
        # rows in file order (their line is rowid - first + 2), one physical line each (a value
        # spanning lines needs the one-file path's line finding), and some data
        if hi - lo + 1 != rows or group[i].physical_lines != rows + 1 or rows - blanks - totals <= 0:
            raise _Unfit(f"{group[i].landed.name}: not one line per record")
    con.register("_bfiles_arrow", pa.table({"_file": pa.array(list(stats), pa.uint16()),
                                            "_first": [stats[i][0] for i in stats]}))
    con.execute("CREATE OR REPLACE TEMP TABLE _bfiles AS SELECT * FROM _bfiles_arrow")
    con.unregister("_bfiles_arrow")

    I._check_values(con, label, [c for c in spec.staged_columns if c.name in positions], positions, headers, "0")
    unmapped = I._type_rows(con, spec, label, positions, headers, key, "(r.rowid - f._first + 2)",
                            source="_raw r JOIN _bfiles f ON r._file = f._file", carry="r._file AS _file",
                            lookup_line_sql="0", period=False)
    header_map = {col: headers[pos] for col, pos in positions.items()}
    I._check_required(con, spec, label, positions, headers)
    if spec.handling == "rows":  # forms: the latest of a pupil's submissions wins, per file
        superseded = I._latest_submission_wins(con, spec, within="_file")
    else:
        I._check_unique_key(con, spec, label, header_map, within="_file")
        superseded = {}
    dates = [c.staged_name for c in spec.staged_columns if c.kind in ("date", "timestamp_date", "month")]
    coverage(con, spec, "_typed", "_bcov")
    periods = {i: row for i, *row in con.execute(
        "SELECT _file, count(DISTINCT _cov_period), min(_cov_period), count(*) FILTER (_cov_period IS NULL) "
        "FROM _bcov GROUP BY _file").fetchall()}
    per_file = [(i, *periods.get(i, (0, None, 0)), *row) for i, *row in con.execute(
        "SELECT _file, count(*)" + (f', count(DISTINCT "{spec.event_date}")' if spec.event_date else ", NULL")
        + "".join(f', max("{d}")' for d in dates) + " FROM _typed GROUP BY _file").fetchall()]
    if len(per_file) != len(group) or any(r[1] != 1 or r[3] for r in per_file):
        raise _Unfit("a file of the batch spans no or several periods")
    lost = {i: {} for i in range(len(group))}
    for column, (_, values) in unmapped.items():
        for i, count in con.execute(
                f"SELECT r._file, count(*) FROM _raw r "
                f"WHERE r._drop IS NULL AND r.c{positions[column]} IN (SELECT unnest(?)) GROUP BY 1", [values]).fetchall():
            lost[i][column] = count
    shapes = I._number_shapes(con, spec, positions, headers, "0", by="r._file")

    exported = max(I._exported_on(c.landed.exported_at) for c in group)
    ctx = quality.FileContext(file_name=label, headers=header_map, exported_on=exported,
                              known_pupils=refs.known_pupils, known_residents=refs.known_residents,
                              known_schools=refs.known_schools, previous_volumes=[])
    validation = quality.check_batch(spec, con, "_typed", ctx, distinct=_distinct_values(con, spec, positions))
    if validation.failures:
        raise _Unfit(validation.failures[0].message)

    table = f"{TABLE_PREFIX}{len(into.tables)}"
    con.execute(f"ALTER TABLE _typed RENAME TO {table}")
    con.execute(f"ALTER TABLE _bcov RENAME TO {table}{COVERAGE}")
    into.tables.append(table)
    into.validations.append(validation)
    total_rows = sum(r[4] for r in per_file)
    for i, _, period, _, kept, days, *latest in per_file:
        c = group[i]
        lo, hi, rows, blanks, totals = stats[i]
        drops = {k: v for k, v in (("blank_row", blanks), ("total_row", totals),
                                   ("duplicate_submission", superseded.get(i, 0))) if v}
        staged = I._StagedFile(c.encoding, period, rows, kept, drops, c.unknown, header_map, days,
                               key_shapes=shapes.get(i, {}), unmapped=lost[i])
        into.files[c.landed.sha] = Prestaged(staged, table, i, c.archive_path, dict(zip(dates, latest)),
                                             validation, kept / total_rows)
    I._drop_temp(con)


@dataclass
class Open:
    """A batch's transaction: its files' rows written at once when it commits, left out for a file
    that is not applied; quarantine moves made only once it is committed."""

    spec: SourceSpec
    pending: dict[str, tuple[str, int]] = field(default_factory=dict)  # sha256 -> (batch table, _file)
    moves: list = field(default_factory=list)  # quarantine moves (callables), after COMMIT

    def withdraw(self, con, sha: str) -> None:
        """A file of the batch that is not applied (rejected, held, or read again by itself)."""
        self.pending.pop(sha, None)

    def rows(self, shas: list[str]) -> list[tuple[str, str]]:
        """Of ``shas``, the files whose rows wait in a batch table: (sha, the relation of its rows)."""
        return [(sha, f"{self.pending[sha][0]} t WHERE t._file = {int(self.pending[sha][1])}")
                for sha in shas if sha in self.pending]

    def commit(self, con) -> None:
        """Write the rows of every file of the batch that was applied, in one INSERT per batch
        table, and commit. Written last, after every file was judged: a DELETE of rows written in
        the same transaction makes DuckDB write all of them again at COMMIT (14 s of CPU for the
        bench's 13.6 M rows when one correction replaced its original in the batch), and rows
        that are never written need no DELETE (a file replaced in the batch, or not applied)."""
        if self.spec.handling != "rows":
            names = [f'"{c.staged_name}"' for c in self.spec.staged_columns]
            for table in dict.fromkeys(t for t, _ in self.pending.values()):
                files = ", ".join(f"({i}::USMALLINT, {I._sql_str(sha)})"
                                  for sha, (t, i) in self.pending.items() if t == table)
                con.execute(f"""
                    INSERT INTO staging.{self.spec.key} ({', '.join(names)}, _file_sha256, _line, known_date)
                    SELECT {', '.join('t.' + n for n in names)}, f.sha, t._line, t.known_date
                    FROM {table} t JOIN (VALUES {files}) f(_file, sha) ON t._file = f._file""")
        self.pending.clear()
        con.execute("COMMIT")
        for move in self.moves:
            move()
        self.moves.clear()


def begin(con, spec: SourceSpec, staged: Staged) -> Open | None:
    """Open the transaction in which a staged batch's files are judged and applied (None: nothing
    was staged). The rows of official records (file-level handling) wait in their batch table
    and are written by one INSERT per batch table when the batch commits (``Open.commit``):
    writing 60 files' rows in one statement costs about half of 60 INSERTs and commits. A form's
    rows are inserted file by file (they replace stored rows key by key)."""
    if not staged.files:
        return None
    tx = Open(spec)
    if spec.handling != "rows":
        tx.pending = {sha: (p.table, p.index) for sha, p in staged.files.items()}
    con.execute("BEGIN TRANSACTION")
    return tx


def coverage(con, spec: SourceSpec, table: str, into: str) -> None:
    """Rows per file, period and scope (school) of a batch table, as ``ingest._covered`` counts
    them for one file: the period worked out once per distinct value of the columns it reads
    (a month's ~20 dates), not once per row."""
    scope = I._scope_sql(spec)
    inputs = [f'"{c.staged_name}"' for c in spec.staged_columns
              if re.search(rf"\b{re.escape(c.staged_name)}\b", f"{spec.period} {scope}")]
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {into} AS
        SELECT _file, ({spec.period})::VARCHAR AS _cov_period, {scope} AS _cov_scope, sum(_n)::INTEGER AS _cov_rows
        FROM (SELECT _file{''.join(', ' + c for c in inputs)}, count(*) AS _n FROM {table} GROUP BY ALL)
        GROUP BY ALL""")


def _distinct_values(con, spec: SourceSpec, positions: dict[str, int]) -> dict[str, str]:
    """Per column converted through a value map, a query with exactly its distinct typed values:
    the map's values (made from the distinct raw values of the rows kept), and NULL when a row
    has none. Official records only: a form's earlier submissions leave ``_typed`` after the maps
    were made, so its maps may hold values no row has any more."""
    if spec.handling == "rows":
        return {}
    mapped = [c for c in spec.staged_columns if c.name in positions and c.kind not in I._SQL_ONLY_KINDS]
    if not mapped:
        return {}
    nulls = con.execute("SELECT " + ", ".join(f'bool_or("{c.staged_name}" IS NULL)' for c in mapped)
                        + " FROM _typed").fetchall()[0]
    return {c.staged_name: f'(SELECT DISTINCT v AS "{c.staged_name}" FROM (SELECT value AS v FROM m{positions[c.name]}'
                           + (" UNION ALL SELECT NULL" if has_null else "") + "))"
            for c, has_null in zip(mapped, nulls)}


def release(con, staged: Staged) -> None:
    """Drop the batch tables once every file of them has been applied or set aside."""
    for table in staged.tables:
        con.execute(f"DROP TABLE IF EXISTS temp.{table}")
        con.execute(f"DROP TABLE IF EXISTS temp.{table}{COVERAGE}")
    staged.tables.clear()
    staged.files.clear()
