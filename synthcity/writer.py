"""One writer for every source: canonical records in, the department's CSV files out.

Record builders hand over DataFrames whose columns carry the catalogue's canonical names and
canonical values (codes, dates, grades 1-9). Everything about *how the file looks* comes from
the spec's ExportStyle, applied here and nowhere else:

* honest time — a record is written only if its knowledge date (the spec's ``known_from``,
  evaluated by DuckDB) is on or before ``today``; a field that is filled in later (a 転出日, a
  case outcome) carries a companion column ``<name>__known`` and stays blank until then;
* one file per value of the spec's ``period`` expression, named by ``export.file_name``;
* headers from ``column.header``; categories as the department's raw key (the first key that
  maps to the code, unless the builder already chose a raw key such as 数学 or 出席);
* dates, 和暦, grades and 年度 in the export's formats; full-width digits in a few percent of
  numeric cells (chosen by a hash of the record, so a record looks the same whatever ``today``);
* a 合計 row, trailing blank lines, CP932 with CRLF, UTF-8 with or without BOM;
* deterministic bytes and modification times, plus the planned re-exports: one byte-identical
  duplicate and one corrected re-export whose original carried a few wrong values.
"""

from __future__ import annotations

import functools
import io
import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Iterable

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from toda_platform import layouts
from toda_platform.catalogue import Column, SourceSpec
from synthcity import formats
from synthcity.rng import stream

KNOWN_SUFFIX = "__known"
JST = timezone(timedelta(hours=9))
EXPORT_TIME = time(17, 30)  # departments export at the end of the working day
FULLWIDTH_SHARE = 30  # per mille of numeric cells typed with full-width digits
NUMERIC_KINDS = ("int", "float", "school_year", "grade")
TYPOS = 6  # rows that were wrong in the original of the corrected re-export


@dataclass(frozen=True)
class ReExportPlan:
    """Which (source_key, period) gets a duplicate file and which a corrected re-export."""

    duplicate: tuple[str, str]
    correction: tuple[str, str]


@dataclass
class SourceFiles:
    names: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # file name -> data rows
    skipped_rows: int = 0  # rows of the duplicate and of the superseded original

    @property
    def expected_rows(self) -> int:
        return sum(self.rows.values()) - self.skipped_rows


class Writer:
    def __init__(self, landing: Path, today: date, seed: int, plan: ReExportPlan, earliest: date):
        self.landing = landing
        self.today = today
        self.seed = seed
        self.plan = plan
        self.earliest = earliest  # no export is dated before the history starts
        self.duplicate: tuple[str, str] | None = None
        self.correction: tuple[str, str, str] | None = None

    def write(self, spec: SourceSpec, frames: Iterable[pd.DataFrame]) -> SourceFiles:
        """Write the records of one source, given as one or more frames (no period may span two)."""
        out = SourceFiles()
        folder = self.landing / spec.key
        folder.mkdir(parents=True, exist_ok=True)
        for frame in frames:
            frame = _censor(frame, self.today)
            known, period_index, periods = _evaluate(spec, frame)
            keep = known <= np.datetime64(self.today, "D")
            _check_not_after(spec, frame[keep], self.today)
            order = np.argsort(np.where(keep, period_index, -1), kind="stable")
            bounds = np.searchsorted(np.where(keep, period_index, -1)[order], np.arange(len(periods) + 1))
            for p, period in enumerate(periods):
                idx = order[bounds[p]:bounds[p + 1]]
                if len(idx):
                    self._write_period(spec, frame.iloc[idx], str(period), known[idx].max(), folder, out)
        return out

    def _write_period(self, spec, frame, period, last_known, folder: Path, out: SourceFiles) -> None:
        name = spec.export.file_name.format(period=period)
        if name in out.rows:
            raise ValueError(f"{spec.key}: period {period} was given in two frames")
        # exported the day after the last thing it records: its last knowledge date, or a later
        # date inside it (a registry's 転出日 is known only when it happens)
        dates = [last_known.astype(date)]
        for col in spec.columns:
            if col.kind in ("date", "timestamp_date", "month") and col.name in frame:
                newest = pd.Timestamp(frame[col.name].max())
                if not pd.isna(newest):
                    dates.append(newest.date())
        latest = max(dates)
        exported = max(min(latest + timedelta(days=1), self.today), self.earliest)
        mtime = datetime.combine(exported, EXPORT_TIME, JST).timestamp()
        if (spec.key, period) == self.plan.correction:
            wrong = _with_typos(spec, frame, stream(self.seed, "typos", spec.key, period))
            self._save(folder / name, render(spec, wrong), mtime, out, len(frame))
            fixed = f"{Path(name).stem}_訂正.csv"
            latest = datetime.combine(self.today, EXPORT_TIME, JST).timestamp()
            self._save(folder / fixed, render(spec, frame), min(mtime + 14 * 86400, latest), out, len(frame))
            out.skipped_rows += len(frame)
            self.correction = (spec.key, name, fixed)
            return
        data = render(spec, frame)
        self._save(folder / name, data, mtime, out, len(frame))
        if (spec.key, period) == self.plan.duplicate:
            copy = f"{Path(name).stem} (1).csv"
            self._save(folder / copy, data, mtime + 3600, out, len(frame))
            out.skipped_rows += len(frame)
            self.duplicate = (spec.key, copy)

    @staticmethod
    def _save(path: Path, data: bytes, mtime: float, out: SourceFiles, rows: int) -> None:
        path.write_bytes(data)
        os.utime(path, (mtime, mtime))
        out.names.append(path.name)
        out.rows[path.name] = rows


# ---------------------------------------------------------------------------------------------
# Honest time


def _censor(frame: pd.DataFrame, today: date) -> pd.DataFrame:
    """Blank every field whose value only becomes known after today."""
    companions = [c for c in frame.columns if c.endswith(KNOWN_SUFFIX)]
    if not companions:
        return frame
    frame = frame.copy()
    limit = np.datetime64(today, "D")
    for c in companions:
        later = frame[c].to_numpy().astype("datetime64[D]") > limit
        target = c[: -len(KNOWN_SUFFIX)]
        frame[target] = frame[target].where(~later)
    return frame.drop(columns=companions)


def _referenced(expression: str, frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if re.search(rf"\b{re.escape(c)}\b", expression)]


def _evaluate(spec: SourceSpec, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list]:
    """Knowledge date and period of every record, by the catalogue's own SQL expressions."""
    cols = sorted(set(_referenced(spec.known_from, frame) + _referenced(spec.period, frame)))
    records = duckdb.from_df(frame[cols] if cols else pd.DataFrame({"_row": np.arange(len(frame))}))
    table = records.query("records", f"SELECT ({spec.known_from})::DATE AS k, ({spec.period})::VARCHAR AS p "
                                     f"FROM records").to_arrow_table()
    if len(table) != len(frame):
        raise AssertionError("DuckDB returned a different number of rows")
    known = table.column("k").to_numpy(zero_copy_only=False).astype("datetime64[D]")
    encoded = pc.dictionary_encode(table.column("p")).combine_chunks()
    periods = encoded.dictionary.to_pylist()
    index = encoded.indices.to_numpy(zero_copy_only=False)
    if np.isnat(known).any() or (index < 0).any() or None in periods:
        raise ValueError(f"{spec.key}: a record has no knowledge date or no period")
    return known, index, periods


def _check_not_after(spec: SourceSpec, frame: pd.DataFrame, today: date) -> None:
    """No written date may lie after today: the city cannot export its future."""
    limit = np.datetime64(today, "D")
    for col in spec.columns:
        if col.kind in ("date", "timestamp_date", "month") and col.name in frame:
            values = frame[col.name].to_numpy().astype("datetime64[D]")
            if (values[~np.isnat(values)] > limit).any():
                raise AssertionError(f"{spec.key}.{col.name} holds a date after {today}")


def _with_typos(spec: SourceSpec, frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """The same records with a few wrong values in the first category column outside the key."""
    col = next(c for c in spec.columns if c.kind == "category" and c.name not in spec.key_columns
               and c.name in frame)
    codes = list(dict.fromkeys(col.values.values()))
    wrong = frame.copy()
    values = wrong[col.name].astype(object).to_numpy()
    rows = rng.choice(len(frame), size=min(TYPOS, len(frame)), replace=False)
    for r in rows:
        current = col.values.get(values[r], values[r])
        values[r] = rng.choice([c for c in codes if c != current])
    wrong[col.name] = values
    return wrong


# ---------------------------------------------------------------------------------------------
# Rendering


def render(spec: SourceSpec, frame: pd.DataFrame) -> bytes:
    style = spec.export
    # a grid has no cell for a room or a sub-reason; an optional column a city does not export keeps
    # its canonical name as its only header
    columns = [c for c in spec.columns if c.name in frame.columns and layouts.carries(spec, c)
               and (c.required or c.headers != (c.name,))]
    missing = [c.name for c in spec.columns if c.required and c.name not in frame.columns]
    if missing:
        raise ValueError(f"{spec.key}: the builder did not provide {missing}")
    frame = in_city_spelling(spec, frame)
    arrays = [format_column(c, frame[c.name], style.date_format, style.grade_format) for c in columns]
    if style.fullwidth_digits:
        arrays = _fullwidth(spec, columns, arrays, frame)
    month_text = functools.lru_cache(maxsize=None)(lambda d: formats.format_month(d, style.date_format))
    table = (layouts.grid_table(spec, frame, columns, arrays, month_text)
             if style.layout == "monthly_grid" else pa.Table.from_arrays(arrays, names=[c.header for c in columns]))
    buf = io.BytesIO()
    try:
        pacsv.write_csv(table, buf, pacsv.WriteOptions(quoting_style="none", quoting_header="none"))
    except pa.ArrowInvalid:  # a value holds a comma or quote: quote like Excel would
        buf = io.BytesIO()
        pacsv.write_csv(table, buf, pacsv.WriteOptions(quoting_style="needed", quoting_header="none"))
    text = buf.getvalue()
    if style.total_row:
        text += _total_line(columns, arrays, frame).encode("utf-8")
    text += b"\n" * style.trailing_blank_lines
    if style.encoding == "cp932":
        return text.decode("utf-8").replace("\n", "\r\n").encode("cp932")
    if style.encoding == "utf-8-sig":
        return b"\xef\xbb\xbf" + text
    return text


def in_city_spelling(spec: SourceSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """Builders sometimes choose Toda's own spelling of a code (出席 typed in long form, 数学,
    保健室登校); a city whose map lacks that spelling writes the code instead, which the
    formatter then spells the city's way (its first raw value or grid mark for the code)."""
    toda = _builders_spelling(spec.key)
    grid = spec.export.grid
    out = None
    for col in spec.columns:
        if col.kind not in ("category", "bool") or col.name not in frame or not col.values:
            continue
        series = frame[col.name]
        uniques = series.cat.categories if isinstance(series.dtype, pd.CategoricalDtype) else pd.unique(series.dropna())
        codes = set(col.values.values())
        # a grid's cells are written from codes (its first mark per code)
        as_code = grid is not None and col.name == grid.status_column
        foreign = {v: col.values[v] if v in col.values else toda[col.name][v] for v in uniques
                   if isinstance(v, str) and v not in codes and (as_code or v not in col.values)
                   and (v in col.values or v in toda.get(col.name, {}))}
        if foreign:
            out = frame.copy() if out is None else out
            out[col.name] = series.astype(object).replace(foreign)
    return frame if out is None else out


@functools.cache
def _builders_spelling(key: str) -> dict[str, dict]:
    from toda_platform.city import load_city

    return {c.name: dict(c.values) for c in load_city("toda").spec(key).columns if c.values}


def format_column(col: Column, values: pd.Series, date_format: str, grade_format: str) -> pa.Array:
    """The column as text, formatting each distinct value once."""
    if col.kind == "timestamp_date" and date_format == "form_timestamp":
        return _form_timestamps(values)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    fmt = _formatter(col, date_format, grade_format)
    texts = pa.array([fmt(v) for v in np.asarray(uniques, dtype=object)], pa.string())
    return texts.take(pa.array(codes, mask=codes < 0))


def _formatter(col: Column, date_format: str, grade_format: str):
    kind = col.kind
    if kind in ("date", "timestamp_date"):
        return lambda v: formats.format_date(pd.Timestamp(v).date(), date_format)
    if kind == "month":
        return lambda v: formats.format_month(pd.Timestamp(v).date(), date_format)
    if kind == "school_year":
        return lambda v: formats.format_school_year(int(v), date_format)
    if kind == "grade":
        return lambda v: formats.format_grade(int(v), grade_format)
    if kind == "int":
        return lambda v: str(int(v))
    if kind == "float":
        return lambda v: repr(float(v))
    if kind in ("category", "bool", "multi"):
        first: dict = {}
        for raw, code in col.values.items():
            first.setdefault(code, raw)

        def raw_key(v):
            if v in first:
                return first[v]
            if isinstance(v, str) and v in col.values:
                return v  # the builder chose the department's own spelling
            raise ValueError(f"{col.name}: {v!r} is neither a code nor a raw value")

        if kind == "multi":
            return lambda v: "／".join(raw_key(code) for code in str(v).split(";"))
        return raw_key
    return str


def _form_timestamps(values: pd.Series) -> pa.Array:
    """Google Forms timestamps, vectorised: the date part and the clock part formatted apart."""
    ts = values.to_numpy().astype("datetime64[s]")
    day = ts.astype("datetime64[D]")
    seconds = (ts - day).astype(int)
    d_codes, d_uniques = pd.factorize(day)
    s_codes, s_uniques = pd.factorize(seconds)
    days = pd.DatetimeIndex(d_uniques)
    dates = pa.array([f"{d.year}/{d.month:02d}/{d.day:02d}" for d in days]).take(pa.array(d_codes))
    clock = pa.array([f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" for s in s_uniques]).take(pa.array(s_codes))
    return pc.binary_join_element_wise(dates, clock, " ")


def _fullwidth(spec: SourceSpec, columns: list[Column], arrays: list[pa.Array], frame: pd.DataFrame) -> list[pa.Array]:
    """Type a few numeric cells with full-width digits, the cells chosen by a hash of the record."""
    if not any(c.kind in NUMERIC_KINDS for c in columns):
        return arrays
    keys = [k for k in spec.key_columns if k in frame.columns]
    record = pd.util.hash_pandas_object(frame[keys], index=False).to_numpy()
    out = []
    for i, (col, arr) in enumerate(zip(columns, arrays)):
        if col.kind in NUMERIC_KINDS:
            pick = ((record >> np.uint64(3 * i + 1)) % np.uint64(1000)) < FULLWIDTH_SHARE
            if pick.any():
                cells = np.asarray(arr.to_pylist(), dtype=object)
                cells[pick] = [formats.fullwidth(v) if v is not None else None for v in cells[pick]]
                arr = pa.array(cells, pa.string())
        out.append(arr)
    return out


def _total_line(columns: list[Column], arrays: list[pa.Array], frame: pd.DataFrame) -> str:
    """合計 in the first column, the sum of every int/float column, other cells blank."""
    cells = []
    for i, (col, arr) in enumerate(zip(columns, arrays)):
        if i == 0:
            cells.append("合計")
        elif col.kind == "int":
            cells.append(str(int(pd.to_numeric(frame[col.name]).sum())))
        elif col.kind == "float":
            shown = [t for t in pc.unique(arr).to_pylist() if t]
            decimals = max((len(t.split(".")[1]) for t in shown if "." in t), default=0)
            cells.append(f"{pd.to_numeric(frame[col.name]).sum():.{decimals}f}")
        else:
            cells.append("")
    return ",".join(cells) + "\n"
