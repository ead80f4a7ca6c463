"""Many landed files of one source read, typed and validated in one go.

A month of attendance is ~200,000 rows, and a city lands dozens of months at once (the first
load, a re-export of a year). Read one by one, most of the time goes to work that does not
grow with the rows: DuckDB queries, a GX validation and the pseudonymisation of the same
12,000 pupil numbers, 64 times over. Here the new files of a source that share a layout
(UTF-8, same headers and delimiter) are read by one multi-file ``read_csv`` (each row carrying
its file's number), converted on the distinct values of the whole batch, checked in SQL per file
(one period, no key twice, blank required values) and validated by Great Expectations once
(``check_batch``).

Official records are never typed into a table of their own (``_stage_records``): their rows
wait as read, every check runs on the raw values (counted per file in one GROUPING SETS scan) and
the value maps, and the rows are typed as they are written into staging.

Nothing about a file's fate changes: each file is still applied, held or rejected by itself,
in export order, by ``ingest._ingest_file``, inside one transaction for the batch (``begin``):
the rows of official records wait in the batch table, a later file of the batch that replaces
some of their cells marks those cells (``Open.take``), and the applied files' rows, but for
the marked cells, are written by one INSERT just before the commit (``Open.commit``);
quarantine moves wait for the commit, so a batch that fails part-way leaves no trace and its
files in landing. Whenever
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
EXCLUDED = "_excl"  # beside an official records' batch: the cells of its files replaced within the batch


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
        _drop_tables(con, f"{TABLE_PREFIX}{len(into.tables)}")
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
    if spec.handling == "rows":
        _stage_forms(con, spec, key, group, refs, into, label, headers, positions, stats)
    else:
        _stage_records(con, spec, key, group, refs, into, label, headers, positions, stats)


def _stage_forms(con, spec: SourceSpec, key: bytes, group: list[_Candidate], refs, into: Staged, label: str,
                 headers: list[str], positions: dict[str, int], stats: dict) -> None:
    """Forms: the batch's typed rows in a table (the latest submissions are picked out of it,
    rows set aside taken out of it), written file by file in the batch's transaction."""
    import quality

    unmapped = I._type_rows(con, spec, label, positions, headers, key, "(r.rowid - f._first + 2)",
                            source="_raw r JOIN _bfiles f ON r._file = f._file", carry="r._file AS _file",
                            lookup_line_sql="0", period=False)
    header_map = {col: headers[pos] for col, pos in positions.items()}
    I._check_required(con, spec, label, positions, headers)
    superseded = I._latest_submission_wins(con, spec, within="_file")  # per file, the latest submission wins
    coverage(con, spec, "_typed", "_bcov")
    per_file = _per_file(con, spec, group, "_typed", "count(*)")
    lost = _lost(con, group, positions, unmapped)
    shapes = I._number_shapes(con, spec, positions, headers, "0", by="r._file")
    validation = quality.check_batch(spec, con, "_typed", _context(spec, group, refs, label, header_map))
    if validation.failures:
        raise _Unfit(validation.failures[0].message)

    table = f"{TABLE_PREFIX}{len(into.tables)}"
    con.execute(f"ALTER TABLE _typed RENAME TO {table}")
    con.execute(f"ALTER TABLE _bcov RENAME TO {table}{COVERAGE}")
    _register(spec, group, into, table, validation, per_file, stats, header_map, shapes, lost, superseded)
    I._drop_temp(con)


def _stage_records(con, spec: SourceSpec, key: bytes, group: list[_Candidate], refs, into: Staged, label: str,
                   headers: list[str], positions: dict[str, int], stats: dict) -> None:
    """Official records: the batch's rows are materialised once, as read (``_raw``); they are typed
    only as they are written into staging (``Open.commit``: the batch's view ``batch_typed_<n>``,
    the raw rows joined to the value maps). Every check runs on the raw rows and the maps instead
    of on typed rows: a required value is blank, a key repeats, a file's cells and dates — each
    exactly as over the typed rows (a typed value is a function of its raw value), and over the
    typed view itself where that would not be exact (a map sending two raw values to one value, or
    some to NULL). Typing 13.6 M rows into a table of their own cost about as much as reading them."""
    import quality

    table = f"{TABLE_PREFIX}{len(into.tables)}"
    raw, files, view = f"{table}_raw", f"{table}_files", table
    sets = _Sets(con, "_raw", _wanted_sets(spec, positions))
    typing = I._typed_select(con, spec, label, positions, headers, key, "0", maps=f"{table}_m", kept=sets.kept)
    lost = _lost(con, group, positions, typing.unmapped)
    shapes = I._number_shapes(con, spec, positions, headers, "0", by="r._file", kept=sets.kept)
    con.execute(f"ALTER TABLE _raw RENAME TO {raw}")
    con.execute(f"ALTER TABLE _bfiles RENAME TO {files}")
    sets.raw = raw
    typed_view(con, spec, typing, raw, files, view)
    header_map = {col: headers[pos] for col, pos in positions.items()}

    plain = _plain(con, spec, typing)
    found = _blanks(con, spec, typing, plain, sets, view)
    for col in spec.staged_columns:
        if not col.nullable and found.get(col.staged_name):
            raise _Unfit(f"'{header_map[col.name]}' is blank in some rows")  # the file alone says where

    _unique_keys(con, spec, label, header_map, typing, plain, raw, view, len(group))
    _groups(con, typing, _cells(spec), sets, "_bgroups")
    coverage(con, spec, "_bgroups", "_bcov", weight="_n")
    per_file = _per_file(con, spec, group, "_bgroups", "sum(_n)")

    distinct = _distinct_values(con, spec, positions, typing, sets, {c: bool(n) for c, n in found.items()})
    frames = _rule_frames(con, spec, typing, sets, distinct)
    validation = quality.check_batch(spec, con, view, _context(spec, group, refs, label, header_map),
                                     distinct=distinct, frames=frames, rows=sum(r[4] for r in per_file))
    if validation.failures:
        raise _Unfit(validation.failures[0].message)
    con.execute(f"ALTER TABLE _bcov RENAME TO {table}{COVERAGE}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table}{EXCLUDED} (_file USMALLINT, _cov_period VARCHAR, "
                f"_cov_scope VARCHAR)")
    _register(spec, group, into, table, validation, per_file, stats, header_map, shapes, lost, {})
    I._drop_temp(con)


def typed_view(con, spec: SourceSpec, typing: "I._Typing", raw: str, files: str, view: str) -> None:
    """``view``: the batch's typed rows, as ``_typed`` holds a file's — the raw rows joined to
    the value maps, each with its line (its rowid less its file's first, plus 2)."""
    typed_cols = ", ".join(f'"{c.staged_name}"' for c in spec.staged_columns)
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW {view} AS
        SELECT {typed_cols}, _line, ({spec.known_from})::DATE AS known_date, _file
        FROM (SELECT (r.rowid - f._first + 2)::INTEGER AS _line, r._file AS _file,
                     {', '.join(f'{e} AS "{c}"' for c, e in typing.exprs.items())}
              FROM {raw} r JOIN {files} f ON r._file = f._file {typing.join_sql()} WHERE r._drop IS NULL)""")


def _plain(con, spec: SourceSpec, typing: "I._Typing") -> set[str]:
    """The staged columns whose typed value is a function of one raw value that is NULL exactly
    where the raw value is: numeric columns (their own expression), and mapped columns whose
    map sends no value to NULL and which have no text left unmapped."""
    plain = {c for c, e in typing.exprs.items() if c not in typing.maps and typing.reads[c]}
    for column, alias in typing.maps.items():
        nulls, = con.execute(f"SELECT count(*) FILTER (value IS NULL) FROM {alias}").fetchall()[0]
        if not nulls and len(typing.reads[column]) == 1 and _catalogue_name(spec, column) not in typing.unmapped:
            plain.add(column)
    return plain


def _blanks(con, spec: SourceSpec, typing: "I._Typing", plain: set[str], sets: "_Sets", view: str) -> dict[str, int]:
    """Per staged column the files have, the rows whose typed value is NULL: a plain column's
    counted on its raw values (grouped per file), any other's on the typed view."""
    present = [c for c, reads in typing.reads.items() if reads]
    found: dict[str, int] = {}
    for c in present:
        if c in plain:
            found[c] = int(con.execute(
                f"SELECT coalesce(sum(r._n) FILTER ({typing.raw.get(c, typing.exprs[c])} IS NULL), 0) "
                f"FROM {sets.relation(typing.reads[c])} r").fetchall()[0][0])
    others = [c for c in present if c not in plain]
    if others:
        found.update(zip(others, con.execute("SELECT " + ", ".join(f'count(*) FILTER ("{c}" IS NULL)' for c in others)
                                             + f" FROM {view}").fetchall()[0]))
    return found


def _catalogue_name(spec: SourceSpec, staged_name: str) -> str:
    """The catalogue name of a staged column (birth_month is staged from birth_date)."""
    return next(c.name for c in spec.staged_columns if c.staged_name == staged_name)


def _unique_keys(con, spec: SourceSpec, label: str, header_map, typing: "I._Typing", plain: set[str], raw: str,
                 view: str, files: int) -> None:
    """No key twice within a file, counted on the raw rows when the raw values of every key column
    tell its typed values apart (a one-to-one map, or a numeric column's own expression); else,
    and whenever the raw count finds fewer distinct keys than rows, exactly on the typed view."""
    exprs = []
    for k in spec.key_columns:
        if k in typing.maps and k in plain:
            size, values = con.execute(f"SELECT count(*), count(DISTINCT value) FROM {typing.maps[k]}").fetchall()[0]
            if size != values:
                exprs = None
                break
            exprs.append(typing.raw[k])
        elif k in typing.maps:
            exprs = None
            break
        else:
            exprs.append(typing.exprs[k])
    if exprs is not None and all(con.execute(
            f"SELECT count(*) = count(DISTINCT hash({', '.join(exprs)})) FROM {raw} r "
            f"WHERE r._file = {i} AND r._drop IS NULL").fetchall()[0][0] for i in range(files)):
        return
    I._check_unique_key(con, spec, label, header_map, within="_file", table=view)


def _groups(con, typing: "I._Typing", columns: list[str], sets: "_Sets", into: str) -> None:
    """``into``: the typed values of ``columns`` per file with their row counts (``_n``), as
    ``SELECT _file, columns, count(*) … GROUP BY ALL`` over the typed rows would give — counted
    over the distinct raw values first (a month's ~20 dates), then typed and summed."""
    typed = "".join(f', {typing.exprs[c]} AS "{c}"' for c in columns)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {into} AS
        SELECT r._file AS _file{typed}, sum(r._n)::BIGINT AS _n
        FROM {sets.relation([p for c in columns for p in typing.reads[c]])} r
        {typing.join_sql(columns)} GROUP BY ALL""")


class _Sets:
    """A batch's kept raw rows counted per file and distinct combination of some raw columns, for
    several sets of columns in one scan (GROUPING SETS): the value maps, blanks, key shapes,
    cells and rule frames read these few hundred thousand rows instead of the 13 million."""

    def __init__(self, con, raw: str, sets: list[list[int]]):
        self.raw = raw
        wanted = list(dict.fromkeys(tuple(sorted(set(s))) for s in sets))
        cols = sorted({p for s in wanted for p in s})
        args = ["_file"] + [f"c{p}" for p in cols]
        # GROUPING(args): a bit per argument, the first the highest, set where it is not grouped on
        self.gid = {s: sum(1 << (len(cols) - k) for k, p in enumerate(cols, start=1) if p not in s) for s in wanted}
        grouping = ", ".join("(" + ", ".join(["_file"] + [f"c{p}" for p in s]) + ")" for s in wanted)
        con.execute(f"CREATE OR REPLACE TEMP TABLE _bsets AS SELECT {', '.join(args)}, GROUPING({', '.join(args)}) "
                    f"AS _gid, count(*) AS _n FROM {raw} WHERE _drop IS NULL GROUP BY GROUPING SETS ({grouping})")

    def relation(self, reads: list[int]) -> str:
        """The kept rows' distinct values of the raw columns ``reads`` per file, with their counts."""
        key = tuple(sorted(set(reads)))
        if key in self.gid:
            return f"(SELECT * FROM _bsets WHERE _gid = {self.gid[key]})"
        cols = "".join(f", c{p}" for p in key)
        return f"(SELECT _file{cols}, count(*) AS _n FROM {self.raw} WHERE _drop IS NULL GROUP BY ALL)"

    def kept(self, reads: list[int]) -> str:
        return f"{self.relation(reads)} r WHERE"


def _cells(spec: SourceSpec) -> list[str]:
    """The staged columns a file's cells (period, school) and dates are worked out from."""
    return [c.staged_name for c in spec.staged_columns
            if re.search(rf"\b{re.escape(c.staged_name)}\b", f"{spec.period} {I._scope_sql(spec)}")
            or c.kind in ("date", "timestamp_date", "month")]


def _wanted_sets(spec: SourceSpec, positions: dict[str, int]) -> list[list[int]]:
    """The raw column sets a records batch counts (``_Sets``): each column by itself (its map,
    blanks, key shapes), the cells' and dates' columns, and each row rule's."""
    from quality import rules as QR

    reads = I.raw_reads(spec, positions)
    wanted = [r for r in reads.values() if r]
    wanted.append([p for c in _cells(spec) for p in reads[c]])
    for rule in QR.row_rules(spec):
        year = rule.inputs[0] if rule.by_school_year and rule.inputs else None
        if year is not None and QR.staged_column(spec, year).kind in QR.DATE_KINDS:
            wanted.append([p for c in rule.columns if c != year for p in reads[c]])
        elif len(rule.columns) > 1:
            wanted.append([p for c in rule.columns for p in reads[c]])
    return wanted


def _rule_frames(con, spec: SourceSpec, typing: "I._Typing", sets: "_Sets", distinct: dict[str, str]) -> dict[str, str]:
    """Per row rule of the gate, a relation holding the distinct value combinations it reads:
    a column's distinct values, or the rule's columns per file grouped as ``_groups`` does. A rule
    reading a value by its school year (a pupil known that year) takes each file's first date when
    every file lies within one school year (a monthly file does), instead of grouping by date too."""
    from quality import rules as QR

    from toda_platform.catalogue import school_year_of

    frames: dict[str, str] = {}
    for n, rule in enumerate(QR.row_rules(spec)):
        if len(rule.columns) == 1:
            frames[rule.gx_column] = distinct[rule.column]
            continue
        year = rule.inputs[0] if rule.by_school_year and rule.inputs else None
        name = f"_bframe{n}"
        if year is not None and QR.staged_column(spec, year).kind in QR.DATE_KINDS:
            others = [c for c in rule.columns if c != year]
            _groups(con, typing, [year], sets, "_byear")
            one_year, = con.execute(
                f'SELECT bool_and(ys = ye AND nulls = 0) FROM (SELECT _file, min({school_year_of(chr(34) + year + chr(34))}) '
                f'AS ys, max({school_year_of(chr(34) + year + chr(34))}) AS ye, count(*) FILTER ("{year}" IS NULL) AS nulls '
                f'FROM _byear GROUP BY _file)').fetchall()[0]
            if one_year:
                _groups(con, typing, others, sets, f"{name}_o")
                con.execute(f'CREATE OR REPLACE TEMP TABLE {name} AS SELECT {", ".join(chr(34) + c + chr(34) for c in others)}, '
                            f'y.first AS "{year}" FROM {name}_o o JOIN (SELECT _file, min("{year}") AS first '
                            f'FROM _byear GROUP BY _file) y USING (_file)')
                frames[rule.gx_column] = name
                continue
        _groups(con, typing, list(rule.columns), sets, name)
        frames[rule.gx_column] = name
    return frames


def _context(spec: SourceSpec, group: list[_Candidate], refs, label: str, header_map: dict[str, str]):
    """The batch's validation context: its latest export date (each file's own is checked per file)."""
    import quality

    exported = max(I._exported_on(c.landed.exported_at) for c in group)
    return quality.FileContext(file_name=label, headers=header_map, exported_on=exported,
                               known_pupils=refs.known_pupils, known_residents=refs.known_residents,
                               known_schools=refs.known_schools, previous_volumes=[])


def _per_file(con, spec: SourceSpec, group: list[_Candidate], source: str, rows: str) -> list[tuple]:
    """Per file: (index, periods, its period, rows without one, rows kept, days, latest of each date
    column), from ``_bcov`` and ``source`` (typed rows, or typed groups with ``rows`` their count)."""
    dates = [c.staged_name for c in spec.staged_columns if c.kind in ("date", "timestamp_date", "month")]
    periods = {i: row for i, *row in con.execute(
        "SELECT _file, count(DISTINCT _cov_period), min(_cov_period), count(*) FILTER (_cov_period IS NULL) "
        "FROM _bcov GROUP BY _file").fetchall()}
    per_file = [(i, *periods.get(i, (0, None, 0)), *row) for i, *row in con.execute(
        f"SELECT _file, {rows}" + (f', count(DISTINCT "{spec.event_date}")' if spec.event_date else ", NULL")
        + "".join(f', max("{d}")' for d in dates) + f" FROM {source} GROUP BY _file ORDER BY _file").fetchall()]
    if len(per_file) != len(group) or any(r[1] != 1 or r[3] for r in per_file):
        raise _Unfit("a file of the batch spans no or several periods")
    return per_file


def _lost(con, group: list[_Candidate], positions: dict[str, int], unmapped: dict) -> dict[int, dict[str, int]]:
    """Per file, the rows of each hand-typed column whose text is not among the codes (not kept)."""
    lost = {i: {} for i in range(len(group))}
    for column, (_, values) in unmapped.items():
        for i, count in con.execute(
                f"SELECT r._file, count(*) FROM _raw r "
                f"WHERE r._drop IS NULL AND r.c{positions[column]} IN (SELECT unnest(?)) GROUP BY 1", [values]).fetchall():
            lost[i][column] = count
    return lost


def _register(spec: SourceSpec, group: list[_Candidate], into: Staged, table: str, validation, per_file: list[tuple],
              stats: dict, header_map: dict[str, str], shapes: dict, lost: dict, superseded: dict[int, int]) -> None:
    """The staged batch's files, each with what the batch learnt of it."""
    dates = [c.staged_name for c in spec.staged_columns if c.kind in ("date", "timestamp_date", "month")]
    into.tables.append(table)
    into.validations.append(validation)
    total_rows = sum(r[4] for r in per_file)
    for i, _, period, _, kept, days, *latest in per_file:
        c = group[i]
        lo, hi, rows, blanks, totals = stats[i]
        drops = {k: v for k, v in (("blank_row", blanks), ("total_row", totals),
                                   ("duplicate_submission", superseded.get(i, 0))) if v}
        staged = I._StagedFile(c.encoding, period, rows, int(kept), drops, c.unknown, header_map, days,
                               key_shapes=shapes.get(i, {}), unmapped=lost[i])
        into.files[c.landed.sha] = Prestaged(staged, table, i, c.archive_path, dict(zip(dates, latest)),
                                             validation, kept / total_rows)


@dataclass
class Open:
    """A batch's transaction: its files' rows written at once when it commits, left out for a file
    that is not applied; quarantine moves made only once it is committed."""

    spec: SourceSpec
    pending: dict[str, tuple[str, int]] = field(default_factory=dict)  # sha256 -> (batch view, _file)
    moves: list = field(default_factory=list)  # quarantine moves (callables), after COMMIT
    committed: bool = False  # a move failing after COMMIT has nothing to roll back

    def withdraw(self, con, sha: str) -> None:
        """A file of the batch that is not applied (rejected, held, or read again by itself)."""
        self.pending.pop(sha, None)

    def _left(self, sha: str) -> str:
        """The cells of a pending file whose rows are still to be written (none replaced yet)."""
        table, i = self.pending[sha]
        return (f"{table}{COVERAGE} c WHERE c._file = {int(i)} AND NOT EXISTS (SELECT 1 FROM {table}{EXCLUDED} x "
                f"WHERE x._file = c._file AND x._cov_period = c._cov_period AND x._cov_scope = c._cov_scope)")

    def count(self, con, sha: str) -> int:
        """The rows of a pending file that will be written (its cells not replaced within the batch)."""
        return int(con.execute(f"SELECT coalesce(sum(c._cov_rows), 0) FROM {self._left(sha)}").fetchall()[0][0])

    def take(self, con, sha: str, cells: str) -> int:
        """A later file of the batch replaces the (period, school) ``cells`` of a pending file: its
        rows there are never written (as a DELETE of the same rows would; see ``commit``). Returns
        how many rows that leaves out."""
        table, i = self.pending[sha]
        before = self.count(con, sha)
        con.execute(f"INSERT INTO {table}{EXCLUDED} SELECT {int(i)}, _cov_period, _cov_scope FROM {cells}")
        return before - self.count(con, sha)

    def commit(self, con) -> None:
        """Write the rows of every file of the batch that was applied, in one INSERT per batch
        (typed as they are written: the batch's view joins its raw rows to the value maps), and
        commit. Written last, after every file was judged: a DELETE of rows written in the same
        transaction makes DuckDB write all of them again at COMMIT (14 s of CPU for the bench's
        13.6 M rows when one correction replaced its original in the batch); rows that are never
        written need no DELETE (a file replaced in the batch, wholly or in some cells, or not applied)."""
        if self.spec.handling != "rows":
            names = [f'"{c.staged_name}"' for c in self.spec.staged_columns]
            for table in dict.fromkeys(t for t, _ in self.pending.values()):
                files = [(sha, i) for sha, (t, i) in self.pending.items() if t == table]
                cut = {i for (i,) in con.execute(f"SELECT DISTINCT _file FROM {table}{EXCLUDED}").fetchall()}
                # a file none of whose cells was replaced is written whole; one partly replaced
                # without the rows in its replaced cells; one wholly replaced not at all
                whole = [(sha, i) for sha, i in files if i not in cut]
                partly = [(sha, i) for sha, i in files if i in cut and self.count(con, sha)]
                parts = []
                for chosen, where in ((whole, ""), (partly, (
                        f"WHERE NOT EXISTS (SELECT 1 FROM {table}{EXCLUDED} x WHERE x._file = t._file AND "
                        f"x._cov_period = ({self.spec.period})::VARCHAR AND x._cov_scope = {I._scope_sql(self.spec, 't.')})"))):
                    if chosen:
                        values = ", ".join(f"({int(i)}::USMALLINT, {I._sql_str(sha)})" for sha, i in chosen)
                        parts.append(f"SELECT {', '.join('t.' + n for n in names)}, f.sha, t._line, t.known_date "
                                     f"FROM {table} t JOIN (VALUES {values}) f(_file, sha) ON t._file = f._file {where}")
                if parts:
                    con.execute(f"INSERT INTO staging.{self.spec.key} ({', '.join(names)}, _file_sha256, _line, known_date) "
                                + " UNION ALL ".join(parts))
        self.pending.clear()
        con.execute("COMMIT")
        self.committed = True
        for move in self.moves:
            move()
        self.moves.clear()


def begin(con, spec: SourceSpec, staged: Staged) -> Open | None:
    """Open the transaction in which a staged batch's files are judged and applied (None: nothing
    was staged). The rows of official records (file-level handling) wait, raw, in their batch
    and are written by one INSERT per batch when it commits (``Open.commit``): writing 60 files'
    rows in one statement costs about half of 60 INSERTs and commits. A form's rows are inserted
    file by file (they replace stored rows key by key)."""
    if not staged.files:
        return None
    tx = Open(spec)
    if spec.handling != "rows":
        tx.pending = {sha: (p.table, p.index) for sha, p in staged.files.items()}
    con.execute("BEGIN TRANSACTION")
    return tx


def coverage(con, spec: SourceSpec, table: str, into: str, weight: str | None = None) -> None:
    """Rows per file, period and scope (school) of a batch table, as ``ingest._covered`` counts
    them for one file: the period worked out once per distinct value of the columns it reads
    (a month's ~20 dates), not once per row. ``weight``: the column counting the rows a row of
    ``table`` stands for (a table of typed values per file and their counts, ``_groups``)."""
    scope = I._scope_sql(spec)
    inputs = [f'"{c.staged_name}"' for c in spec.staged_columns
              if re.search(rf"\b{re.escape(c.staged_name)}\b", f"{spec.period} {scope}")]
    rows = f"sum({weight})" if weight else "count(*)"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {into} AS
        SELECT _file, ({spec.period})::VARCHAR AS _cov_period, {scope} AS _cov_scope, sum(_n)::INTEGER AS _cov_rows
        FROM (SELECT _file{''.join(', ' + c for c in inputs)}, {rows} AS _n FROM {table} GROUP BY ALL)
        GROUP BY ALL""")


def _distinct_values(con, spec: SourceSpec, positions: dict[str, int], typing: "I._Typing", sets: "_Sets",
                     nulls: dict[str, bool]) -> dict[str, str]:
    """Per staged column, a query with exactly the distinct typed values of the batch's rows: a
    mapped column's map values (made from the distinct raw values of the rows kept) and NULL when
    a row has none (``nulls``, counted with the blanks); a numeric column's values from its raw
    text; a column the files lack, NULL."""
    out = {}
    for col in spec.staged_columns:
        name = col.staged_name
        if col.name not in positions:
            out[name] = f'(SELECT CAST(NULL AS {col.sql_type}) AS "{name}")'
        elif name in typing.maps:
            out[name] = (f'(SELECT DISTINCT v AS "{name}" FROM (SELECT value AS v FROM {typing.maps[name]}'
                         + (" UNION ALL SELECT NULL" if nulls.get(name) else "") + "))")
        else:
            out[name] = f'(SELECT DISTINCT {typing.exprs[name]} AS "{name}" FROM {sets.relation(typing.reads[name])} r)'
    return out


def _drop_tables(con, table: str) -> None:
    """A batch's temporary tables and view: ``table`` and every ``table_…``."""
    found = con.execute("SELECT table_name, table_type FROM information_schema.tables WHERE table_catalog = 'temp' "
                        "AND (table_name = ? OR starts_with(table_name, ?))", [table, table + "_"]).fetchall()
    for name, kind in sorted(found, key=lambda f: f[1] != "VIEW"):  # views first
        con.execute(f'DROP {"VIEW" if kind == "VIEW" else "TABLE"} IF EXISTS temp."{name}"')


def release(con, staged: Staged) -> None:
    """Drop the batch tables once every file of them has been applied or set aside."""
    for table in staged.tables:
        _drop_tables(con, table)
    staged.tables.clear()
    staged.files.clear()
