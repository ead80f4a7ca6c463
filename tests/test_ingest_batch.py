"""Many files of a source staged in one batch give exactly what one file at a time gives.

The batch path (``toda_platform.ingest_batch``) is only a faster way to the same staging rows,
manifest rows and findings: each test runs the real ingestion twice on the same landed files —
once batched, once with batches of one file (``BATCH_BYTES`` = 1, the one-file path) — and
compares everything a person or a later asset can see.
"""

from __future__ import annotations

import collections
import json
import shutil

import duckdb
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.test_bad_inputs import ATT, K, NURSE, city, db, land_real, modified  # noqa: F401  (fixtures)
from toda_platform import ingest as I
from toda_platform import ingest_batch
from toda_platform.city import load_city
from toda_platform.ingest import ingest_source

CATALOGUE = load_city("toda").specs  # Toda's specs: what each source means and how Toda writes it

MONTHS = ["出欠_2025-04.csv", "出欠_2025-05.csv", "出欠_2025-06.csv", "出欠_2025-07.csv", "出欠_2025-09.csv"]
MANIFEST_COLUMNS = ["file_name", "sha256", "outcome", "encoding", "period", "rows_read", "rows_kept", "rows_dropped",
                    "drop_reasons", "unknown_headers", "message", "days", "key_shapes", "findings"]


BATCH_BYTES = ingest_batch.BATCH_BYTES  # as configured: a hypothesis example must not inherit the last one's 1


def _run(con, paths, key, source, *, batched: bool, monkeypatch):
    monkeypatch.setattr(ingest_batch, "BATCH_BYTES", BATCH_BYTES if batched else 1)
    return ingest_source(con, CATALOGUE[source], paths, key)


def _state(con, source, paths=None):
    rows = con.execute(f"SELECT * FROM staging.{source} ORDER BY _file_sha256, _line").df()
    manifest = con.execute(f"SELECT {', '.join(MANIFEST_COLUMNS)} FROM staging.file_manifest WHERE source_key = ? "
                           f"ORDER BY file_name", [source]).df()
    folders = None
    if paths is not None:  # what is left in landing and what was moved to quarantine
        folders = {kind: sorted(p.name for p in folder.iterdir()) if folder.exists() else []
                   for kind, folder in (("landing", paths.landing_dir(source)), ("quarantine", paths.quarantine / source))}
    return rows, manifest, folders


def _batched_and_alone(city, paths, db, key, monkeypatch, tmp_path, source, land):
    """Land the files with ``land(paths)``, ingest them batched; then the same from a copy of the
    warehouse as it was, one file at a time. Returns both reports and states."""
    pristine = tmp_path / "pristine.duckdb"
    db.execute("CHECKPOINT")
    shutil.copy(paths.warehouse, pristine)
    land(paths)
    copies = {p.name: p.read_bytes() for p in paths.landing_dir(source).iterdir()}
    mtimes = {p.name: p.stat().st_mtime for p in paths.landing_dir(source).iterdir()}
    batched = _run(db, paths, key, source, batched=True, monkeypatch=monkeypatch)
    batched_state = _state(db, source, paths)

    import duckdb
    alone_con = duckdb.connect(str(pristine))
    try:
        shutil.rmtree(paths.landing_dir(source))
        shutil.rmtree(paths.quarantine / source, ignore_errors=True)
        paths.landing_dir(source).mkdir(parents=True)
        import os
        for name, data in copies.items():
            target = paths.landing_dir(source) / name
            target.write_bytes(data)
            os.utime(target, (mtimes[name], mtimes[name]))
        alone = _run(alone_con, paths, key, source, batched=False, monkeypatch=monkeypatch)
        alone_state = _state(alone_con, source, paths)
    finally:
        alone_con.close()
    return batched, batched_state, alone, alone_state


def _assert_same(batched_state, alone_state):
    pd.testing.assert_frame_equal(batched_state[0], alone_state[0])
    b, a = batched_state[1].copy(), alone_state[1].copy()
    for frame in (b, a):  # the seconds GX took are not part of what happened
        frame["findings"] = frame["findings"].map(lambda f: json.loads(f) if f else f)
    pd.testing.assert_frame_equal(b, a)
    assert batched_state[2] == alone_state[2]  # the same files quarantined, the same left in landing


def test_a_batch_of_clean_months_stages_exactly_what_single_files_do(city, paths, db, key, monkeypatch, tmp_path):
    def land(p):
        for name in MONTHS:
            land_real(city, p, ATT, name)

    batched, bstate, alone, astate = _batched_and_alone(city, paths, db, key, monkeypatch, tmp_path, ATT, land)
    assert [f.outcome for f in batched.files] == ["applied"] * len(MONTHS)
    # the batch path was taken: one validation for all five files, not one per file
    assert [v.file_name for v in batched.validations] == [f"{MONTHS[0]} … {MONTHS[-1]} ({len(MONTHS)} files)"]
    assert len(alone.validations) == len(MONTHS)
    assert len(bstate[0]) == sum(f.rows_kept for f in batched.files) > 10_000
    _assert_same(bstate, astate)


def test_a_bad_file_in_a_batch_is_narrowed_down_and_explained_as_alone(city, paths, db, key, monkeypatch,
                                                                        tmp_path):
    """One month with an unknown status code among clean months, one with a total row and a
    blank line at its end: the clean ones apply from the batch, the bad one is rejected with
    the one-file path's line and column, and the totals are dropped and counted the same."""
    def land(p):
        for name in MONTHS:
            land_real(city, p, ATT, name)
        bad = city.export(ATT, MONTHS[2])
        modified(bad, K, "出欠", "遊び").write(p.landing_dir(ATT) / MONTHS[2])
        totals = city.export(ATT, MONTHS[3])
        totals.copy(rows=[*totals.rows, ["合計"] + [""] * (len(totals.header) - 1)]).write(
            p.landing_dir(ATT) / MONTHS[3])

    batched, bstate, alone, astate = _batched_and_alone(city, paths, db, key, monkeypatch, tmp_path, ATT, land)
    outcomes = {f.file_name: f.outcome for f in batched.files}
    assert outcomes == {**{m: "applied" for m in MONTHS}, MONTHS[2]: "rejected"}
    rejected = next(f for f in batched.files if f.outcome == "rejected")
    assert rejected.errors[0]["lines"][:1] == [K + 2] and rejected.errors[0]["column"] == "status"
    totals = next(f for f in batched.files if f.file_name == MONTHS[3])
    assert totals.drop_reasons == {"total_row": 1}
    assert any("files)" in v.file_name for v in batched.validations)  # the clean ones still went together
    _assert_same(bstate, astate)


def test_a_file_past_its_export_date_is_judged_by_itself(city, paths, db, key, monkeypatch, tmp_path):
    """The batch validates dates against its latest export; each file's own export date is
    checked per file, and a file that fails it is read again alone and rejected as before."""
    def land(p):
        for name in MONTHS[:3]:
            land_real(city, p, ATT, name)
        late = city.export(ATT, MONTHS[0])
        # exported (modified) on April 10th, yet holding the whole of April: impossible
        late.write(p.landing_dir(ATT) / MONTHS[0], mtime=pd.Timestamp("2025-04-10 18:00", tz="Asia/Tokyo").timestamp())

    batched, bstate, alone, astate = _batched_and_alone(city, paths, db, key, monkeypatch, tmp_path, ATT, land)
    first = next(f for f in batched.files if f.file_name == MONTHS[0])
    assert first.outcome == "rejected" and first.errors[0]["check"] == "not_after_export", first.message
    _assert_same(bstate, astate)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(broken=[], how="bad_date")
@given(broken=st.lists(st.sampled_from(range(4)), min_size=0, max_size=2, unique=True),
       how=st.sampled_from(["unknown_school", "duplicate_row", "bad_date"]))
def test_any_mix_of_good_and_bad_nurse_months_matches_one_at_a_time(city, paths, db, key, monkeypatch, tmp_path,
                                                                     broken, how):
    """Whatever files of a batch are broken, and however, the outcome per file and every staged
    row are those of the one-file path."""
    names = ["保健室来室_2025-04.csv", "保健室来室_2025-05.csv", "保健室来室_2025-06.csv", "保健室来室_2025-07.csv"]
    case = tmp_path / f"case-{len(list(tmp_path.iterdir()))}"
    case.mkdir()
    shutil.rmtree(paths.landing_dir(NURSE), ignore_errors=True)
    shutil.rmtree(paths.quarantine / NURSE, ignore_errors=True)
    db.execute(f"DROP TABLE IF EXISTS staging.{NURSE}")
    db.execute("DELETE FROM staging.file_manifest WHERE source_key = ?", [NURSE])
    db.execute("DELETE FROM staging._schema_versions WHERE source_key = ?", [NURSE])

    def land(p):
        for i, name in enumerate(names):
            land_real(city, p, NURSE, name)
            if i in broken:
                export = city.export(NURSE, name)
                if how == "unknown_school":
                    export = modified(export, 1, "学校コード", "B111222409999")
                elif how == "duplicate_row":
                    export = export.copy(rows=[*export.rows, list(export.rows[0])])
                else:
                    export = modified(export, 1, "来室日", "令和6年2月30日")
                export.write(p.landing_dir(NURSE) / name)

    batched, bstate, alone, astate = _batched_and_alone(city, paths, db, key, monkeypatch, case, NURSE, land)
    assert {f.file_name for f in batched.files if f.outcome == "rejected"} == {names[i] for i in broken}
    assert {f.encoding for f in batched.files if f.outcome == "applied"} == {"cp932"}
    if not broken:  # CP932 exports go through the batch too (read from a UTF-8 copy)
        assert [v.file_name for v in batched.validations] == [f"{names[0]} … {names[-1]} (4 files)"]
    _assert_same(bstate, astate)


def test_a_batch_of_form_months_keeps_the_latest_submissions_like_single_files(city, paths, db, key, monkeypatch,
                                                                               tmp_path):
    """Forms (row-level handling): a resubmission in one month and a stranger in another; the
    clean months go through the batch, and everything matches one file at a time."""
    mood = "mood_checkin"
    names = sorted(p.name for p in city.paths.landing_dir(mood).iterdir())[-4:]

    def land(p):
        for name in names:
            land_real(city, p, mood, name)
        form = city.export(mood, names[1])
        t, pupil = form.col("タイムスタンプ"), form.col("学籍番号")
        again = list(form.rows[4])
        again[t] = again[t].replace(" 7:", " 9:").replace(" 8:", " 9:")
        form.copy(rows=form.rows[:4] + [again] + form.rows[4:]).write(p.landing_dir(mood) / names[1])
        other = city.export(mood, names[2])
        stranger = list(other.rows[3])
        stranger[pupil] = "12345678"
        other.copy(rows=other.rows + [stranger]).write(p.landing_dir(mood) / names[2])

    batched, bstate, alone, astate = _batched_and_alone(city, paths, db, key, monkeypatch, tmp_path, mood, land)
    assert [f.outcome for f in batched.files] == ["applied"] * len(names)
    by_name = {f.file_name: f for f in batched.files}
    assert by_name[names[1]].drop_reasons.get("duplicate_submission") == 1
    assert by_name[names[2]].drop_reasons.get("unknown_pupil") == 1
    assert any("files)" in v.file_name for v in batched.validations)
    _assert_same(bstate, astate)


def _forget(db, paths, source):
    """A hypothesis example starts from the city's references only (the fixtures are shared)."""
    shutil.rmtree(paths.landing_dir(source), ignore_errors=True)
    shutil.rmtree(paths.quarantine / source, ignore_errors=True)
    db.execute(f"DROP TABLE IF EXISTS staging.{source}")
    for table in ("file_manifest", "_schema_versions", "file_coverage", "file_releases"):
        db.execute(f"DELETE FROM staging.{table} WHERE source_key = ?", [source])


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(broken=[2], correction="partial", stale=True)
@example(broken=[], correction="whole", stale=False)
@given(broken=st.lists(st.sampled_from(range(4)), min_size=0, max_size=2, unique=True),
       correction=st.sampled_from([None, "partial", "whole"]), stale=st.booleans())
def test_any_mix_of_attendance_deliveries_in_one_batch_matches_one_at_a_time(city, paths, db, key, monkeypatch,
                                                                              tmp_path, broken, correction, stale):
    """Official records of the whole batch are written at once when it commits, without the rows
    of a file that is not applied or that a later file of the batch replaced. Whatever the mix — broken months, a correction of one school or of a
    whole month landed with its original, an original older than a correction applied before
    (held) — every staged row, manifest row, quarantined and remaining file is what one file at
    a time gives."""
    case = tmp_path / f"case-{len(list(tmp_path.iterdir()))}"
    case.mkdir()
    _forget(db, paths, ATT)
    names = MONTHS[:4]
    if stale:  # a correction of the first month, exported a month later, applied in an earlier run
        first = city.export(ATT, names[0])
        later = modified(first, 3, "出欠", "病")
        later.write(paths.landing_dir(ATT) / names[0].replace(".csv", "_訂正.csv"), mtime=first.mtime + 30 * 86400)
        assert {f.outcome for f in _run(db, paths, key, ATT, batched=True, monkeypatch=monkeypatch).files} == {"applied"}

    def land(p):
        for i, name in enumerate(names):
            land_real(city, p, ATT, name)
            if i in broken:
                modified(city.export(ATT, name), K, "出欠", "遊び").write(p.landing_dir(ATT) / name)
        if correction:
            second = city.export(ATT, names[1])
            school = second.col("学校コード")
            rows = [list(r) for r in second.rows
                    if correction == "whole" or r[school] == second.rows[0][school]]
            rows[2][second.col("出欠")] = "事"
            second.copy(rows=rows).write(p.landing_dir(ATT) / names[1].replace(".csv", "_訂正.csv"),
                                         mtime=second.mtime + 7 * 86400)

    batched, bstate, alone, astate = _batched_and_alone(city, paths, db, key, monkeypatch, case, ATT, land)
    outcomes = {f.file_name: f.outcome for f in batched.files}
    assert {n for n, o in outcomes.items() if o == "rejected"} == {names[i] for i in broken}
    if stale and 0 not in broken:
        assert outcomes[names[0]] == "held"
    if correction and 1 not in broken:
        assert outcomes[names[1]] == ("superseded" if correction == "whole" else "applied")
    assert sorted(bstate[2]["quarantine"]) == sorted(
        [f"{names[i]}{x}" for i in broken for x in ("", ".reasons.json")]
        + ([f"{names[0]}{x}" for x in ("", ".reasons.json")] if stale and 0 not in broken else []))
    if not broken:  # the batch path was taken (with broken files, narrowing may leave single files)
        assert any("files)" in v.file_name for v in batched.validations)
    assert batched.rows_inserted == alone.rows_inserted and batched.rows_deleted == alone.rows_deleted
    _assert_same(bstate, astate)


def test_a_batch_that_fails_midway_leaves_no_trace_and_its_files_in_landing(city, paths, db, key, monkeypatch):
    """The files of a batch are applied in one transaction: a failure part-way (a crash, a full
    disk) rolls all of them back, and the file rejected before it is not moved to quarantine
    (the move waits for the commit), so the next run reads everything again."""
    names = MONTHS[:4]
    for name in names:
        land_real(city, paths, ATT, name)
    modified(city.export(ATT, names[1]), K, "出欠", "遊び").write(paths.landing_dir(ATT) / names[1])
    real_apply, calls = I._apply, []

    def failing(*args, **kwargs):
        calls.append(args[4].name)
        if len(calls) == 3:
            raise RuntimeError("the disk is full")
        return real_apply(*args, **kwargs)

    monkeypatch.setattr(I, "_apply", failing)
    with pytest.raises(RuntimeError, match="disk is full"):
        _run(db, paths, key, ATT, batched=True, monkeypatch=monkeypatch)
    assert calls == [names[0], names[2], names[3]]
    assert db.execute(f"SELECT count(*) FROM staging.{ATT}").fetchall()[0][0] == 0
    assert db.execute("SELECT count(*) FROM staging.file_manifest WHERE source_key = ?", [ATT]).fetchall()[0][0] == 0
    assert db.execute("SELECT count(*) FROM staging.file_coverage WHERE source_key = ?", [ATT]).fetchall()[0][0] == 0
    assert sorted(p.name for p in paths.landing_dir(ATT).iterdir()) == sorted(names)
    assert not (paths.quarantine / ATT).exists() or not any((paths.quarantine / ATT).iterdir())

    monkeypatch.setattr(I, "_apply", real_apply)
    report = _run(db, paths, key, ATT, batched=True, monkeypatch=monkeypatch)
    assert {f.file_name: f.outcome for f in report.files} == {**{n: "applied" for n in names}, names[1]: "rejected"}
    assert (paths.quarantine / ATT / names[1]).exists() and not (paths.landing_dir(ATT) / names[1]).exists()
    assert db.execute(f"SELECT count(*) FROM staging.{ATT}").fetchall()[0][0] == sum(
        f.rows_kept for f in report.files if f.outcome == "applied")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["p1", "p2", "p3", None]), st.integers(1, 4), st.integers(0, 1)),
                min_size=1, max_size=25))
def test_a_key_twice_within_a_file_is_found_and_only_then(rows):
    """The hash pre-check may only ever pass a batch without a repeated key (per file)."""
    from datetime import date

    spec = CATALOGUE["attendance_daily"]
    con = duckdb.connect()
    con.execute("CREATE TEMP TABLE _typed (pupil_id VARCHAR, date DATE, _file USMALLINT, _line INTEGER)")
    con.executemany("INSERT INTO _typed VALUES (?, ?, ?, ?)",
                    [[p, date(2024, 5, d), f, i + 2] for i, (p, d, f) in enumerate(rows)])
    twice = len({(p, d, f) for p, d, f in rows}) < len(rows)
    try:
        I._check_unique_key(con, spec, "出欠_2024-05.csv", within="_file")
        raised = False
    except I.IngestError as error:
        raised = True
        assert error.check == "unique_key"
    assert raised == twice


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["p1", "p2", "p3", None]), st.integers(1, 3), st.integers(0, 1),
                          st.one_of(st.none(), st.integers(0, 3))), min_size=1, max_size=25))
def test_the_latest_submission_wins_as_a_ranking_of_every_row_would_say(rows):
    """Only keys submitted more than once are ranked: the rows kept and the counts dropped per
    file are those of ranking every row (latest form timestamp, then the later line)."""
    from datetime import date, datetime

    spec = CATALOGUE["mood_checkin"]
    con = duckdb.connect()
    con.execute("CREATE TEMP TABLE _typed (pupil_id VARCHAR, checkin_date DATE, _file USMALLINT, _order TIMESTAMP, "
                "_line INTEGER)")
    con.executemany("INSERT INTO _typed VALUES (?, ?, ?, ?, ?)",
                    [[p, date(2024, 5, d), f, None if o is None else datetime(2024, 5, d, 7, o), i + 2]
                     for i, (p, d, f, o) in enumerate(rows)])
    keys = ", ".join(f'"{k}"' for k in (*spec.key_columns, "_file"))
    expected = con.execute(f"""SELECT _file, _line FROM _typed QUALIFY row_number() OVER (PARTITION BY {keys}
                               ORDER BY _order DESC NULLS LAST, _line DESC) = 1 ORDER BY ALL""").fetchall()
    dropped = I._latest_submission_wins(con, spec, within="_file")
    assert con.execute("SELECT _file, _line FROM _typed ORDER BY ALL").fetchall() == expected
    gone = collections.Counter(f for _, _, f, _ in rows)
    gone.subtract(f for f, _ in expected)
    assert dropped == {f: n for f, n in gone.items() if n}


def test_a_form_timestamp_is_converted_by_its_date_part_as_parsing_reads_the_whole():
    """Mood check-ins key their date map on the timestamp's date part (once per day, not per
    second); every value reads as the whole value would, and what parsing rejects stays rejected."""
    from toda_platform import parsing

    values = ["2023/04/06 7:40:00", "2023-04-06T07:40:00.5", "2023/4/6", "2023/4/6 7:40", "令和5年4月6日 7:40:00",
              "2023/04/06 7:40:00 ", "２０２３/04/06 7:40", "2023/04-06 7:40", "2023/02/30 8:00:00", " 2023/04/06 7:40"]
    con = duckdb.connect()
    con.execute("CREATE TABLE t (v VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?)", [[v] for v in values])
    parts = dict(con.execute(f"SELECT v, {I._date_part('v')} FROM t").fetchall())
    assert parts["2023/04/06 7:40:00"] == "2023/04/06" and parts["令和5年4月6日 7:40:00"] == "令和5年4月6日 7:40:00"

    def read(v):
        try:
            return parsing.parse_date(v)
        except parsing.ParseError:
            return "rejected"

    assert {v: read(parts[v]) for v in values} == {v: read(v) for v in values}


@settings(max_examples=40, deadline=None)
@given(source=st.sampled_from(["attendance_daily", "health_checkup", "infant_checkup"]),
       rows=st.lists(st.tuples(st.integers(0, 2), st.sampled_from([None, 1, 45, 200, 370]),
                               st.sampled_from([None, "A111222400001", "A111222400002"])), min_size=1, max_size=30))
def test_a_batch_counts_each_files_coverage_as_the_file_alone_would(source, rows):
    """A batch counts every file's (period, school) cells at once, over the distinct values of
    the columns the period reads; each file's cells are those ``_covered`` counts from its rows
    (NULL dates and schools, files in one cell or several, periods across a school year)."""
    from datetime import date, timedelta

    spec = CATALOGUE[source]
    day = next(c.staged_name for c in spec.staged_columns
               if c.kind in ("date", "timestamp_date") and c.staged_name in spec.period)
    school = "school_code" if any(c.staged_name == "school_code" for c in spec.staged_columns) else None
    con = duckdb.connect()
    con.execute(f'CREATE TABLE batch (_file USMALLINT, "{day}" DATE, school_code VARCHAR)')
    con.executemany("INSERT INTO batch VALUES (?, ?, ?)",
                    [[f, None if d is None else date(2024, 1, 1) + timedelta(days=d), s] for f, d, s in rows])
    if school is None:
        con.execute("ALTER TABLE batch DROP COLUMN school_code")
    ingest_batch.coverage(con, spec, "batch", "cov")
    for f in sorted({r[0] for r in rows}):
        con.execute(f"CREATE OR REPLACE TEMP TABLE _typed AS SELECT *, ({spec.period})::VARCHAR AS _period "
                    f"FROM batch WHERE _file = {f}")
        I._covered(con, spec)
        alone = sorted(con.execute("SELECT * FROM _cov").fetchall(), key=str)
        I._covered(con, spec, f"cov WHERE _file = {f}")
        assert sorted(con.execute("SELECT * FROM _cov").fetchall(), key=str) == alone


def test_the_gate_reads_each_columns_distinct_values_from_the_value_maps_exactly(city, paths, db, key, monkeypatch):
    """A batch of official records hands Great Expectations each mapped column's distinct values
    from its value map instead of scanning every row: the same set, NULL included exactly when a
    row has none (a blank optional value, free text not kept, a total row dropped)."""
    import quality

    def land(p):
        for name in MONTHS[:3]:
            land_real(city, p, ATT, name)
        month = city.export(ATT, MONTHS[1])
        month = modified(month, 4, "理由", "田中さんと喧嘩した")  # free text: counted, stored as NULL
        month.copy(rows=[*month.rows, ["合計"] + [""] * (len(month.header) - 1)]).write(p.landing_dir(ATT) / MONTHS[1])

    real, compared = quality.check_batch, []

    def comparing(spec, con, table, ctx, distinct=None, frames=None, rows=None):
        def values(sql):
            return sorted(con.execute(f"SELECT * FROM {sql}").fetchall(), key=repr)

        for column, query in (distinct or {}).items():
            assert values(query) == values(f'(SELECT DISTINCT "{column}" FROM {table})'), column
            compared.append(column)
        for rule in quality.rules.row_rules(spec):  # each rule's frame as the typed rows would give it
            if rule.gx_column in (frames or {}):
                frame = quality.suites._rule_frame(con, spec, frames[rule.gx_column], rule)
                whole = quality.suites._rule_frame(con, spec, table, rule)
                if rule.by_school_year:  # only the school year of the date matters (each file's first date)
                    year = rule.inputs[0]
                    for f in (frame, whole):
                        f[year] = quality.rules.school_years_of(f[year])
                key = list(rule.columns)
                def combos(f):
                    return sorted(map(tuple, f[key].astype(str).itertuples(index=False)))

                assert combos(frame) == combos(whole), rule.check
                compared.append(rule.gx_column)
        if rows is not None:
            assert rows == con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        return real(spec, con, table, ctx, distinct, frames, rows)

    monkeypatch.setattr(quality, "check_batch", comparing)
    land(paths)
    report = _run(db, paths, key, ATT, batched=True, monkeypatch=monkeypatch)
    assert [f.outcome for f in report.files] == ["applied"] * 3
    assert report.files[1].drop_reasons.get("unmapped_text:sub_reason") == 1
    assert {"date", "school_code", "pupil_id", "status", "room", "sub_reason",
            "chk__known_pupil__pupil_id", "chk__known_school__school_code", "chk__no_weekend__date"} <= set(compared)


class _Recording:
    """A connection that remembers every statement it runs (ingest_source takes any connection)."""

    def __init__(self, con):
        self._con, self.statements = con, []

    def execute(self, sql, *args, **kwargs):
        self.statements.append(" ".join(sql.split()))
        result = self._con.execute(sql, *args, **kwargs)
        return self if result is self._con else result

    def __getattr__(self, name):
        return getattr(self._con, name)


def test_a_batch_writes_its_rows_once_after_every_delete_and_never_the_replaced_ones(city, paths, db, key,
                                                                                      monkeypatch):
    """A whole-month correction landed with its original in one batch: the batch's rows are
    written by a single INSERT, after every DELETE of the transaction (DuckDB writes all the rows
    of a transaction again at COMMIT when a DELETE hits rows written in it: 14 s of CPU on the
    bench's 13.6 M rows), and the original's replaced rows are never written at all."""
    names = MONTHS[:3]
    for name in names:
        land_real(city, paths, ATT, name)
    second = city.export(ATT, names[1])
    rows = [list(r) for r in second.rows]
    rows[2][second.col("出欠")] = "事"
    second.copy(rows=rows).write(paths.landing_dir(ATT) / names[1].replace(".csv", "_訂正.csv"),
                                 mtime=second.mtime + 7 * 86400)
    con = _Recording(db)
    report = _run(con, paths, key, ATT, batched=True, monkeypatch=monkeypatch)
    outcomes = {f.file_name: f.outcome for f in report.files}
    assert outcomes == {**{n: "applied" for n in names}, names[1]: "superseded",
                        names[1].replace(".csv", "_訂正.csv"): "applied"}
    on_table = [s for s in con.statements if f"staging.{ATT} " in s + " " and s.split()[0] in ("INSERT", "DELETE")]
    inserts = [i for i, s in enumerate(on_table) if s.startswith("INSERT")]
    assert len(inserts) == 1 and inserts[0] == len(on_table) - 1, on_table  # one INSERT, after every DELETE
    assert con.statements[con.statements.index(on_table[-1]) + 1] == "COMMIT"
    original = next(f for f in report.files if f.file_name == names[1])
    assert db.execute(f"SELECT count(*) FROM staging.{ATT} WHERE _file_sha256 = ?", [original.sha256]).fetchall()[0][0] == 0
    assert report.rows_deleted == original.rows_kept  # counted as replaced, as one file at a time counts it
    assert db.execute(f"SELECT count(*) FROM staging.{ATT}").fetchall()[0][0] == sum(
        f.rows_kept for f in report.files if f.outcome == "applied")


def test_a_file_withdrawn_from_a_batch_is_never_written():
    """``Open``: a file withdrawn (rejected, held, read again by itself) leaves the pending rows;
    a later file's cells taken from a pending file leave exactly its rows there out."""
    con = duckdb.connect()
    con.execute("CREATE TEMP TABLE batch_typed_0_cov (_file USMALLINT, _cov_period VARCHAR, _cov_scope VARCHAR, "
                "_cov_rows INTEGER)")
    con.execute("INSERT INTO batch_typed_0_cov VALUES (0, '2024-05', 'A', 10), (3, '2024-05', 'A', 7), "
                "(3, '2024-05', 'B', 5), (3, '2024-06', 'A', 2)")
    con.execute(f"CREATE TEMP TABLE batch_typed_0{ingest_batch.EXCLUDED} (_file USMALLINT, _cov_period VARCHAR, "
                f"_cov_scope VARCHAR)")
    tx = ingest_batch.Open(CATALOGUE[ATT], pending={"a" * 64: ("batch_typed_0", 0), "b" * 64: ("batch_typed_0", 3)})
    tx.withdraw(None, "a" * 64)
    tx.withdraw(None, "c" * 64)  # never pending: nothing to do
    assert tx.pending == {"b" * 64: ("batch_typed_0", 3)}
    assert tx.count(con, "b" * 64) == 14
    con.execute("CREATE TEMP TABLE _cov AS SELECT '2024-05' AS _cov_period, 'B' AS _cov_scope UNION ALL "
                "SELECT '2024-07', 'A'")
    assert tx.take(con, "b" * 64, "_cov") == 5
    assert tx.take(con, "b" * 64, "_cov") == 0  # taken already
    assert tx.count(con, "b" * 64) == 9


_DAYS = ["2024/5/1", "2024/05/01", "2024-05-02", "2024/5/7", None]  # two ways of writing one day
_PUPILS = ["00012345", "００012345", "12345", " 12345", "00067890", None]  # full width and spaces: one pupil each
_STATUS = ["出", "出席", "病", None]
_REASONS = [None, "発熱", "熱", "田中さんと喧嘩した"]  # free text: not kept (typed NULL)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from(_DAYS), st.sampled_from(["B111222400001", None]),
                          st.sampled_from(_PUPILS), st.sampled_from(_STATUS), st.sampled_from(_REASONS),
                          st.sampled_from([None, "blank_row"])), min_size=1, max_size=30))
def test_a_records_batch_checks_its_raw_rows_as_the_typed_rows_would_say(rows):
    """A batch of official records is never typed into a table of its own: its blanks, repeated
    keys and per-file groups (coverage, dates, the gate's rule frames) are counted on the raw rows
    and the value maps. Whatever the values — one day or one pupil written two ways (a map that
    is not one-to-one), free text mapped to nothing, blanks, rows dropped — each answer is what the
    typed rows themselves give."""
    import quality

    spec = CATALOGUE[ATT]
    headers = ["日付", "学校コード", "学籍番号", "出欠", "登校形態", "理由"]
    positions, _ = I.map_headers(spec, headers, "出欠_2024-05.csv")
    con = duckdb.connect()
    con.execute("CREATE TEMP TABLE _raw (c0 VARCHAR, c1 VARCHAR, c2 VARCHAR, c3 VARCHAR, c4 VARCHAR, c5 VARCHAR, "
                "_drop VARCHAR, _file USMALLINT)")
    con.executemany("INSERT INTO _raw VALUES (?, ?, ?, ?, NULL, ?, ?, ?)",
                    [[d, s, p, st_, r, drop, f] for f, d, s, p, st_, r, drop in rows])
    con.execute("CREATE TEMP TABLE _bfiles AS SELECT DISTINCT _file, 0::BIGINT AS _first FROM _raw")
    sets = ingest_batch._Sets(con, "_raw", ingest_batch._wanted_sets(spec, positions))
    typing = I._typed_select(con, spec, "batch", positions, headers, b"k" * 32, "0", maps="bt_m", kept=sets.kept)
    ingest_batch.typed_view(con, spec, typing, "_raw", "_bfiles", "bt")
    kept = [r for r in rows if r[6] is None]

    present = [c.staged_name for c in spec.staged_columns]
    plain = ingest_batch._plain(con, spec, typing)
    exact = dict(zip(present, con.execute(
        "SELECT " + ", ".join(f'count(*) FILTER ("{c}" IS NULL)' for c in present) + " FROM bt").fetchall()[0]))
    assert ingest_batch._blanks(con, spec, typing, plain, sets, "bt") == exact
    assert exact["sub_reason"] == sum(1 for r in kept if r[5] not in ("発熱", "熱"))

    for columns in (["date", "school_code"], ["pupil_id"], ["date"], ["room"], ["status", "sub_reason"]):
        ingest_batch._groups(con, typing, columns, sets, "g")  # the last one not among the sets counted
        cols = ", ".join(f'"{c}"' for c in columns)
        assert sorted(con.execute(f"SELECT _file, {cols}, _n FROM g").fetchall(), key=repr) == sorted(
            con.execute(f"SELECT _file, {cols}, count(*) FROM bt GROUP BY ALL").fetchall(), key=repr)

    twice = con.execute('SELECT count(*) FROM (SELECT 1 FROM bt GROUP BY _file, pupil_id, "date" '
                        'HAVING count(*) > 1)').fetchall()[0][0] > 0
    try:
        ingest_batch._unique_keys(con, spec, "batch", {}, typing, plain, "_raw", "bt", 3)
        raised = False
    except I.IngestError as error:
        raised = True
        assert error.check == "unique_key"
    assert raised == twice

    distinct = ingest_batch._distinct_values(con, spec, positions, typing, sets, {c: bool(n) for c, n in exact.items()})
    for column in present:
        assert sorted(con.execute(f"SELECT * FROM {distinct[column]}").fetchall(), key=repr) == sorted(
            con.execute(f'SELECT DISTINCT "{column}" FROM bt').fetchall(), key=repr), column
    for rule, relation in ingest_batch._rule_frames(con, spec, typing, sets, distinct).items():
        rule = next(r for r in quality.rules.row_rules(spec) if r.gx_column == rule)
        frames = [quality.suites._rule_frame(con, spec, relation, rule), quality.suites._rule_frame(con, spec, "bt", rule)]
        if rule.by_school_year:  # what such a rule reads of the date: its school year
            for f in frames:
                f[rule.inputs[0]] = quality.rules.school_years_of(f[rule.inputs[0]])
        got, want = ({tuple(map(str, t)) for t in f[list(rule.columns)].itertuples(index=False)} for f in frames)
        assert got == want, rule.check
