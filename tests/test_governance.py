"""Governance (issue 14): purpose limitation at load, the notice and the register from the
catalogue, retention and erasure over a small real ingestion."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import os
import shutil
import sqlite3

import dagster as dg
import duckdb
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.conftest import write_csv
from toda_platform.catalogue import PURPOSES
from toda_platform.city import load_city
from toda_platform.governance import documents, erasure, purposes, retention
from toda_platform.governance.csvfiles import records, without
from toda_platform.identity import IdentityStore
from toda_platform.ingest import ingest_source
from toda_platform.pseudonym import pseudonymise

CATALOGUE = load_city("toda").specs  # Toda's specs: what each source means and how Toda writes it

# ---------------------------------------------------------------------------------------------
# 1. purposes
# ---------------------------------------------------------------------------------------------


def _all_assets():
    from toda_platform.definitions import build_definitions

    return list(build_definitions().assets)


def test_every_source_states_purposes_basis_and_retention():
    for key, spec in CATALOGUE.items():
        assert spec.use.purposes and set(spec.use.purposes) <= set(PURPOSES), key
        assert "法" in spec.use.legal_basis or not spec.use.personal, key
        assert spec.use.retention_years >= 1 and "年" in spec.use.retention_ja, key


def test_the_platforms_own_definitions_respect_every_purpose():
    assets = _all_assets()
    assert purposes.violations(assets) == []
    used = purposes.output_purposes(assets)
    # the risk list reads (through the marts) the welfare sources; the karte reads teacher data
    assert "infant_checkup" in used["outputs/risk_scores"]["sources"]
    assert used["outputs/school_karte"]["purposes"] == ("school_improvement",)
    assert "teacher_stress_check" in used["outputs/school_karte"]["sources"]


def test_a_mismatched_output_is_refused_naming_asset_source_and_path():
    from assets.marts import AGGREGATES_KEY

    @dg.asset(key=["outputs", "poverty_by_teacher_stress"], deps=[AGGREGATES_KEY],
              metadata={purposes.METADATA_KEY: "hardship_screening"})
    def bad():
        return None

    with pytest.raises(purposes.PurposeError) as refused:
        purposes.check_purposes([*_all_assets(), bad])
    text = str(refused.value)
    assert "outputs/poverty_by_teacher_stress" in text
    for source in ("teacher_stress_check", "teacher_survey", "teacher_overtime"):
        assert f"uses source {source} " in text
    assert "marts/school_aggregates" in text  # the path through the lineage
    assert "school_context" not in text.split("\n", 1)[1]  # allowed for every purpose: not listed


def test_the_definitions_refuse_to_load(monkeypatch):
    from toda_platform.definitions import build_definitions

    monkeypatch.setitem(purposes.OUTPUT_PURPOSES, "outputs/school_karte", ("hardship_screening",))
    with pytest.raises(purposes.PurposeError, match=r"outputs/school_karte .* teacher_overtime"):
        build_definitions()


def test_a_bundle_of_purposes_may_read_a_source_for_one_of_them_only():
    """The portal's snapshot bundles the list and the karte: teacher data (school improvement
    only) may reach it for the karte; a bundle none of whose purposes a source allows may not."""
    from assets.marts import AGGREGATES_KEY

    def bundle(*declared):
        @dg.asset(key=["outputs", "bundle"], deps=[AGGREGATES_KEY],
                  metadata={purposes.METADATA_KEY: ", ".join(declared)})
        def made():
            return None
        return made

    assert purposes.violations([*_all_assets(), bundle("early_support", "school_improvement")]) == []
    refused = purposes.violations([*_all_assets(), bundle("early_support", "hardship_screening")])
    assert {p.split(" uses source ")[1].split(" ")[0] for p in refused} == {
        "teacher_stress_check", "teacher_survey", "teacher_overtime"}
    assert "serving/snapshot" in purposes.output_purposes(_all_assets())


def test_an_output_reading_sources_without_a_purpose_is_refused():
    @dg.asset(key=["outputs", "anonymous"], deps=[dg.AssetKey(["staging", "mood_checkin"])])
    def no_purpose():
        return None

    problems = purposes.violations([*_all_assets(), no_purpose])
    assert len(problems) == 1 and "outputs/anonymous" in problems[0] and "declares no purpose" in problems[0]


# ---------------------------------------------------------------------------------------------
# 2-3. notice and register
# ---------------------------------------------------------------------------------------------


def test_notice_lists_every_source_role_purpose_and_contact():
    from portal.roles import roles

    html = documents.notice_html()
    for spec in CATALOGUE.values():
        assert spec.title_ja in html, spec.key
        assert spec.use.retention_ja in html, spec.key
    for role in roles().values():
        assert role.label in html
    for label in PURPOSES.values():
        assert label in html
    assert documents.contact()["office"] == "戸田市教育委員会 教育政策室"
    assert documents.contact()["office"] in html and "@media print" in html and "@page" in html
    assert "住所" in html  # said not to be taken in
    # each legal basis is stated once, with the sources it covers
    assert html.count("第69条第2項第3号") == 1 and html.count("同法第62条") == 0
    assert html.count("個人情報の保護に関する法律第62条") == 1
    assert html.count("（地方教育行政の組織及び運営に関する法律第21条）") == 2  # with and without 第62条


def test_register_holds_every_source_with_the_fields_the_law_names(tmp_path):
    written = documents.write_documents(tmp_path)
    assert {p.name for p in written} == {"notice.html", "register.html", "register.csv"}
    rows = list(csv.DictReader(io.StringIO((tmp_path / "register.csv").read_text(encoding="utf-8-sig"))))
    assert [r["データ名（システム）"] for r in rows] == list(CATALOGUE)  # a missing source fails here
    for r, spec in zip(rows, CATALOGUE.values()):
        for field in ("個人情報ファイルの名称", "個人情報ファイルの利用目的", "記録項目", "記録範囲",
                      "記録情報の収集方法", "保有期間", "記録情報の経常的提供先"):
            assert r[field], (spec.key, field)
        assert r["保有期間"] == spec.use.retention_ja
    by_key = {r["データ名（システム）"]: r for r in rows}
    assert "仮の番号" in by_key["attendance_daily"]["記録項目"]
    assert "住所" not in by_key["pupil_registry"]["記録項目"]  # never read, never recorded
    assert by_key["health_checkup"]["要配慮個人情報が含まれるときは、その旨"].startswith("含む")
    assert by_key["teacher_overtime"]["区分"] == documents.NOT_PERSONAL
    html = (tmp_path / "register.html").read_text(encoding="utf-8")
    for spec in CATALOGUE.values():
        assert spec.title_ja in html


@pytest.mark.django_db
def test_the_portal_serves_the_notice_without_login(client):
    response = client.get("/notice/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "児童生徒の情報の使い方について" in body and CATALOGUE["mood_checkin"].title_ja in body
    assert "portal/notice.css" in body and "<style>" not in body  # the CSP allows no inline style


# ---------------------------------------------------------------------------------------------
# A small real city: registries, attendance and infant checkups landed and ingested
# ---------------------------------------------------------------------------------------------

ELEM = "B211222400015"
REG_HEADER = ["年度", "学籍番号", "宛名番号", "氏名", "ふりがな", "生年月日", "性別", "学校コード", "学年",
              "組", "出席番号", "住所", "転入日", "転出日"]
ATT_HEADER = ["日付", "学校コード", "学籍番号", "出欠", "登校形態", "理由"]
INFANT_HEADER = ["宛名番号", "氏名", "生年月日", "健診種別", "健診日", "受診状況", "発達", "言語", "視聴覚",
                 "歯科", "要精密"]
TARGET = ("20170001", "1000000001", "髙橋 一郎", "たかはし いちろう")
OTHERS = [("20170002", "1000000002", "山﨑 花子", "やまさき はなこ"),
          ("20170003", "1000000003", "佐藤 次郎", "さとう じろう")]


def _ts(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, 12).timestamp()


def _registry(year: int, pupils) -> list[list[str]]:
    return [[str(year), n, r, name, kana, "2012-05-03", "男", ELEM, str(year - 2018), "1", str(i + 1), "戸田市1-2-3",
             "", ""] for i, (n, r, name, kana) in enumerate(pupils)]


def _attendance(days, pupils) -> list[list[str]]:
    return [[d.strftime("%Y/%m/%d"), ELEM, n, "出" if i else "病", "", ""] for d in days for i, (n, *_r) in
            enumerate(pupils)]


def _land_city(paths):
    pupils = [TARGET, *OTHERS]
    write_csv(paths.landing_dir("pupil_registry") / "学齢簿_2019.csv", REG_HEADER, _registry(2019, pupils),
              encoding="cp932", mtime=_ts(dt.date(2019, 4, 2)))
    write_csv(paths.landing_dir("pupil_registry") / "学齢簿_2024.csv", REG_HEADER, _registry(2024, pupils),
              encoding="cp932", mtime=_ts(dt.date(2024, 4, 2)))
    write_csv(paths.landing_dir("attendance_daily") / "出欠_2019-06.csv", ATT_HEADER,
              _attendance([dt.date(2019, 6, 3), dt.date(2019, 6, 4)], pupils), mtime=_ts(dt.date(2019, 7, 1)))
    write_csv(paths.landing_dir("attendance_daily") / "出欠_2024-04.csv", ATT_HEADER,
              _attendance([dt.date(2024, 4, 8), dt.date(2024, 4, 9)], pupils), mtime=_ts(dt.date(2024, 5, 1)))
    write_csv(paths.landing_dir("infant_checkup") / "乳幼児健診_2013.csv", INFANT_HEADER,
              [[r, name, "2012-05-03", "1歳6か月", "2013-11-05", "受診", "所見なし", "所見なし", "所見なし",
                "所見なし", "無"] for _n, r, name, _k in pupils], encoding="cp932", mtime=_ts(dt.date(2014, 4, 2)))


def _ingest_all(con, paths, key):
    for source in ("pupil_registry", "attendance_daily", "infant_checkup"):
        report = ingest_source(con, CATALOGUE[source], paths, key)
        assert all(f.outcome in ("applied", "duplicate") for f in report.files), \
            [(f.file_name, f.outcome, f.message) for f in report.files]


def _derived_tables(con, key):
    """Stand-ins for the marts and outputs: one row per pupil and as-of date."""
    ids = [pseudonymise(key, n) for n, *_ in [TARGET, *OTHERS]]
    con.execute("CREATE SCHEMA IF NOT EXISTS marts; CREATE SCHEMA IF NOT EXISTS outputs")
    con.execute("CREATE TABLE marts.pupil_features (pupil_id VARCHAR, as_of_date DATE, att_days INTEGER)")
    con.execute("CREATE TABLE outputs.risk_scores (pupil_id VARCHAR, as_of_date DATE, score DOUBLE)")
    for d in (dt.date(2019, 6, 3), dt.date(2024, 5, 1)):
        for i, p in enumerate(ids):
            con.execute("INSERT INTO marts.pupil_features VALUES (?, ?, ?)", [p, d, i])
            con.execute("INSERT INTO outputs.risk_scores VALUES (?, ?, ?)", [p, d, i / 10])
    con.execute("CREATE VIEW marts.cohort AS SELECT * FROM marts.pupil_features")
    return ids


# ---------------------------------------------------------------------------------------------
# 4. retention
# ---------------------------------------------------------------------------------------------

TODAY = dt.date(2026, 11, 30)  # attendance and registry: 6 years → rows known before 2020-11-30 go


def _counts(con):
    return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in
            ("staging.pupil_registry", "staging.attendance_daily", "staging.infant_checkup",
             "marts.pupil_features", "outputs.risk_scores")}


def test_retention_drops_exactly_the_expired_rows_and_files(paths, con, key):
    _land_city(paths)
    _ingest_all(con, paths, key)
    _derived_tables(con, key)
    before = _counts(con)
    assert before == {"staging.pupil_registry": 6, "staging.attendance_daily": 12, "staging.infant_checkup": 3,
                      "marts.pupil_features": 6, "outputs.risk_scores": 6}
    kept_rows = con.execute("SELECT * FROM staging.attendance_daily WHERE known_date >= DATE '2020-11-30' "
                            "ORDER BY ALL").fetchall()
    files_before = sorted(p for p in paths.home.rglob("*.csv"))

    # the dry run says what would go and changes nothing
    dry = retention.plan(con, paths, TODAY)
    by_table = {t.table: t.rows for t in dry.tables}
    assert by_table["staging.attendance_daily"] == 6 and by_table["staging.pupil_registry"] == 3
    assert by_table["staging.infant_checkup"] == 0  # 16 years
    assert by_table["marts.pupil_features"] == 3 and by_table["outputs.risk_scores"] == 3
    doomed = sorted(p for f in dry.files for _k, p in f.paths)
    assert {p.parent.name for p in doomed} == {"pupil_registry", "attendance_daily"}
    assert len(doomed) == 4  # the 2019 registry and June 2019 attendance: archive + landing copies
    assert all(p.name in ("学齢簿_2019.csv", "出欠_2019-06.csv") or p.parent.parent == paths.archive for p in doomed)
    assert _counts(con) == before and sorted(paths.home.rglob("*.csv")) == files_before
    assert dry.identity_years == [2019] and dry.identity_rows == 3
    store = IdentityStore(paths.identity)
    assert store.count() == 6

    retention.apply(con, paths, retention.plan(con, paths, TODAY))
    after = _counts(con)
    assert after == {"staging.pupil_registry": 3, "staging.attendance_daily": 6, "staging.infant_checkup": 3,
                     "marts.pupil_features": 3, "outputs.risk_scores": 3}
    assert con.execute("SELECT * FROM staging.attendance_daily ORDER BY ALL").fetchall() == kept_rows
    assert con.execute("SELECT min(as_of_date) FROM marts.pupil_features").fetchone()[0] == dt.date(2024, 5, 1)
    assert sorted(paths.home.rglob("*.csv")) == sorted(set(files_before) - set(doomed))
    expired = con.execute("SELECT file_name, archive_path FROM staging.file_manifest WHERE outcome = 'expired' "
                          "ORDER BY 1").fetchall()
    assert expired == [("出欠_2019-06.csv", None), ("学齢簿_2019.csv", None)]
    logged = con.execute("SELECT kind, object, removed FROM governance.retention_log ORDER BY ALL").fetchall()
    assert ("rows", "staging.attendance_daily", 6) in logged and ("rows", "marts.pupil_features", 3) in logged
    assert sum(1 for k, *_ in logged if k == "file") == 2
    assert store.count() == 3 and {r.school_year for r in store.for_school(ELEM, 2024)} == {2024}
    assert store.for_school(ELEM, 2019) == [] and ("identity", "identity store, school years 2019", 3) in logged
    # nothing left to do, and a later ingestion neither fails nor brings anything back
    assert retention.plan(con, paths, TODAY).rows == 0 and retention.plan(con, paths, TODAY).files == []
    _ingest_all(con, paths, key)
    assert _counts(con) == after


# ---------------------------------------------------------------------------------------------
# 5. erasure
# ---------------------------------------------------------------------------------------------


def _portal_db(paths, ids):
    """A stand-in for the portal's database: support entries recorded for these pupils."""
    (paths.home / "portal").mkdir()
    db = sqlite3.connect(paths.home / "portal" / "portal.sqlite3")
    db.execute("CREATE TABLE portal_supportentry (id INTEGER PRIMARY KEY, pupil_id TEXT, action TEXT)")
    db.executemany("INSERT INTO portal_supportentry (pupil_id, action) VALUES (?, 'home_visit')", [[p] for p in ids])
    db.commit()
    db.close()


def _portal_ids(paths):
    db = sqlite3.connect(paths.home / "portal" / "portal.sqlite3")
    try:
        return sorted(r[0] for r in db.execute("SELECT pupil_id FROM portal_supportentry"))
    finally:
        db.close()


def _snapshot(paths, ids):
    paths.serving.mkdir(parents=True)
    snap = paths.serving / "snapshot_20241105_1.duckdb"
    s = duckdb.connect(str(snap))
    s.execute("CREATE TABLE risk_list (pupil_id VARCHAR, school_code VARCHAR, score DOUBLE)")
    s.executemany("INSERT INTO risk_list VALUES (?, ?, ?)", [[p, ELEM, 0.5] for p in ids])
    s.execute("CREATE TABLE meta (as_of_date DATE)")
    s.execute("INSERT INTO meta VALUES (DATE '2024-11-05')")
    s.close()
    os.chmod(snap, 0o440)
    os.symlink(snap.name, paths.serving / "current")


def _needles(key) -> dict[str, list[bytes]]:
    number, resident, name, kana = TARGET
    values = [pseudonymise(key, number), pseudonymise(key, resident), number, resident, name, kana]
    out = {}
    for v in values:
        encoded = {v.encode("utf-8")}
        try:
            encoded.add(v.encode("cp932"))
        except UnicodeEncodeError:
            pass
        out[v] = sorted(encoded)
    return out


def _traces(paths, key) -> list[str]:
    """Every place under the home where the pupil's pseudonyms, numbers or name still appear:
    each DuckDB and SQLite table cell, and the raw bytes of every other file."""
    needles = _needles(key)
    found = []
    for p in sorted(paths.home.rglob("*")):
        if not p.is_file() or p.is_symlink():
            continue
        if p.suffix == ".duckdb":
            c = duckdb.connect(str(p), read_only=True) if p != paths.warehouse else duckdb.connect(str(p))
            try:
                for schema, table in c.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall():
                    cells = c.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall()
                    text = "\x1f".join(str(v) for row in cells for v in row)
                    found += [f"{p.name}:{schema}.{table}:{n}" for n in needles if n in text]
            finally:
                c.close()
        elif p.suffix in (".sqlite", ".sqlite3"):
            c = sqlite3.connect(p)
            try:
                for (table,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                    text = "\x1f".join(str(v) for row in c.execute(f'SELECT * FROM "{table}"') for v in row)
                    found += [f"{p.name}:{table}:{n}" for n in needles if n in text]
            finally:
                c.close()
        data = p.read_bytes()
        found += [f"{p.relative_to(paths.home)} (bytes):{n}" for n, forms in needles.items()
                  if any(f in data for f in forms)]
    return found


def test_erasure_leaves_no_trace_and_a_rebuild_keeps_the_pupil_out(paths, con, key):
    _land_city(paths)
    originals = {p.name: p.read_bytes() for p in paths.landing.rglob("*.csv")}
    _ingest_all(con, paths, key)
    ids = _derived_tables(con, key)
    _snapshot(paths, ids)
    _portal_db(paths, ids)
    paths.exports.mkdir()
    (paths.exports / "case_list_B2.csv").write_text(
        "仮名ID,氏名\n" + "".join(f"{p},{n[2]}\n" for p, n in zip(ids, [TARGET, *OTHERS])), encoding="utf-8")
    (paths.mlflow_artifacts / "1").mkdir(parents=True)
    (paths.mlflow_artifacts / "1" / "scores.json").write_text(f'{{"top": ["{ids[0]}", "{ids[1]}"]}}')
    others_before = con.execute("SELECT count(*) FROM staging.attendance_daily WHERE pupil_id <> ?",
                                [ids[0]]).fetchone()[0]
    assert len(_traces(paths, key)) > 10  # the scan does see the pupil before erasure

    for bad_reason in (f"request about {TARGET[0]}", f"{TARGET[2]}の保護者から", " "):
        with pytest.raises(erasure.ErasureError):
            erasure.erase(con, paths, key, TARGET[0], bad_reason)
    assert not erasure.erased_file(paths).exists()  # refused before anything changed
    report = erasure.erase(con, paths, key, "２０１７０００１", "保護者からの削除請求（受付番号 2026-15）")
    con.close()
    erasure.compact(paths.warehouse)

    assert report.rows["staging.pupil_registry"] == 2 and report.rows["staging.attendance_daily"] == 4
    assert report.rows["staging.infant_checkup"] == 1 and report.rows["marts.pupil_features"] == 2
    assert report.files_rewritten == 5 and report.snapshots_rewritten == 1 and report.identity_rows == 2
    assert report.portal_rows == 1 and _portal_ids(paths) == sorted(ids[1:])
    assert set(report.scrubbed) == {"exports/case_list_B2.csv", "mlartifacts/1/scores.json"}
    assert _traces(paths, key) == []

    w = duckdb.connect(str(paths.warehouse))
    try:
        # everyone else is untouched, and the manifest, archive and staged rows agree
        assert w.execute("SELECT count(*) FROM staging.attendance_daily").fetchone()[0] == others_before
        applied = w.execute("SELECT sha256, archive_path, source_key FROM staging.file_manifest "
                            "WHERE outcome = 'applied'").fetchall()
        for sha, archive_path, source in applied:
            assert hashlib.sha256(open(archive_path, "rb").read()).hexdigest() == sha
            staged_shas = {s for (s,) in w.execute(f"SELECT DISTINCT _file_sha256 FROM staging.{source}").fetchall()}
            assert sha in staged_shas
        log = w.execute("SELECT token, reason, rows_removed, files_rewritten FROM governance.erasure_log").fetchall()
        assert log == [(erasure.token(ids[0]), "保護者からの削除請求（受付番号 2026-15）", report.rows_removed, 5)]
        assert w.execute("SELECT count(*) FROM governance.erasure_files").fetchone()[0] == 5
        # the schema survived the compaction (views, and the primary key ingestion relies on)
        assert w.execute("SELECT count(*) FROM marts.cohort").fetchone()[0] == 4
        assert w.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = '_schema_versions' "
                         "AND constraint_type = 'PRIMARY KEY'").fetchone()[0] == 1
    finally:
        w.close()
    current = (paths.serving / "current").resolve()
    assert current.exists() and "_e" in current.name
    snap = duckdb.connect(str(current), read_only=True)
    assert snap.execute("SELECT count(*) FROM risk_list").fetchone()[0] == 2
    snap.close()
    assert IdentityStore(paths.identity).lookup(ids[1:]).keys() == set(ids[1:])

    # the next scan sees the rewritten landing copies as the same landings: nothing happens
    con = duckdb.connect(str(paths.warehouse))
    _ingest_all(con, paths, key)
    assert con.execute("SELECT count(*) FROM staging.file_manifest WHERE outcome = 'applied'").fetchone()[0] == 5
    # a department re-sends its original exports, with the pupil in them
    for name, data in originals.items():
        source = next(k for k in ("pupil_registry", "attendance_daily", "infant_checkup")
                      if name.startswith(("学齢簿", "出欠", "乳幼児")[("pupil_registry", "attendance_daily",
                                                                    "infant_checkup").index(k)]))
        (paths.landing_dir(source) / f"resent_{name}").write_bytes(data)
    _ingest_all(con, paths, key)
    con.close()
    # kept out of staging, and the copies archived (and left in landing) are rewritten as well
    assert _traces(paths, key) == []
    assert all(len(list(paths.landing_dir(s).glob("resent_*"))) for s in ("pupil_registry", "infant_checkup"))

    # a warehouse rebuilt from nothing, from everything in landing, keeps the pupil out too
    for p in (paths.warehouse, paths.identity, paths.archive):
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    for p in paths.landing.rglob("resent_*"):
        p.unlink()
    for name, data in originals.items():  # only the originals, as the department first sent them
        for folder in paths.landing.iterdir():
            if (folder / name).exists():
                (folder / name).write_bytes(data)
    con = duckdb.connect(str(paths.warehouse))
    _ingest_all(con, paths, key)
    rows = con.execute("SELECT count(*) FROM staging.pupil_registry").fetchone()[0]
    erased_rows = con.execute("SELECT sum(json_extract(drop_reasons, '$.erased')::INT) FROM staging.file_manifest"
                              ).fetchone()[0]
    con.close()
    assert rows == 4 and erased_rows == 2 + 4 + 1
    assert _traces(paths, key) == []


# ---------------------------------------------------------------------------------------------
# 6. keys
# ---------------------------------------------------------------------------------------------


def test_outside_demo_mode_the_platform_refuses_a_weak_or_missing_key(paths, monkeypatch):
    from resources.toda import TodaHome
    from toda_platform.definitions import build_definitions
    from toda_platform.pseudonym import MIN_KEY_BYTES, MissingKeyError, WeakKeyError

    monkeypatch.setenv("TODA_DEMO", "0")
    monkeypatch.setenv("TODA_PSEUDONYM_KEY", "x" * (MIN_KEY_BYTES - 1))
    with pytest.raises(WeakKeyError, match=f"{MIN_KEY_BYTES - 1} bytes; outside demo mode"):
        build_definitions(paths)
    with pytest.raises(WeakKeyError):
        TodaHome(home=str(paths.home)).pseudonym_key()
    monkeypatch.delenv("TODA_PSEUDONYM_KEY")
    with pytest.raises(MissingKeyError, match="no pseudonym key"):
        build_definitions(paths)
    monkeypatch.setenv("TODA_PSEUDONYM_KEY", "x" * MIN_KEY_BYTES)
    assert build_definitions(paths) is not None
    # demo mode: a synthetic city's home (its truth folder), or TODA_DEMO=1, accepts the test key
    monkeypatch.setenv("TODA_PSEUDONYM_KEY", "short")
    monkeypatch.delenv("TODA_DEMO")
    paths.truth.mkdir()
    assert TodaHome(home=str(paths.home)).pseudonym_key() == b"short"


# ---------------------------------------------------------------------------------------------
# The commands
# ---------------------------------------------------------------------------------------------


def test_the_commands(paths, key):
    from click.testing import CliRunner

    from toda_platform.cli import main

    run = CliRunner()
    out = run.invoke(main, ["notice", "--home", str(paths.home)])
    assert out.exit_code == 0, out.output
    assert (paths.home / "governance" / "notice.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    out = run.invoke(main, ["register", "--home", str(paths.home)])
    assert out.exit_code == 0 and (paths.home / "governance" / "register.csv").exists()

    _land_city(paths)
    con = duckdb.connect(str(paths.warehouse))
    _ingest_all(con, paths, key)
    con.close()
    out = run.invoke(main, ["retention", "--home", str(paths.home), "--dry-run", "--today", "2026-11-30"])
    assert out.exit_code == 0, out.output
    assert "would go: staging.attendance_daily: 6 rows with known_date before 2020-11-30" in out.output
    out = run.invoke(main, ["retention", "--home", str(paths.home), "--today", "2026-11-30"])
    assert "9 rows and 4 files removed" in out.output, out.output
    out = run.invoke(main, ["erase", "--home", str(paths.home), "--student-number", TARGET[0],
                            "--reason", "本人からの請求", "--yes"])
    assert out.exit_code == 0, out.output
    assert "erasure E" in out.output and "3 department files rewritten" in out.output
    assert _traces(paths, key) == []


SUPPORT_HEADER = ["記録番号", "決定日", "学校コード", "仮名ID", "リスク区分", "支援内容", "担当", "経過"]


def test_key_rotation_rekeys_everything_keeps_every_row_and_join_and_retires_the_old_key(paths, key, monkeypatch):
    from click.testing import CliRunner

    from toda_platform.cli import main
    from toda_platform.governance.keys import KeyRotationError, fingerprint, rotate

    monkeypatch.delenv("TODA_PSEUDONYM_KEY")
    paths.pseudonym_key_file.parent.mkdir(parents=True)
    paths.pseudonym_key_file.write_text(key.decode() + "\n")
    _land_city(paths)
    old_ids = {n: pseudonymise(key, n) for n, *_ in [TARGET, *OTHERS]}
    write_csv(paths.landing_dir("support_records") / "支援記録_2024.csv", SUPPORT_HEADER,
              [["S1", "2024-05-10", ELEM, old_ids[TARGET[0]], "赤", "家庭訪問", "SSW", "継続中"]],
              mtime=_ts(dt.date(2024, 5, 11)))
    con = duckdb.connect(str(paths.warehouse))
    for source in ("pupil_registry", "attendance_daily", "infant_checkup", "support_records"):
        assert {f.outcome for f in ingest_source(con, CATALOGUE[source], paths, key).files} == {"applied"}
    _derived_tables(con, key)
    _snapshot(paths, list(old_ids.values()))
    _portal_db(paths, list(old_ids.values()))
    tables = ["staging.pupil_registry", "staging.attendance_daily", "staging.infant_checkup",
              "staging.support_records", "marts.pupil_features", "outputs.risk_scores"]
    before = {t: sorted(map(tuple, con.execute(f"SELECT * EXCLUDE (_file_sha256) FROM {t}").fetchall()))
              if t.startswith("staging") else sorted(con.execute(f"SELECT * FROM {t}").fetchall()) for t in tables}
    joins = ("SELECT count(*) FROM staging.attendance_daily a JOIN staging.pupil_registry r USING (pupil_id) "
             "JOIN staging.infant_checkup i ON i.resident_id = r.resident_id "
             "JOIN staging.support_records s ON s.pupil_id = a.pupil_id")
    joined = con.execute(joins).fetchone()[0]
    assert joined > 0
    old_residents = {r for (r,) in con.execute("SELECT resident_id FROM staging.pupil_registry").fetchall()}
    # a pseudonym with no number behind it: rotation refuses and changes nothing
    con.execute("INSERT INTO outputs.risk_scores VALUES ('0123456789abcdef', DATE '2024-05-01', 0.1)")
    with pytest.raises(KeyRotationError, match=r"outputs.risk_scores.pupil_id \(1\)"):
        rotate(con, paths)
    assert paths.pseudonym_key_file.read_text().strip() == key.decode()
    con.execute("DELETE FROM outputs.risk_scores WHERE pupil_id = '0123456789abcdef'")
    con.close()

    out = CliRunner().invoke(main, ["keys", "rotate", "--home", str(paths.home), "--yes"])
    assert out.exit_code == 0, out.output
    new_key = paths.pseudonym_key_file.read_text().strip().encode()
    assert new_key != key and len(new_key) == 64 and f"key {fingerprint(key)} retired" in out.output
    new_ids = {n: pseudonymise(new_key, n) for n in old_ids}
    rekey = {old_ids[n]: new_ids[n] for n in old_ids}
    rekey |= {pseudonymise(key, r): pseudonymise(new_key, r) for _n, r, *_ in [TARGET, *OTHERS]}
    assert {pseudonymise(key, r) for _n, r, *_ in [TARGET, *OTHERS]} == old_residents

    con = duckdb.connect(str(paths.warehouse))
    try:
        for t in tables:
            rows = con.execute(f"SELECT * EXCLUDE (_file_sha256) FROM {t}" if t.startswith("staging")
                               else f"SELECT * FROM {t}").fetchall()
            expected = sorted(tuple(rekey.get(v, v) if isinstance(v, str) else v for v in row) for row in before[t])
            assert sorted(map(tuple, rows)) == expected, t  # every row, every pseudonym re-keyed
        assert con.execute(joins).fetchone()[0] == joined  # every join
        assert con.execute("SELECT count(*) FROM governance.key_log").fetchone()[0] == 1
        # the support file's 仮名ID was rewritten too, and the manifest follows it
        for sha, path in con.execute("SELECT sha256, archive_path FROM staging.file_manifest").fetchall():
            assert hashlib.sha256(open(path, "rb").read()).hexdigest() == sha
    finally:
        con.close()
    assert set(IdentityStore(paths.identity).lookup(new_ids.values())) == set(new_ids.values())
    assert _portal_ids(paths) == sorted(new_ids.values())
    snap = duckdb.connect(str((paths.serving / "current").resolve()), read_only=True)
    assert sorted(r[0] for r in snap.execute("SELECT pupil_id FROM risk_list").fetchall()) == sorted(new_ids.values())
    snap.close()

    # old pseudonyms and the old key appear nowhere under the home
    old_needles = [*rekey, key.decode()]
    for p in paths.home.rglob("*"):
        if p.is_file() and not p.is_symlink():
            data = p.read_bytes()
            assert not [n for n in old_needles if n.encode() in data], p
    for p in [paths.warehouse, (paths.serving / "current").resolve()]:
        c = duckdb.connect(str(p), read_only=True)
        for schema, table in c.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall():
            text = str(c.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall())
            assert not [n for n in old_needles if n in text], (p, table)
        c.close()

    # the next run keys new deliveries with the new key: nothing duplicates, nothing is orphaned
    con = duckdb.connect(str(paths.warehouse))
    write_csv(paths.landing_dir("attendance_daily") / "出欠_2024-04_再.csv", ATT_HEADER,
              _attendance([dt.date(2024, 4, 8), dt.date(2024, 4, 9)], [TARGET, *OTHERS]),
              mtime=_ts(dt.date(2024, 5, 2)))
    ingest_source(con, CATALOGUE["attendance_daily"], paths, new_key)
    assert con.execute("SELECT count(*) FROM staging.attendance_daily").fetchone()[0] == 12
    assert con.execute(joins).fetchone()[0] == joined
    con.close()


# ---------------------------------------------------------------------------------------------
# Rewriting a department file: only the target's rows go, every other byte stays
# ---------------------------------------------------------------------------------------------

_text = st.text(alphabet=st.sampled_from(list("あい,\"\n ab1")), max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.sampled_from(["20170001", "２０１７０００１", "20170002", "20170003"]), _text),
                     min_size=1, max_size=12),
       encoding=st.sampled_from(["utf-8-sig", "cp932", "utf-8"]), newline=st.sampled_from(["\r\n", "\n"]))
def test_without_removes_exactly_the_targets_rows(rows, encoding, newline):
    key = b"k" * 32
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=newline)
    writer.writerow(["日付", "学校コード", "学籍番号", "出欠", "登校形態", "理由"])
    for number, note in rows:
        writer.writerow(["2024/4/8", ELEM, number, "出", "", note])
    data = buf.getvalue().encode(encoding)
    target = pseudonymise(key, "20170001")
    result = without(CATALOGUE["attendance_daily"], data, key, {target}.__contains__)
    kept = [r for r in rows if pseudonymise(key, r[0]) != target]
    if len(kept) == len(rows):
        assert result is None
        return
    assert result.removed == len(rows) - len(kept)
    text = result.data.decode(encoding.replace("-sig", "") if not result.data.startswith(b"\xef\xbb\xbf")
                              else "utf-8-sig")
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert [(r[2], r[5]) for r in parsed[1:]] == kept
    # the other records are the original bytes, in order
    original = records(data.decode(encoding))
    assert records(text) == [r for r in original if not any(n in r for n in ("20170001", "２０１７０００１"))]
    assert result.data.startswith(b"\xef\xbb\xbf") == (encoding == "utf-8-sig")
