"""File layouts other than one row per record: attendance as a monthly grid.

Many 校務支援 systems export attendance as one row per pupil and month, with a column per day
(1日 … 31日) holding a mark — ／ present, 欠 absent, 遅 late, 早 early leave, 忌 mourning … —
and a blank cell on a day that is no school day or on which the pupil was not enrolled. A city
file declares it (``layout = "monthly_grid"`` and a ``[grid]`` section, see ``city.py``).

:func:`long_from_grid` turns such a file into the long rows the reader knows (one per marked
cell: the pupil's columns, ``date``, ``status`` = the mark) before anything is typed, so every
check of a long file applies unchanged. What only the grid can get wrong is checked here and
said in the grid's own terms — its file line and its day column::

    出欠_2024-06.csv, line 14, column 17日: unknown mark '◎' (marks: ／、欠、遅、早、公、忌)

Errors found later, on the long rows, are moved back to the grid's lines (:func:`read_grid`).
The cells are unpivoted by DuckDB (``UNPIVOT``); Python only splits the CSV records, to know
each record's line. :func:`grid_table` is the inverse, for the synthetic city's writer.
"""

from __future__ import annotations

import calendar
import csv
import io
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Callable

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from toda_platform import parsing
from toda_platform.catalogue import Column, MonthlyGrid, SourceSpec

DAYS = range(1, 32)
TOTAL_MARK = "計"
SHOWN = 5  # lines quoted in one error


@dataclass
class Origin:
    """Where each long line came from: long line n (from 2) is grid line ``lines[n - 2]``, day
    ``days[n - 2]``."""

    lines: np.ndarray
    days: np.ndarray

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, i: int) -> tuple[int, int]:
        return int(self.lines[i]), int(self.days[i])


@dataclass
class LongFile:
    """The grid as long rows: UTF-8 CSV bytes, and where each long line came from."""

    data: bytes
    origin: Origin
    grid: MonthlyGrid

    def grid_line(self, line: int) -> int:
        return self.origin[line - 2][0] if 2 <= line < len(self.origin) + 2 else line

    def locate(self, error):
        """An IngestError about long lines, moved to the grid's lines (and day column, when the
        error is about one cell of the date or the status)."""
        from toda_platform.ingest import IngestError

        lines = list(dict.fromkeys(self.grid_line(n) for n in error.lines))
        column, header = error.column, error.header
        cells = {self.origin[n - 2] for n in error.lines if 2 <= n < len(self.origin) + 2}
        if column in (self.grid.date_column, self.grid.status_column) and len(cells) == 1:
            column, header = self.grid.day_name(next(iter(cells))[1]), None
        return IngestError(error.file, error.reason, lines=lines, column=column, header=header,
                           values=error.values, check=error.check)


def _error(name: str, reason: str, *, lines=None, column=None, check="grid"):
    from toda_platform.ingest import IngestError

    return IngestError(name, reason, lines=lines, column=column, check=check)


def _normalise_header(text: str) -> str:
    from toda_platform.ingest import normalise_header

    return normalise_header(text)


def _records(text: str, delim: str) -> tuple[list[list[str]], list[int]]:
    """CSV records and the line each starts on (a quoted value may span lines)."""
    reader = csv.reader(io.StringIO(text), delimiter=delim)
    records, starts, last = [], [], 0
    for rec in reader:
        records.append(rec)
        starts.append(last + 1)
        last = reader.line_num
    return records, starts


def long_from_grid(con: duckdb.DuckDBPyConnection, spec: SourceSpec, data: bytes, name: str) -> LongFile | None:
    """The long rows of a monthly grid file, or None when the bytes are not text (the long
    reader then says precisely why). Raises IngestError on what is wrong with the grid."""
    grid = spec.export.grid
    try:
        text, _ = parsing.decode_bytes(data)
    except (parsing.ParseError, UnicodeDecodeError):
        return None
    text = text.lstrip("\ufeff")
    first = (text.splitlines() or [""])[0]
    delim = "\t" if first.count("\t") > first.count(",") else ","
    try:
        records, starts = _records(text, delim)
    except csv.Error as e:
        raise _error(name, f"not a readable CSV file ({e})", check="csv_structure") from None
    if not records:
        raise _error(name, "the file is empty", check="not_empty")
    headers = records[0]
    written = [_normalise_header(h) for h in headers]
    month_names = {_normalise_header(h) for h in grid.month_headers}
    month_at = next((i for i, h in enumerate(written) if h in month_names), None)
    if month_at is None:
        raise _error(name, f"the monthly grid has no month column ({'、'.join(grid.month_headers)}); "
                           f"the file has: {', '.join(headers)}", lines=[1], check="headers")
    day_names = {_normalise_header(grid.day_name(d)): d for d in DAYS}
    day_at: dict[int, int] = {}
    for i, h in enumerate(written):
        if h in day_names:
            if day_names[h] in day_at:
                raise _error(name, f"the day column {headers[i]} appears twice", lines=[1], column=headers[i],
                             check="headers")
            day_at[day_names[h]] = i
    missing = [grid.day_name(d) for d in range(1, 29) if d not in day_at]
    if missing:
        raise _error(name, f"the monthly grid lacks day column{'s' if len(missing) > 1 else ''} "
                           f"{'、'.join(missing)} (every month has days 1-28)", lines=[1], check="headers")
    keep = [i for i in range(len(headers)) if i != month_at and i not in day_at.values() and written[i]]
    wanted = {i: headers[i] for i in keep}

    rows, lines = [], []
    for rec, line in zip(records[1:], starts[1:]):
        if len(rec) != len(headers) or not rec[month_at].strip():
            if not any(c.strip() for c in rec):
                continue  # a blank line
            if len(rec) != len(headers):
                raise _error(name, f"the row has {len(rec)} values but the header has {len(headers)} columns",
                             lines=[line], check="csv_structure")
            if any(TOTAL_MARK in c for c in rec[:3]):
                continue  # a 合計 row
        rows.append(rec)
        lines.append(line)
    if not lines:
        raise _error(name, "the file has a header but no data rows", lines=[1], check="has_rows")
    columns = list(zip(*rows))  # cells are trimmed, and blank ones made NULL, by DuckDB
    months = [m.strip() for m in columns[month_at]]

    parsed = {}
    for raw in dict.fromkeys(months):
        try:
            parsed[raw] = parsing.parse_month(raw) if raw else None
        except parsing.ParseError as e:
            parsed[raw] = e
        if parsed[raw] is None or isinstance(parsed[raw], Exception):
            where = [ln for ln, m in zip(lines, months) if m == raw][:SHOWN]
            why = parsed[raw].reason if parsed[raw] is not None else "the month is blank"
            raise _error(name, f"'{raw}': {why}" if raw else why, lines=where, column=headers[month_at],
                         check="values")
    for month in dict.fromkeys(parsed.values()):
        length = calendar.monthrange(month.year, month.month)[1]
        lacking = [grid.day_name(d) for d in range(29, length + 1) if d not in day_at]
        if lacking:
            where = [ln for ln, m in zip(lines, months) if parsed[m] == month][:SHOWN]
            raise _error(name, f"{month:%Y-%m} has {length} days but the grid has no column "
                               f"{'、'.join(lacking)}", lines=where, check="headers")

    table = pa.table({
        "_line": pa.array(lines, pa.int32()),
        "_month": pa.array([parsed[m] for m in months], pa.date32()),
        **{f"k{i}": pa.array(columns[i], pa.string()) for i in keep},
        **{f"d{d}": pa.array(columns[i], pa.string()) for d, i in sorted(day_at.items())},
    })
    return _unpivot(con, table, spec, grid, name, wanted, sorted(day_at))


def _unpivot(con, table: pa.Table, spec: SourceSpec, grid: MonthlyGrid, name: str, wanted: dict[int, str],
             days: list[int]) -> LongFile:
    con.register("_grid_arrow", table)
    try:
        day_cols = ", ".join(f"d{d}" for d in days)
        trimmed = ", ".join(f"nullif(trim({c}, ' 　'), '') AS {c}" for c in
                            [*(f"k{i}" for i in wanted), *(f"d{d}" for d in days)])
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _grid_long AS
            SELECT * EXCLUDE (_day), CAST(substr(_day, 2) AS INTEGER) AS _day
            FROM (UNPIVOT (SELECT _line, _month, {trimmed} FROM _grid_arrow)
                  ON {day_cols} INTO NAME _day VALUE _mark)""")
    finally:
        con.unregister("_grid_arrow")
    marks = {parsing.normalise_text(m): m for m in grid.marks}
    found = [m for (m,) in con.execute("SELECT DISTINCT _mark FROM _grid_long").fetchall()]
    as_written = {m: marks.get(parsing.normalise_text(m)) for m in found}
    unknown = [m for m, known in as_written.items() if known is None]
    if unknown:
        bad = con.execute("SELECT _line, _day, _mark FROM _grid_long WHERE list_contains(?, _mark) "
                          f"ORDER BY _line, _day LIMIT {SHOWN}", [unknown]).fetchall()
        line, day, mark = bad[0]
        shown = mark if len(mark) <= 10 else mark[:10] + "…"
        raise _error(name, f"unknown mark '{shown}' (marks: {'、'.join(grid.marks)}); a blank cell is a day "
                           f"without school", lines=[line], column=grid.day_name(day), check="values")
    beyond = con.execute("SELECT _line, _day, _month FROM _grid_long WHERE _day > day(last_day(_month)) "
                         f"ORDER BY _line, _day LIMIT {SHOWN}").fetchall()
    if beyond:
        line, day, month = beyond[0]
        raise _error(name, f"a mark on day {day}, but {month:%Y-%m} has {calendar.monthrange(month.year, month.month)[1]} "
                           f"days", lines=[line], column=grid.day_name(day), check="values")
    con.register("_grid_marks", pa.table({"_mark": list(as_written), "_as": list(as_written.values())}))
    try:
        keep = ", ".join(f"g.k{i}" for i in wanted)
        out = con.sql(f"""
            SELECT {keep}{', ' if keep else ''}
                   strftime(make_date(year(g._month), month(g._month), g._day), '%Y-%m-%d') AS _date,
                   m._as AS _status, g._line, g._day
            FROM _grid_long g JOIN _grid_marks m USING (_mark)
            ORDER BY g._line, g._day""").to_arrow_table()
    finally:
        con.unregister("_grid_marks")
        con.execute("DROP TABLE IF EXISTS _grid_long")
    origin = Origin(out.column("_line").to_numpy(), out.column("_day").to_numpy())
    names = [*wanted.values(), spec.column(grid.date_column).header, spec.column(grid.status_column).header]
    rows = out.select(list(range(len(names)))).rename_columns(names)
    buf = io.BytesIO()
    pacsv.write_csv(rows, buf, pacsv.WriteOptions(quoting_style="needed"))
    return LongFile(buf.getvalue(), origin, grid)


def read_grid(con, spec: SourceSpec, path: Path, key: bytes, *, name: str, scratch: Path | None,
              data: bytes, read: Callable):
    """``ingest.read_file`` for a monthly grid: the grid made long, read as a long file, and every
    line the reader names (errors, ``_typed._line``) moved back to the grid's lines."""
    import tempfile

    from toda_platform.ingest import IngestError

    long = long_from_grid(con, spec, data, name)
    as_long = replace(spec, export=replace(spec.export, layout="long", grid=None))
    if long is None:
        return read(con, as_long, path, key, display_name=name, scratch=scratch, data=data)
    folder = scratch or Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".csv", dir=folder)
    with open(fd, "wb") as f:
        f.write(long.data)
    try:
        staged = read(con, as_long, Path(tmp), key, display_name=name, scratch=scratch, data=long.data)
    except IngestError as e:
        raise long.locate(e) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    con.register("_grid_origin", pa.table({"_long": pa.array(np.arange(2, len(long.origin) + 2, dtype=np.int32)),
                                           "_grid": pa.array(long.origin.lines.astype(np.int32))}))
    try:
        con.execute("UPDATE _typed SET _line = o._grid FROM _grid_origin o WHERE _typed._line = o._long")
    finally:
        con.unregister("_grid_origin")
    return staged


def carries(spec: SourceSpec, col: Column) -> bool:
    """Whether a file of the spec's layout has the column: a monthly grid holds the pupil's
    required columns, the month and the days (a room or a sub-reason has no cell in it)."""
    return spec.export.layout != "monthly_grid" or col.required


def grid_table(spec: SourceSpec, frame, columns: list[Column], texts: list[pa.Array],
               month_text: Callable[[date], str]) -> pa.Table:
    """Long records (canonical ``frame``, its columns already as ``texts``) as the city's monthly
    grid: one row per pupil and month, the pupil's required columns, the month, days 1-31."""
    import pandas as pd

    grid = spec.export.grid
    first_mark: dict[str, str] = {}
    for mark, code in grid.marks.items():
        first_mark.setdefault(code, mark)
    row_cols = [(c, t) for c, t in zip(columns, texts)
                if c.required and c.name not in (grid.date_column, grid.status_column)]
    dates = pd.to_datetime(frame[grid.date_column]).reset_index(drop=True)
    raw = spec.column(grid.status_column).values or {}  # a builder may hand raw spellings the city lists
    codes = pd.Series(frame[grid.status_column].astype(object).to_numpy()).map(
        lambda v: v if v in first_mark or v not in raw else raw[v])
    unknown = sorted(set(codes.dropna()) - set(first_mark))
    if unknown:
        raise ValueError(f"{spec.key}: no grid mark for {unknown}")
    long = pd.DataFrame({c.name: t.to_pandas() for c, t in row_cols})
    long["_month"] = dates.dt.to_period("M").dt.start_time.dt.date.map(month_text)
    long["_day"] = dates.dt.day
    long["_mark"] = codes.map(first_mark)
    keys = [c.name for c, _ in row_cols] + ["_month"]
    wide = long.pivot_table(index=keys, columns="_day", values="_mark", aggfunc="first", sort=False)
    wide = wide.reindex(columns=list(DAYS)).reset_index()
    names = [c.header for c, _ in row_cols] + [grid.month_headers[0]] + [grid.day_name(d) for d in DAYS]
    arrays = [pa.array(wide[k].astype(object).where(wide[k].notna(), None), pa.string()) for k in keys]
    arrays += [pa.array(wide[d].astype(object).where(wide[d].notna(), None), pa.string()) for d in DAYS]
    return pa.Table.from_arrays(arrays, names=names)
