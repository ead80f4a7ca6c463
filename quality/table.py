"""Whole-table checks on ``staging.<source_key>``, in SQL inside DuckDB.

Per-file validation sees one file; these see what the files add up to, for a blocking Dagster
asset check after the staging asset is written: the key unique across files, the catalogue's
column rules still holding for every row (defence in depth: a replayed archive, a catalogue
change), and references into the school master and the registry that may have changed since a
file was applied. Tables run to 14M rows, so everything is an aggregate or an anti-join in
DuckDB; only the handful of sample rows is fetched.
"""

from __future__ import annotations

import datetime as dt
import time

import duckdb

from quality import rules as R
from quality.model import (
    ERROR, MAX_LINES, MAX_SAMPLES, WARN, Failure, TableValidation, count, examples, plain, show, where,
)
from toda_platform.catalogue import SourceSpec, school_year_of

SAMPLE_ROWS = 10


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(value) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def _table_exists(con, schema: str, name: str) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, name]).fetchall()[0][0])


def _has_rows(con, schema: str, name: str) -> bool:
    return _table_exists(con, schema, name) and bool(
        con.execute(f"SELECT EXISTS (SELECT 1 FROM {schema}.{_q(name)})").fetchall()[0][0])


class _Files:
    """sha256 of an applied file → its name, from the manifest (when there is one)."""

    def __init__(self, con, spec: SourceSpec):
        self.names: dict[str, str] = {}
        if _table_exists(con, "staging", "file_manifest"):
            self.names = dict(con.execute(
                "SELECT sha256, arg_max(file_name, processed_at) FROM staging.file_manifest "
                "WHERE source_key = ? GROUP BY sha256", [spec.key]).fetchall())

    def name(self, sha: str | None) -> str:
        if sha is None:
            return "an unknown file"
        return self.names.get(sha, f"file {sha[:12]}")

    def at(self, rows) -> str:
        """'出欠_2024-05.csv line 2; 出欠_2024-06.csv line 7' for (sha, line) pairs."""
        by_file: dict[str, list[int]] = {}
        for sha, line in rows:
            by_file.setdefault(self.name(sha), []).append(int(line))
        return "; ".join(f"{f} line{'s' if len(ls) > 1 else ''} {', '.join(map(str, sorted(ls)[:5]))}"
                         for f, ls in by_file.items())


def check_table(con: duckdb.DuckDBPyConnection, spec: SourceSpec) -> TableValidation:
    """Whole-table checks on ``staging.<spec.key>``; ERROR failures should block downstream."""
    started = time.perf_counter()
    validated_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    label = f"staging.{spec.key}"
    if not _table_exists(con, "staging", spec.key):
        return TableValidation(spec.key, 0, [], time.perf_counter() - started, validated_at,
                               skipped=[f"{label} does not exist yet"])
    table = f"staging.{_q(spec.key)}"
    present = {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'staging' "
        "AND table_name = ?", [spec.key]).fetchall()}
    rows = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    files = _Files(con, spec)
    failures: list[Failure] = []
    checks: list[str] = []
    skipped: list[str] = []
    traced = {"_file_sha256", "_line"} <= present
    trace = "_file_sha256, _line" if traced else "NULL::VARCHAR AS _file_sha256, NULL::INTEGER AS _line"
    ttrace = "t._file_sha256, t._line" if traced else trace

    # -- the columns the catalogue requires ------------------------------------------------
    staged = [c.staged_name for c in spec.staged_columns]
    missing = [c for c in staged if c not in present]
    checks.append("required_columns")
    if missing:
        failures.append(Failure(
            "required_columns", "expect_table_columns_to_match_set", ERROR, ", ".join(missing), len(missing),
            [], missing, f"{label}: column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                         f"missing from the table (the catalogue changed and the table was not rebuilt?)"))

    # -- the key, across every file ---------------------------------------------------------
    keys = [spec.column(k).staged_name for k in spec.key_columns]
    if all(k in present for k in keys):
        checks.append("unique_key")
        kcols = ", ".join(_q(k) for k in keys)
        not_null = " AND ".join(f"{_q(k)} IS NOT NULL" for k in keys)
        # Equal keys hash equally, so when no hash repeats no key does: one pass over a 64-bit
        # hash (about twice as fast as grouping by the key columns on 14M rows); only when
        # some hash repeats are the rows behind it grouped by their real key.
        repeats = con.execute(f"SELECT count(*) - count(DISTINCT hash({kcols})) FROM {table} "
                              f"WHERE {not_null}").fetchall()[0][0]
        n_keys = n_rows = 0
        if repeats:
            suspects = (f"SELECT * FROM {table} WHERE {not_null} AND hash({kcols}) IN "
                        f"(SELECT hash({kcols}) FROM {table} WHERE {not_null} GROUP BY 1 HAVING count(*) > 1)")
            n_keys, n_rows = con.execute(f"""
                SELECT count(*), coalesce(sum(n), 0) FROM (
                    SELECT count(*) AS n FROM ({suspects}) GROUP BY {kcols} HAVING count(*) > 1)
            """).fetchall()[0]
        if n_keys:
            sample = con.execute(f"""
                WITH dup AS (SELECT {kcols} FROM ({suspects}) GROUP BY {kcols}
                             HAVING count(*) > 1 ORDER BY {kcols} LIMIT {MAX_SAMPLES})
                SELECT {', '.join('t.' + _q(k) for k in keys)}, t._file_sha256, t._line
                FROM (SELECT {kcols}, {trace} FROM {table}) t JOIN dup USING ({kcols})
                ORDER BY {', '.join('t.' + _q(k) for k in keys)}, t._file_sha256, t._line
            """).fetchall()
            groups: dict[tuple, list] = {}
            for row in sample:
                groups.setdefault(tuple(row[:len(keys)]), []).append(row[len(keys):])
            hidden = any(_personal(spec, k) for k in keys)  # a pupil's key: shown by where it is
            values = [] if hidden else [dict(zip(keys, (plain(v) for v in key))) for key in groups]
            lines = sorted({int(r[-1]) for r in sample if r[-1] is not None})[:MAX_LINES]
            eg = "; ".join((f"{show(dict(zip(keys, key)))} in " if not hidden else "") + files.at(locs)
                           for key, locs in list(groups.items())[:3])
            failures.append(Failure(
                "unique_key", "expect_compound_columns_to_be_unique" if len(keys) > 1
                else "expect_column_values_to_be_unique", ERROR, ", ".join(keys), int(n_rows), lines, values,
                f"{where(label, lines, keys, [R.header(spec, None, k) for k in keys], int(n_rows))}: "
                f"{count(int(n_keys), 'key')} {'occurs' if n_keys == 1 else 'occur'} in more than one row "
                f"({count(int(n_rows), 'row')} in all), "
                f"e.g. {eg}; a corrected file should supersede the earlier one of its period, "
                f"so one of these files is wrong"))

    # -- column rules, in one scan ----------------------------------------------------------
    rules: list[tuple[str, str, str, str, tuple[str, str]]] = []  # check, column, condition, expectation, (noun, problem)
    for col in spec.staged_columns:
        name = col.staged_name
        if name not in present:
            continue
        c = _q(name)
        if not col.nullable:
            rules.append(("not_null", name, f"{c} IS NULL", "expect_column_values_to_not_be_null",
                          ("blank value", "in a column that must be filled")))
        if col.kind == "category" and col.values:
            codes = sorted(set(col.values.values()), key=str)
            rules.append(("allowed_values", name, f"{c} NOT IN ({', '.join(_lit(v) for v in codes)})",
                          "expect_column_values_to_be_in_set",
                          ("value", f"not among the allowed codes ({', '.join(map(str, codes[:8]))})")))
        bounds = R.value_range(col)
        if bounds and col.kind in ("int", "float", "school_year", "grade"):
            lo, hi = bounds
            cond = " OR ".join(x for x in (f"{c} < {lo!r}" if lo is not None else "",
                                           f"{c} > {hi!r}" if hi is not None else "") if x)
            rules.append(("range", name, cond, "expect_column_values_to_be_between",
                          ("value", f"outside {_n(lo)}–{_n(hi)}{' ' + col.unit if col.unit else ''}")))
        if col.kind in R.DATE_KINDS:
            lo, hi = R.date_bounds(spec, col)
            rules.append(("date_plausible", name, f"{c} NOT BETWEEN {_lit(lo)} AND {_lit(hi)}",
                          "expect_column_values_to_be_between", ("date", f"outside {lo} – {hi}")))
    if "known_date" in present:
        rules.append(("not_null", "known_date", '"known_date" IS NULL', "expect_column_values_to_not_be_null",
                      ("row", "without a knowledge date")))
    if rules:
        checks += sorted({r[0] for r in rules})
        counts = con.execute("SELECT " + ", ".join(
            f"count(*) FILTER (WHERE {cond})" for _, _, cond, _, _ in rules) + f" FROM {table}").fetchall()[0]
        for (check, name, cond, expectation, problem), n in zip(rules, counts):
            if not n:
                continue
            sample = con.execute(f"SELECT {_q(name)}, {trace} FROM {table} WHERE {cond} "
                                 f"ORDER BY _file_sha256, _line LIMIT {SAMPLE_ROWS}").fetchall()
            values = [] if _personal(spec, name) else _distinct(r[0] for r in sample)
            lines = sorted({int(r[2]) for r in sample if r[2] is not None})[:MAX_LINES]
            failures.append(Failure(
                check, expectation, ERROR, name, int(n), lines, values,
                f"{where(label, lines, [name], [R.header(spec, None, name)], int(n))}: {count(int(n), problem[0])} {problem[1]} "
                f"({files.at([(r[1], r[2]) for r in sample[:3] if r[2] is not None])}){examples(values)}"))

    # -- references -------------------------------------------------------------------------
    if "school_code" in present and spec.key != R.SCHOOL_MASTER_KEY:
        if _has_rows(con, "staging", R.SCHOOL_MASTER_KEY):
            checks.append("known_school")
            failures += _unknown(
                con, table, files, label, spec, "known_school", "school_code",
                f"SELECT t.school_code AS v, {ttrace} "
                f"FROM {table} t ANTI JOIN staging.{R.SCHOOL_MASTER_KEY} m ON t.school_code = m.school_code "
                f"WHERE t.school_code IS NOT NULL",
                ERROR, "school codes not in the school master (学校一覧)")
        else:
            skipped.append("known_school: staging.school_master is empty or missing")
    names = set(staged)
    if spec.grain == "pupil" and "pupil_id" in present and spec.key != R.REGISTRY_KEY:
        failures += _known_pupils(con, spec, table, files, label, present, ttrace, checks, skipped)
    if "resident_id" in present and "pupil_id" not in names and spec.key != R.REGISTRY_KEY:
        if _has_rows(con, "staging", R.REGISTRY_KEY):
            checks.append("known_resident")
            failures += _unknown(
                con, table, files, label, spec, "known_resident", "resident_id",
                f"SELECT t.resident_id AS v, {ttrace} FROM {table} t "
                f"ANTI JOIN (SELECT DISTINCT resident_id FROM staging.{R.REGISTRY_KEY}) r "
                f"ON t.resident_id = r.resident_id WHERE t.resident_id IS NOT NULL",
                WARN, "resident ids in no 学齢簿 (children who moved away before school age are legitimately unknown)")
        else:
            skipped.append("known_resident: staging.pupil_registry is empty or missing")

    failures.sort(key=lambda f: (f.severity != ERROR, f.check))
    return TableValidation(spec.key, int(rows), failures, time.perf_counter() - started, validated_at,
                           checks=checks, skipped=skipped)


def _personal(spec: SourceSpec, column: str) -> bool:
    """A pseudonym or a birth month is found by its file and line, never quoted."""
    return any(c.personal for c in spec.staged_columns if c.staged_name == column)


def validate_table(con: duckdb.DuckDBPyConnection, spec: SourceSpec) -> list[Failure]:
    """Failures of the whole-table checks on ``staging.<spec.key>`` (empty when it holds)."""
    return check_table(con, spec).failures


def _unknown(con, table, files, label, spec, check, column, select, severity, what) -> list[Failure]:
    n, distinct = con.execute(f"SELECT count(*), count(DISTINCT v) FROM ({select})").fetchall()[0]
    if not n:
        return []
    sample = con.execute(f"SELECT * FROM ({select}) ORDER BY _file_sha256, _line LIMIT {SAMPLE_ROWS}").fetchall()
    values = [] if _personal(spec, column) else _distinct(r[0] for r in sample)
    lines = sorted({int(r[2]) for r in sample if r[2] is not None})[:MAX_LINES]
    return [Failure(
        check, "custom", severity, column, int(n), lines, values,
        f"{where(label, lines, [column], [R.header(spec, None, column)], int(n))}: {count(int(n), 'row')} "
        f"with {distinct:,} {what} ({files.at([(r[1], r[2]) for r in sample[:3]])}){examples(values)}")]


def _known_pupils(con, spec, table, files, label, present, ttrace, checks, skipped) -> list[Failure]:
    if not _has_rows(con, "staging", R.REGISTRY_KEY):
        skipped.append("known_pupil: staging.pupil_registry is empty or missing")
        return []
    year_col = R.school_year_column(spec)
    if year_col is None or year_col not in present:
        skipped.append("known_pupil: no school year or date column to find the registry year")
        return []
    year = "school_year" if year_col == "school_year" else school_year_of(_q(year_col))
    checks.append("known_pupil")
    unknown = f"""
        WITH x AS (SELECT t.pupil_id, CAST({year} AS INTEGER) AS sy, {ttrace} FROM {table} t
                   WHERE t.pupil_id IS NOT NULL),
             reg AS (SELECT DISTINCT CAST(school_year AS INTEGER) AS sy, pupil_id FROM staging.{R.REGISTRY_KEY}),
             years AS (SELECT DISTINCT sy FROM reg)
        SELECT x.pupil_id AS v, x._file_sha256, x._line, x.sy, x.sy IN (SELECT sy FROM years) AS loaded
        FROM x ANTI JOIN reg ON x.sy = reg.sy AND x.pupil_id = reg.pupil_id"""
    out: list[Failure] = []
    summary = con.execute(f"SELECT loaded, count(*), count(DISTINCT v), list(DISTINCT sy ORDER BY sy) "
                          f"FROM ({unknown}) GROUP BY loaded").fetchall()
    h = R.header(spec, None, "pupil_id")
    for loaded, n, distinct, years in summary:
        sample = con.execute(f"SELECT * FROM ({unknown}) WHERE loaded = {_lit(bool(loaded))} "
                             f"ORDER BY _file_sha256, _line LIMIT {SAMPLE_ROWS}").fetchall()
        lines = sorted({int(r[2]) for r in sample if r[2] is not None})[:MAX_LINES]
        ys = ", ".join(str(y) for y in years[:6])
        if loaded:
            values = _distinct(r[0] for r in sample)
            out.append(Failure(
                "known_pupil", "custom", ERROR, "pupil_id", int(n), lines, values,
                f"{where(label, lines, ['pupil_id'], [h], int(n))}: {count(int(n), 'row')} for "
                f"{count(int(distinct), 'pupil')} not in the 学齢簿 (pupil_registry) of school year {ys} "
                f"({files.at([(r[1], r[2]) for r in sample[:3]])}){examples(values)}"))
        else:
            out.append(Failure(
                "known_pupil", "custom", WARN, "pupil_id", int(n), lines, [],
                f"{where(label, lines, ['pupil_id'], [h], int(n))}: no 学齢簿 (pupil_registry) of school "
                f"year {ys} is loaded, so {count(int(n), 'row')} could not be checked against it"))
    return out


def _n(x) -> str:
    return "…" if x is None else f"{x:g}"


def _distinct(values) -> list:
    out, seen = [], set()
    for v in values:
        p = plain(v)
        if p is None or show(p) in seen:
            continue
        seen.add(show(p))
        out.append(p)
        if len(out) == MAX_SAMPLES:
            break
    return out
