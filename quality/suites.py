"""Great Expectations suites generated from the catalogue, and the validation of one landed file.

One ephemeral GX context per process holds one pandas data source; each source key gets a
data asset with a whole-dataframe batch definition and an :class:`ExpectationSuite` built once
from its spec (``build_suite``) and cached. ``validate_file`` then costs one GX validation of
the file's typed frame, in two passes:

1. every expectation with ``result_format="BOOLEAN_ONLY"`` — the gate, and all a clean file
   ever pays for;
2. only the expectations that failed, again with ``SUMMARY`` and
   ``unexpected_index_column_names=["_line"]``, which gives their unexpected counts, a sample
   of values and the ``_line`` of each (the line in the original file).

Per-file facts (the export date, the volume band) enter as GX suite parameters
(``{"$PARAMETER": ...}``), so the cached suite serves every file. Rules that need the file's
context (the registry, the school master) or several columns (Q-U group, 肥満度) are computed
with pandas into a derived column per rule that holds a short sample for offending rows and is
null elsewhere; the suite expects it to be null.

Before GX sees the frame, string columns become pandas categoricals and date columns datetime64:
hashing the batch, null checks, set membership and duplicate detection then work on integer
codes instead of Python strings (about 4× faster on a 200k-row attendance month).
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from quality import rules as R
from quality.model import (
    ERROR, MAX_LINES, MAX_SAMPLES, Failure, FileContext, FileValidation, count, examples,
    plain, show, where,
)
from toda_platform.catalogue import Column, SourceSpec

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

_NS_DATES = (dt.date(1677, 9, 22), dt.date(2262, 4, 11))  # what pandas' datetime64[ns] holds
PARTIAL_COUNT = 20  # rows GX reports per failing expectation (lines and samples come from these)
FAR_FUTURE = dt.datetime(2999, 12, 31)
_NUMERIC_SQL = ("INTEGER", "TINYINT", "DOUBLE")
_NUMERIC_KINDS = ("int", "float", "school_year", "grade")
_LOCK = threading.RLock()
_STATE: dict = {}
_COMPILED: dict[tuple[str, str], "_Compiled"] = {}


@dataclass
class _Compiled:
    spec: SourceSpec
    suite: object  # gx.ExpectationSuite
    batch_definition: object  # gx BatchDefinition (whole dataframe)
    rules: list[R.RowRule]
    expectations: list = field(default_factory=list)  # suite order; meta["n"] indexes it
    info: list[dict] = field(default_factory=list)  # per expectation: check, column, severity, …


# ---------------------------------------------------------------------------------------------
# The context and the suites
# ---------------------------------------------------------------------------------------------

def _context():
    """The process's ephemeral GX context and its pandas data source (built once)."""
    with _LOCK:
        if not _STATE:
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
            _STATE["context"] = context
            _STATE["datasource"] = context.data_sources.add_pandas("toda_staging")
        return _STATE["context"], _STATE["datasource"]


def _fingerprint(spec: SourceSpec) -> str:
    return hashlib.sha1(repr(spec).encode()).hexdigest()[:10]


def _compiled(spec: SourceSpec) -> _Compiled:
    key = (spec.key, _fingerprint(spec))
    found = _COMPILED.get(key)
    if found is not None:
        return found
    with _LOCK:
        if key in _COMPILED:
            return _COMPILED[key]
        import great_expectations as gx

        context, datasource = _context()
        taken = {a.name for a in datasource.assets}
        name = spec.key if spec.key not in taken else f"{spec.key}-{key[1]}"
        asset = datasource.add_dataframe_asset(name)
        batch_definition = asset.add_batch_definition_whole_dataframe("whole file")
        row_rules = R.row_rules(spec)
        expectations, info = _expectations(spec, row_rules)
        suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
        compiled = _Compiled(spec, suite, batch_definition, row_rules, list(suite.expectations), info)
        _COMPILED[key] = compiled
        return compiled


def build_suite(spec: SourceSpec):
    """The GX ExpectationSuite for a source, generated from its spec (cached per process)."""
    return _compiled(spec).suite


def _expectations(spec: SourceSpec, row_rules: list[R.RowRule]) -> tuple[list, list[dict]]:
    """The suite's expectations and, in the same order, what each one means to us.

    GX rebuilds an expectation's configuration (a pydantic ``dict()``) some 60 times per
    validation, so everything we only need for messages (column, unit, codes) stays in our own
    ``info`` list; the expectation carries just ``meta = {"check", "n"}``, a severity only when it
    is not the default (critical) and a description only where the default rendering would be
    cryptic (the derived rule columns).
    """
    import great_expectations.expectations as gxe
    from great_expectations.expectations.metadata_types import FailureSeverity

    out: list = []
    info: list[dict] = []

    def add(expectation_cls, check, about=None, severity=ERROR, description=None, **kwargs):
        extra = kwargs.pop("meta", {})
        info.append({"check": check, "column": about, "severity": severity, **extra})
        if description:
            kwargs["description"] = description
        if severity != ERROR:
            kwargs["severity"] = FailureSeverity.WARNING
        out.append(expectation_cls(meta={"check": check, "n": len(out)}, **kwargs))

    staged = [c.staged_name for c in spec.staged_columns]
    add(gxe.ExpectTableColumnsToMatchSet, "required_columns", column_set=staged + ["_line"],
        exact_match=False)
    for col in spec.staged_columns:
        name = col.staged_name
        if not col.nullable:
            add(gxe.ExpectColumnValuesToNotBeNull, "not_null", name, column=name)
        if col.kind == "category" and col.values:
            codes = sorted(set(col.values.values()), key=str)
            add(gxe.ExpectColumnValuesToBeInSet, "allowed_values", name, column=name, value_set=codes)
        elif col.kind == "multi" and col.values:
            codes = sorted(set(col.values.values()), key=str)
            alt = "|".join(sorted((str(c) for c in codes), key=len, reverse=True))
            add(gxe.ExpectColumnValuesToMatchRegex, "allowed_values", name, column=name,
                regex=rf"^(?:{alt})(?:;(?:{alt}))*$", meta={"codes": codes})
        bounds = R.value_range(col)
        if bounds and col.kind in _NUMERIC_KINDS:
            lo, hi = bounds
            add(gxe.ExpectColumnValuesToBeBetween, "range", name, column=name, min_value=lo, max_value=hi,
                meta={"unit": col.unit})
        if col.kind in R.DATE_KINDS:
            lo, hi = R.date_bounds(spec, col)
            add(gxe.ExpectColumnValuesToBeBetween, "date_plausible", name, column=name,
                min_value=dt.datetime.combine(lo, dt.time()), max_value=dt.datetime.combine(hi, dt.time()))
            if not col.planned:
                add(gxe.ExpectColumnValuesToBeBetween, "not_after_export", name, column=name,
                    max_value={"$PARAMETER": "exported_on"},
                    description=f"{name} is on or before the file's export date")
    keys = [spec.column(k).staged_name for k in spec.key_columns]
    if len(keys) > 1:
        add(gxe.ExpectCompoundColumnsToBeUnique, "unique_key", ", ".join(keys), column_list=keys)
    else:
        add(gxe.ExpectColumnValuesToBeUnique, "unique_key", keys[0], column=keys[0])
    for rule in row_rules:
        add(gxe.ExpectColumnValuesToBeNull, rule.check, rule.column, severity=rule.severity,
            column=rule.gx_column, description=rule.expects, meta={"rule": True})
    if R.VOLUME_BAND.applies(spec):
        band = R.VOLUME_BAND
        add(gxe.ExpectTableRowCountToBeBetween, "volume_band",
            min_value={"$PARAMETER": "volume_min"}, max_value={"$PARAMETER": "volume_max"},
            description=(f"row count within 1/{band.factor:g} and {band.factor:g} times the median of "
                         f"the last {band.window} files (once there are {band.min_previous})"))
    return out, info


# ---------------------------------------------------------------------------------------------
# Preparing a typed frame for GX
# ---------------------------------------------------------------------------------------------

def _coerce(col: Column, s: pd.Series) -> tuple[pd.Series, np.ndarray | None, str]:
    """The column in the dtype GX should see, and the rows whose values do not fit its type.

    GX 1.24's ``column_values.between`` is vectorised only for int64/float64 and
    datetime64[ns] columns; any other dtype (DuckDB hands over int32, nullable Int32, int8,
    datetime64[us]) falls back to a Python call per row, ~100× slower. Numbers therefore
    become int64 (no blanks) or float64, dates datetime64[ns].
    """
    sql = col.sql_type
    if sql in _NUMERIC_SQL:
        bad = None
        if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
            num = pd.to_numeric(s.astype(object), errors="coerce")
            bad = (s.notna() & num.isna()).to_numpy(dtype=bool)
            s = num
        if pd.api.types.is_integer_dtype(s) and not s.hasnans:
            s = s.astype("int64")
        else:
            s = s.astype("float64")
        if sql != "DOUBLE":
            frac = (s.notna() & (s != s.round())).to_numpy(dtype=bool)
            if frac.any():
                bad = frac if bad is None else (bad | frac)
                s = s.where(~frac)
        return s, bad, "a whole number" if sql != "DOUBLE" else "a number"
    if sql == "DATE":
        bad = None
        if not pd.api.types.is_datetime64_any_dtype(s):
            conv = pd.to_datetime(s, errors="coerce")
            bad = (s.notna() & conv.isna()).to_numpy(dtype=bool)
            s = conv
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_localize(None)
        if s.dtype != "datetime64[ns]":  # numpy's cast is ~5× faster than pandas' astype here
            s = pd.Series(s.to_numpy().astype("datetime64[ns]"), index=s.index, name=s.name)
        return s, bad, "a date"
    if sql == "BOOLEAN":
        if pd.api.types.is_bool_dtype(s):
            return s, None, "true or false"
        obj = s.astype(object)
        ok = obj.map(lambda v: v is None or isinstance(v, (bool, np.bool_)) or (isinstance(v, float) and np.isnan(v)))
        ok = ok.astype(bool)
        return obj.where(ok), (~ok).to_numpy(), "true or false"
    # VARCHAR: dictionary-encode, so GX hashes, compares and de-duplicates integer codes
    if isinstance(s.dtype, pd.CategoricalDtype):
        return s, None, "text"
    if s.dtype == object and s.isna().all():  # an optional column left blank: nothing to infer
        return pd.Series(pd.Categorical.from_codes(np.full(len(s), -1, dtype=np.int8), categories=pd.Index([], dtype=object)), index=s.index), None, "text"
    return s.astype("category"), None, "text"


@dataclass
class _Prepared:
    frame: pd.DataFrame  # what GX validates: staged columns, _line, one derived column per rule
    typed: pd.DataFrame  # staged columns in their checked dtypes (rules read this)
    offending: dict[str, pd.Series]  # rule.gx_column -> samples of offending rows
    failures: list[Failure]  # type failures found while preparing
    skipped: list[str]
    missing: set[str]


def _prepare(c: _Compiled, df: pd.DataFrame, ctx: FileContext) -> _Prepared:
    spec = c.spec
    if "_line" not in df.columns:
        raise ValueError(f"{ctx.file_name}: the typed frame has no _line column (line numbers in the file)")
    if not df["_line"].is_monotonic_increasing:
        df = df.sort_values("_line", kind="stable")
    if not (isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1):
        df = df.reset_index(drop=True)
    n = len(df)
    index = pd.RangeIndex(n)
    cols: dict[str, pd.Series] = {}
    failures: list[Failure] = []
    missing: set[str] = set()
    for col in spec.staged_columns:
        name = col.staged_name
        if name not in df.columns:
            missing.add(name)
            continue
        s, bad, expected = _coerce(col, df[name])
        cols[name] = s
        if bad is not None and bad.any():
            raw = df[name][bad]
            lines = sorted(int(x) for x in df["_line"].to_numpy()[bad][:MAX_LINES])
            samples = [] if col.personal else _distinct(raw.head(PARTIAL_COUNT).tolist())
            h = R.header(spec, ctx, name)
            failures.append(Failure(
                "type", "custom", ERROR, name, int(bad.sum()), lines, samples,
                f"{where(ctx.file_name, lines, [name], [h], int(bad.sum()))}: "
                f"{count(int(bad.sum()), 'value')} not {expected}{examples(samples)}"))
    lines = df["_line"]
    cols["_line"] = lines.astype("int64") if not lines.hasnans else lines
    typed = pd.DataFrame(cols, index=index, copy=False)
    frame_cols = dict(cols)
    offending: dict[str, pd.Series] = {}
    skipped: list[str] = []
    for rule in c.rules:
        absent = [x for x in rule.columns if x not in typed.columns]
        result = None
        if absent:
            skipped.append(f"{rule.check} on {rule.column}: column {', '.join(absent)} missing")
        else:
            result = rule.evaluate(typed, ctx)
            if result is None:
                skipped.append(f"{rule.check} on {rule.column}: no {rule.needs} given (reference not loaded yet)")
        if result is None:
            result = pd.Series([], dtype=object)
        offending[rule.gx_column] = result
        frame_cols[rule.gx_column] = _sparse(n, result)
    frame = pd.DataFrame(frame_cols, index=index, copy=False)
    return _Prepared(frame, typed, offending, failures, skipped, missing)


def _sparse(n: int, offending: pd.Series) -> pd.Series:
    """A categorical column: the sample for offending rows, null elsewhere (cheap when clean)."""
    if len(offending) == 0:
        return pd.Series(pd.Categorical.from_codes(np.full(n, -1, dtype=np.int8), categories=["x"]))
    values = np.full(n, None, dtype=object)
    values[offending.index.to_numpy()] = offending.astype(str).to_numpy()
    return pd.Series(values).astype("category")


def _distinct(values: list) -> list:
    out, seen = [], set()
    for v in values:
        p = plain(v)
        if p is None:
            continue
        k = show(p)
        if k not in seen:
            seen.add(k)
            out.append(p)
        if len(out) == MAX_SAMPLES:
            break
    return out


# ---------------------------------------------------------------------------------------------
# Validating one file
# ---------------------------------------------------------------------------------------------

def _parameters(spec: SourceSpec, rows: int, ctx: FileContext, days: int | None = None) -> tuple[dict, tuple | None]:
    exported = (dt.datetime.combine(ctx.exported_on, dt.time()) if ctx.exported_on is not None
                else FAR_FUTURE)
    band = R.VOLUME_BAND.bounds(list(ctx.previous_volumes or [])) if R.VOLUME_BAND.applies(spec) else None
    if band is not None and days:
        # previous volumes are rows per record date: scale the band to this file's dates
        band = (band[0] * days, band[1] * days, band[2] * days, band[3])
    params = {"exported_on": exported, "volume_min": 0, "volume_max": None}
    if band is not None:
        params["volume_min"], params["volume_max"] = band[0], band[1]
    return params, band


def check_file(spec: SourceSpec, df: pd.DataFrame, ctx: FileContext) -> FileValidation:
    """Validate the typed rows of one landed file; the full record (failures, GX result, timing)."""
    from great_expectations.validator.v1_validator import Validator

    started = time.perf_counter()
    validated_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    c = _compiled(spec)
    prepared = _prepare(c, df, ctx)
    days = int(df[spec.event_date].nunique()) if spec.event_date and spec.event_date in df else None
    params, band = _parameters(spec, len(df), ctx, days)
    timings = {"prepare": time.perf_counter() - started}
    gate = Validator(batch_definition=c.batch_definition, batch_parameters={"dataframe": prepared.frame},
                     result_format="BOOLEAN_ONLY")
    result = gate.validate_expectation_suite(c.suite, expectation_parameters=params)
    timings["gate"] = time.perf_counter() - started - timings["prepare"]
    failed = [r for r in result.results if not r.success]
    if failed:
        import great_expectations as gx

        again = [c.expectations[r.expectation_config.meta["n"]] for r in failed]
        detail_suite = gx.ExpectationSuite(name=f"{c.suite.name} (details)",
                                           expectations=[copy.copy(e) for e in again])
        detail = Validator(
            batch_definition=c.batch_definition, batch_parameters={"dataframe": prepared.frame},
            result_format={"result_format": "SUMMARY", "unexpected_index_column_names": ["_line"],
                           "partial_unexpected_count": PARTIAL_COUNT},
        ).validate_expectation_suite(detail_suite, expectation_parameters=params)
        by_n = {r.expectation_config.meta["n"]: r for r in detail.results}
        result.results = [by_n.get(r.expectation_config.meta["n"], r) for r in result.results]
        timings["details"] = time.perf_counter() - started - timings["prepare"] - timings["gate"]
    _label(result, spec, ctx, validated_at)
    failures = list(prepared.failures)
    for r in result.results:
        if not r.success:
            f = _failure(c, r, prepared, ctx, band, len(df))
            if f is not None:
                failures.append(f)
    failures += R.context_failures(spec, prepared.typed, ctx)
    failures.sort(key=lambda f: (f.severity != ERROR, f.lines[:1] or [0], f.check))
    return FileValidation(
        source_key=spec.key, file_name=ctx.file_name, rows=len(df), failures=failures,
        seconds=time.perf_counter() - started, validated_at=validated_at,
        expectations=len(result.results), skipped=prepared.skipped, gx_result=result, timings=timings,
    )


# ---------------------------------------------------------------------------------------------
# Validating a batch of files at once
# ---------------------------------------------------------------------------------------------

# File-level expectations: a batch checks them per file in SQL (the ingestion engine does).
FILE_LEVEL_CHECKS = ("unique_key", "volume_band")
_BATCH_SUITES: dict[tuple[str, str], object] = {}


def _batch_suite(c: _Compiled):
    """The suite without its file-level expectations (cached)."""
    key = (c.spec.key, _fingerprint(c.spec))
    with _LOCK:
        if key not in _BATCH_SUITES:
            import great_expectations as gx

            context, _ = _context()
            kept = [copy.copy(e) for e in c.expectations if e.meta["check"] not in FILE_LEVEL_CHECKS]
            _BATCH_SUITES[key] = context.suites.add(gx.ExpectationSuite(name=f"{c.suite.name} (batch)",
                                                                        expectations=kept))
        return _BATCH_SUITES[key]


def file_level_ok(spec: SourceSpec, rows: int, days: int | None, latest: dict[str, dt.date | None],
                  ctx: FileContext) -> bool:
    """A file of a validated batch, on what the batch could not check for it: its row count
    within the volume band and no date after its own export date (``latest``: each date
    column's latest value). False sends the file to ``check_file`` by itself."""
    params, band = _parameters(spec, rows, ctx, days)
    if band is not None and not (params["volume_min"] <= rows <= (params["volume_max"] or rows)):
        return False
    checked = {c.staged_name for c in spec.staged_columns if c.kind in R.DATE_KINDS and not c.planned}
    exported = params["exported_on"].date()
    return all(d is None or d <= exported for name, d in latest.items() if name in checked)


def _rule_frame(con, spec: SourceSpec, table: str, rule: R.RowRule) -> pd.DataFrame:
    """The distinct values a row rule reads: its verdict on these is its verdict on every row."""
    from toda_platform.catalogue import school_year_of

    cols = [f'"{x}"' for x in rule.columns]
    year = rule.inputs[0] if rule.by_school_year and rule.inputs else None
    if year is not None and R.staged_column(spec, year).kind in R.DATE_KINDS:
        others = ", ".join(x for x in cols if x != f'"{year}"')
        query = (f'SELECT {others}, min("{year}") AS "{year}" FROM {table} '
                 f'GROUP BY {others}, {school_year_of(chr(34) + year + chr(34))}')
    else:
        query = f"SELECT DISTINCT {', '.join(cols)} FROM {table}"
    frame = read_typed(con, f"({query})")
    frame["_line"] = 0
    return frame


def _cycled(s: pd.Series, n: int) -> pd.Series:
    return s.iloc[np.arange(n) % len(s)].reset_index(drop=True) if len(s) else s


def check_batch(spec: SourceSpec, con, table: str, ctx: FileContext,
                distinct: dict[str, str] | None = None, frames: dict[str, str] | None = None,
                rows: int | None = None) -> FileValidation:
    """Validate the typed rows of one file or of many (``table``) in one GX validation: the gate.

    Every expectation but the file-level ones (``FILE_LEVEL_CHECKS``) passes or fails on a
    column's values alone, so GX validates the batch's *distinct* values instead of its rows:
    a frame whose every column is a block of one column's distinct values (or of one row rule's
    verdicts on the distinct values it reads), cycled to a common length. 13 million attendance
    rows hold ~15,000 distinct pupils and ~250 dates. A failure here says only that something
    fails; the engine then narrows a batch down to the failing file and validates that file's
    rows with ``check_file``, which gives lines and values. For a batch ``ctx.exported_on`` is
    its latest export date (each file's own is checked per file, ``file_level_ok``).

    ``distinct``: for some columns, a query giving exactly their distinct values more cheaply
    than a scan of ``table`` (a batch's value maps: 15,000 pupils instead of 13 million rows).
    ``frames``: per row rule (its ``gx_column``), a relation holding every combination of the
    values it reads that ``table`` holds, and no other (a batch's typed values per file, counted
    on its raw rows); ``rows``: the rows of ``table``, when it is known without counting them."""
    from great_expectations.validator.v1_validator import Validator

    started = time.perf_counter()
    validated_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    c = _compiled(spec)
    blocks: dict[str, pd.Series] = {}
    failures: list[Failure] = []
    for col in spec.staged_columns:
        query = (distinct or {}).get(col.staged_name) or f'(SELECT DISTINCT "{col.staged_name}" FROM {table})'
        values = read_typed(con, query)[col.staged_name]
        s, bad, expected = _coerce(col, values)
        if bad is not None and bad.any():
            failures.append(Failure("type", "custom", ERROR, col.staged_name, int(bad.sum()), [], [],
                                    f"{ctx.file_name}: {count(int(bad.sum()), 'value')} of "
                                    f"{col.staged_name} not {expected}"))
        blocks[col.staged_name] = s
    skipped: list[str] = []
    pupils = None
    for rule in c.rules:
        frame = _rule_frame(con, spec, (frames or {}).get(rule.gx_column, table), rule)
        typed = pd.DataFrame({x: _coerce(R.staged_column(spec, x), frame[x])[0] for x in rule.columns})
        typed["_line"] = frame["_line"]
        result = rule.evaluate(typed, ctx)
        if result is None:
            skipped.append(f"{rule.check} on {rule.column}: no {rule.needs} given (reference not loaded yet)")
            result = pd.Series([], dtype=object)
        if rule.check == "known_pupil":
            pupils = typed
        blocks[rule.gx_column] = _sparse(len(typed), result)
    n = max(len(b) for b in blocks.values())
    blocks["_line"] = pd.Series(np.arange(1, n + 1, dtype="int64"))
    frame = pd.DataFrame({k: _cycled(b, n) for k, b in blocks.items()})
    params, _ = _parameters(spec, n, ctx)
    result = Validator(batch_definition=c.batch_definition, batch_parameters={"dataframe": frame},
                       result_format="BOOLEAN_ONLY").validate_expectation_suite(_batch_suite(c),
                                                                                 expectation_parameters=params)
    _label(result, spec, ctx, validated_at)
    for r in result.results:
        if not r.success:
            meta = c.info[r.expectation_config.meta["n"]]
            failures.append(Failure(meta["check"], r.expectation_config.type, meta.get("severity", ERROR),
                                    meta.get("column"), 0, [], [],
                                    f"{ctx.file_name}: {meta['check']} fails on {meta.get('column') or 'the table'}"))
    if pupils is not None:
        failures += R.context_failures(spec, pupils, ctx)
    if rows is None:
        rows, = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0]
    return FileValidation(
        source_key=spec.key, file_name=ctx.file_name, rows=int(rows), failures=failures,
        seconds=time.perf_counter() - started, validated_at=validated_at, expectations=len(result.results),
        skipped=skipped, gx_result=result, timings={"distinct_rows": n},
    )


def _label(result, spec: SourceSpec, ctx: FileContext, validated_at: dt.datetime) -> None:
    """Name the run after the file, so the GX result (and its Data Docs page) says what it was."""
    from great_expectations.core.run_identifier import RunIdentifier

    result.meta["run_id"] = RunIdentifier(run_name=ctx.file_name,
                                          run_time=validated_at.replace(tzinfo=dt.timezone.utc))
    spec_meta = result.meta.get("batch_spec")
    if isinstance(spec_meta, dict):
        result.meta["batch_spec"] = {**spec_meta, "data_asset_name": spec.key, "file": ctx.file_name}


def validate_file(spec: SourceSpec, df: pd.DataFrame, ctx: FileContext) -> list[Failure]:
    """The failures of one file's typed rows (``SELECT * FROM _typed``); empty when clean."""
    return check_file(spec, df, ctx).failures


# ---------------------------------------------------------------------------------------------
# GX results → Failures
# ---------------------------------------------------------------------------------------------

def _failure(c: _Compiled, r, prepared: _Prepared, ctx: FileContext, band, rows: int) -> Failure | None:
    spec = c.spec
    cfg = r.expectation_config
    meta = c.info[cfg.meta["n"]]
    check, column = meta["check"], meta.get("column")
    severity = meta.get("severity", ERROR)
    is_rule = bool(meta.get("rule"))
    expectation = "custom" if is_rule else cfg.type
    columns = column.split(", ") if column else []
    headers = [R.header(spec, ctx, x) for x in columns]
    raised = _exception(r.exception_info)
    if raised is not None:
        if set(columns) & prepared.missing:
            return None  # the missing column is reported once, by required_columns
        reason = raised.split("\n")[0]
        return Failure(check, expectation, severity, column, 0, [], [],
                       f"{where(ctx.file_name, [], columns, headers)}: the check could not be "
                       f"evaluated ({reason})")
    res = r.result or {}

    if check == "required_columns":
        missing = sorted(prepared.missing) or list(
            (res.get("details") or {}).get("mismatched", {}).get("missing", []))
        names = [m for m in missing if m != "_line"]
        hs = [R.header(spec, None, m) for m in names]
        listed = ", ".join(f"{m} (header '{h}')" if h else m for m, h in zip(names, hs))
        return Failure(check, cfg.type, severity, names[0] if len(names) == 1 else ", ".join(names),
                       len(missing), [1], names,
                       f"{ctx.file_name}, line 1: required column{'s' if len(names) > 1 else ''} "
                       f"missing from the typed rows: {listed or ', '.join(missing)}")

    if check == "volume_band":
        observed = int(res.get("observed_value", rows))
        lo, hi, mid, k = band if band else (0, None, 0, 0)
        side = "more than" if hi is not None and observed > hi else "less than"
        limit = hi if side == "more than" else lo
        factor = R.VOLUME_BAND.factor
        ratio = observed / mid if mid else float("inf")
        return Failure(check, cfg.type, severity, None, observed, [], [observed],
                       f"{ctx.file_name}: {observed:,} rows, {side} {limit:,.0f} — {ratio:.1f}× the median "
                       f"({mid:,.0f}{' for as many record dates' if spec.event_date else ''}) of the "
                       f"previous {k} files; a file is expected within ×1/{factor:g} "
                       f"to ×{factor:g} of it. A double export, a wrong extraction period or a "
                       f"truncated file?")

    n = int(res.get("unexpected_count") or 0)
    index_list = res.get("partial_unexpected_index_list") or []
    lines = sorted({int(x["_line"]) for x in index_list if isinstance(x, dict) and x.get("_line") is not None})
    lines = lines[:MAX_LINES]
    samples = _distinct(res.get("partial_unexpected_list") or [])
    if column in _integer_columns(spec):  # an int column with blanks travels as float64
        samples = [int(v) if isinstance(v, float) and v.is_integer() else v for v in samples]
    if _personal(spec, columns):
        samples = []  # a person finds the row by its line number; the value itself stays out

    if is_rule:
        rule = next(x for x in c.rules if x.gx_column == cfg.kwargs["column"])
        bad = prepared.offending.get(rule.gx_column)
        rows_bad = prepared.typed.loc[bad.index] if bad is not None and len(bad) else prepared.typed.iloc[:0]
        problem = rule.problem(rows_bad, ctx)
    elif check == "not_null":
        problem = f"{count(n, 'blank value')} in a column that must be filled"
    elif check == "allowed_values":
        codes = meta.get("codes") or cfg.kwargs.get("value_set") or []
        shown = ", ".join(str(x) for x in list(codes)[:8]) + (", …" if len(codes) > 8 else "")
        problem = f"{count(n, 'value')} not among the allowed codes ({shown})"
    elif check == "range":
        lo, hi, unit = cfg.kwargs.get("min_value"), cfg.kwargs.get("max_value"), meta.get("unit")
        neg = lo is not None and lo >= 0 and any(isinstance(v, (int, float)) and v < 0 for v in samples)
        problem = (f"{count(n, 'value')} outside {_num(lo)}–{_num(hi)}{' ' + unit if unit else ''}"
                   + (" (negative numbers among them)" if neg else ""))
    elif check == "date_plausible":
        lo, hi = cfg.kwargs.get("min_value"), cfg.kwargs.get("max_value")
        problem = (f"{count(n, 'date')} outside the plausible range {plain(lo)} – {plain(hi)} "
                   f"(a typo in the year or a wrong era letter, such as H for R?)")
    elif check == "not_after_export":
        problem = (f"{count(n, 'date')} after the file's export date {ctx.exported_on}: "
                   f"a file cannot hold records of days that had not yet happened")
    elif check == "unique_key":
        problem = (f"{count(n, 'row')} share their key ({', '.join(columns)}) with another row "
                   f"of the file")
    else:
        problem = f"{count(n, 'row')} fail {cfg.type}"
    return Failure(check, expectation, severity, column, n, lines, samples,
                   f"{where(ctx.file_name, lines, columns, headers, n)}: {problem}{examples(samples)}")


def _personal(spec: SourceSpec, columns: list[str]) -> bool:
    return any(c.personal for c in spec.staged_columns if c.staged_name in columns)


def _integer_columns(spec: SourceSpec) -> set[str]:
    return {c.staged_name for c in spec.staged_columns if c.sql_type in ("INTEGER", "TINYINT")}


def _exception(info) -> str | None:
    """The message of an exception GX caught while evaluating an expectation, if it caught one.

    GX 1.24 gives either one flat dict or a dict per metric that failed to resolve.
    """
    if not isinstance(info, dict) or not info:
        return None
    if "raised_exception" in info:
        return str(info.get("exception_message") or "error") if info.get("raised_exception") else None
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message") or "error")
    return None


def _num(x) -> str:
    if x is None:
        return "…"
    return f"{x:g}" if isinstance(x, float) else str(x)


# ---------------------------------------------------------------------------------------------
# Reading _typed fast
# ---------------------------------------------------------------------------------------------

def read_typed(con, table: str = "_typed") -> pd.DataFrame:
    """``SELECT * FROM _typed`` as a frame ready for ``validate_file``, faster than ``.df()``.

    DuckDB hands over Arrow; string columns are dictionary-encoded in Arrow (C++) and arrive
    as pandas categoricals, dates as datetime64. On a 200k-row attendance month this takes
    about a third of the time of ``.df()`` followed by the categorical conversion.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    arrow = con.sql(f"SELECT * FROM {table}").to_arrow_table()
    columns = []
    for name in arrow.column_names:
        col = arrow[name]
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            col = pc.dictionary_encode(col)
        elif pa.types.is_date32(col.type) and col.null_count < len(col):
            lo, hi = (v.as_py() for v in pc.min_max(col).values())
            if lo < _NS_DATES[0] or hi > _NS_DATES[1]:
                # datetime64[ns] cannot hold it and the conversion wraps round silently (2590
                # becomes 2005, a plausible date): as text, the type check reports it as it is
                col = pc.cast(col, pa.string())
        columns.append(col)
    table_ = pa.Table.from_arrays(columns, names=arrow.column_names)
    return table_.to_pandas(date_as_object=False, coerce_temporal_nanoseconds=True)
