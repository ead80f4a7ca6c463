"""Generate a small city in a temp TODA_HOME and materialise the real Dagster assets on it."""

from __future__ import annotations

import json
import shutil

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from toda_platform.city import load_city
from toda_platform.definitions import materialise_all
from toda_platform.settings import Paths
from synthcity import CityConfig, generate_city

CATALOGUE = load_city("toda").specs  # Toda's specs: what each source means and how Toda writes it

SMALL = CityConfig(pupils=900, elementary_schools=2, junior_high_schools=1, years=3)
# every asset runs for real; the ablation (unit-tested in test_ml_outputs) over two groups only
OPS = {"models__source_ablation": {"config": {"groups": ["attendance", "mood"], "refits": 1,
                                              "n_boot": 50}},
       "outputs__support_effects": {"config": {"n_boot": 50}}}


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """One small city, generated and fully materialised once for this module."""
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("city") / "toda"
    mp.setenv("TODA_HOME", str(home))
    mp.setenv("TODA_PSEUDONYM_KEY", "e2e-key")
    paths = Paths.from_env(home)
    summary = generate_city(paths.home, SMALL, progress=False)
    result = materialise_all(paths, instance=dg.DagsterInstance.ephemeral(), ops=OPS)
    yield paths, summary, result
    mp.undo()


def query(paths, sql, params=None):
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        return con.execute(sql, params or []).df()
    finally:
        con.close()


def test_every_asset_materialised(city):
    paths, _, result = city
    assert result.success
    materialised = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert set(CATALOGUE) <= materialised


def test_staged_rows_match_what_the_generator_wrote(city):
    paths, summary, _ = city
    counts = query(paths, " UNION ALL ".join(
        f"SELECT '{k}' AS source_key, count(*) AS n FROM staging.{k}" for k in CATALOGUE))
    staged = dict(zip(counts.source_key, counts.n))
    assert staged == summary.expected_rows
    assert all(n > 0 for n in staged.values())


def test_duplicate_and_correction_were_recognised(city):
    paths, summary, _ = city
    m = query(paths, "SELECT source_key, file_name, outcome, superseded_by, sha256 FROM staging.file_manifest")
    dup_source, dup_name = summary.duplicate_file
    row = m[(m.source_key == dup_source) & (m.file_name == dup_name)]
    assert list(row.outcome) == ["duplicate"]
    src, original, corrected = summary.corrected_file
    orig = m[(m.source_key == src) & (m.file_name == original)].iloc[0]
    corr = m[(m.source_key == src) & (m.file_name == corrected)].iloc[0]
    assert (orig.outcome, corr.outcome) == ("superseded", "applied")
    assert orig.superseded_by == corr.sha256
    assert not (m.outcome == "rejected").any(), m[m.outcome == "rejected"]


def test_rerun_changes_nothing(city):
    paths, _, _ = city
    before = query(paths, "SELECT source_key, count(*) n FROM staging.file_manifest GROUP BY 1 ORDER BY 1")
    rows_before = query(paths, "SELECT count(*) n FROM staging.attendance_daily").n[0]
    result = materialise_all(paths, instance=dg.DagsterInstance.ephemeral(), ops=OPS)
    assert result.success
    assert before.equals(query(paths, "SELECT source_key, count(*) n FROM staging.file_manifest GROUP BY 1 ORDER BY 1"))
    assert query(paths, "SELECT count(*) n FROM staging.attendance_daily").n[0] == rows_before


def _registry_pii(paths: Paths) -> set[str]:
    """Names, kana and addresses as the registry export holds them (read straight from landing)."""
    values: set[str] = set()
    spec = CATALOGUE["pupil_registry"]
    pii_headers = [c.header for c in spec.columns if c.pii == "drop" and c.kind == "str"]
    for f in paths.landing_dir("pupil_registry").glob("*.csv"):
        df = pd.read_csv(f, encoding="cp932", dtype=str)
        for h in pii_headers:
            if h in df:
                values |= set(df[h].dropna().str.strip())
    values.discard("")
    return values


def test_no_staging_column_holds_a_name_kana_or_address(city):
    paths, _, _ = city
    pii = _registry_pii(paths)
    assert len(pii) > 100
    # surnames alone (the first word of a name) must not appear either
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        cols = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'staging' AND data_type = 'VARCHAR'").fetchall()
        pii_list = sorted(pii)
        for table, column in cols:
            hits = con.execute(
                f'SELECT count(*) FROM (SELECT DISTINCT "{column}" AS v FROM staging."{table}") '
                "WHERE v IN (SELECT unnest(?))", [pii_list]).fetchone()[0]
            assert hits == 0, f"staging.{table}.{column} holds personal information"
    finally:
        con.close()


def test_pseudonyms_are_stable_and_follow_the_formula(city):
    paths, _, _ = city
    from toda_platform.pseudonym import pseudonymise

    truth = pd.read_csv(next(paths.truth.glob("pupil_years.*")), dtype={"student_number": str})
    sample = truth.drop_duplicates("student_number").head(50)
    expected = {pseudonymise(b"e2e-key", s) for s in sample.student_number}
    staged = set(query(paths, "SELECT DISTINCT pupil_id FROM staging.pupil_registry").pupil_id)
    assert expected <= staged


def test_manifest_accounts_for_every_landed_file(city):
    paths, summary, _ = city
    m = query(paths, "SELECT source_key, file_name FROM staging.file_manifest")
    for key, names in summary.files.items():
        assert set(names) <= set(m[m.source_key == key].file_name), key


def test_the_drift_gate_ran_before_the_list_and_the_summary_reports_both(city, capsys, monkeypatch):
    paths, _, result = city
    check = [e for e in result.get_asset_check_evaluations() if e.check_name == "drift_within_limit"]
    assert len(check) == 1 and check[0].passed
    run = query(paths, "SELECT * FROM quality.feature_drift_runs ORDER BY checked_at")
    assert run.status.iloc[-1] == "measured" and run.n_features.iloc[-1] > 0
    listed = query(paths, "SELECT count(*) AS n, max(as_of_date) AS d FROM outputs.risk_scores")
    assert listed.n[0] > 0 and listed.d[0] == run.as_of_date.iloc[-1]
    from toda_platform.cli import _print_summary

    monkeypatch.delenv("COLUMNS", raising=False)  # piped, as `make demo | tee` is: no figure cut to "0.2…"
    _print_summary(paths)
    out = capsys.readouterr().out
    assert "Drift gate: passed" in out and f"Risk list {listed.d[0].date()}: {listed.n[0]:,} pupils" in out
    assert "lightgbm" in out and "rule_baseline" in out and "toda mlflow --home" in out
    rows = [line for line in out.splitlines() if "lightgbm" in line or "attendance_daily" in line]
    assert rows and not any("…" in line for line in rows), rows


# ---------------------------------------------------------------------------------------------
# Issue 11's outputs on the same run: 学校カルテ, support effects, hardship screen
# ---------------------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n"


def test_school_karte_sets_each_school_beside_the_city_and_its_past(city):
    from ml import karte

    paths, _, _ = city
    k = query(paths, "SELECT * FROM outputs.school_karte ORDER BY school_code, school_year")
    agg = query(paths, "SELECT * FROM marts.school_aggregates")
    assert len(k) == len(agg) and not k.duplicated(["school_code", "school_year"]).any()
    m = k.merge(agg, on=["school_code", "school_year"], suffixes=("", "_agg"))
    for cell, _, _ in karte.TREND_CELLS:  # figures as published, hidden cells stay hidden
        same = (m[cell] == m[f"{cell}_agg"]) | (m[cell].isna() & m[f"{cell}_agg"].isna())
        assert same.all(), cell
        assert (m[cell].isna() | ~m[f"{cell}_suppressed_agg"]).all()
    first = k.groupby("school_code").head(1)
    assert first.attendance_rate_prev.isna().all()
    later = k.groupby("school_code").nth(1)
    prev = k.groupby("school_code").head(1).set_index("school_code").attendance_rate
    assert np.allclose(later.set_index("school_code").attendance_rate_prev, prev.reindex(later.school_code))
    elementary = k[k.school_type == "elementary"]
    for _, g in elementary.groupby("school_year"):  # the city average of the same school type
        shown = g.dropna(subset=["attendance_rate"])
        assert shown.attendance_rate.min() - 1e-9 <= g.attendance_rate_city.iloc[0] <= shown.attendance_rate.max() + 1e-9
    e = k.dropna(subset=["beating_odds_estimate"])
    assert len(e) >= 3 and e.beating_odds_pupils.ge(10).all()
    assert ((e.beating_odds_low < e.beating_odds_estimate) & (e.beating_odds_estimate < e.beating_odds_high)).all()
    clear = (e.beating_odds_low > 0) | (e.beating_odds_high < 0)
    assert (e.beating_odds_verdict_ja.notna() == clear).all()
    assert k.beating_odds_pooled_estimate.notna().all()
    practices = query(paths, "SELECT * FROM outputs.karte_practices")
    assert len(practices) == len(karte.PRACTICES) and practices.wording_ja.str.contains("関連").sum() >= 1
    for code in k.school_code.unique():
        assert (paths.reports / "karte" / f"{code}.png").read_bytes()[:8] == PNG
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        page = karte.karte_page(con, code, paths.reports)
        board = karte.board_page(con, paths.reports)
    finally:
        con.close()
    assert page["chart"].read_bytes()[:8] == PNG and page["board_chart"].exists()
    assert len(page["key_figures"]) == len(karte.TREND_CELLS) and len(page["support_effects"]) == 6
    assert set(board["schools"].school_code) == set(k.school_code)


def test_support_effects_naive_beside_adjusted_and_logged_to_mlflow(city):
    from ml import support_effects as S
    from ml.tracking import Tracker, tracking_uri

    paths, _, _ = city
    t = query(paths, "SELECT * FROM outputs.support_effects").set_index("action")
    assert list(t.index) == list(S.ACTIONS)
    # each pupil's first decision of a school year is one "supported" row (later ones escalate)
    decided = query(paths, """SELECT action, count(*) AS n FROM (
        SELECT arg_min(action, decided_on) AS action FROM staging.support_records
        GROUP BY pupil_id, year(decided_on) - CASE WHEN month(decided_on) < 4 THEN 1 ELSE 0 END)
        GROUP BY 1""").set_index("action").n
    assert (t.n_supported <= decided.reindex(t.index).fillna(0)).all() and t.n_supported.sum() > 0
    est = t[t.n_supported > 0]
    # support goes to pupils whose absences rose: naively it looks harmful, adjusted it does not
    assert (est.naive_effect > 2).all()
    assert (est.adjusted_effect < est.naive_effect / 2).all()
    assert ((est.ci_low <= est.adjusted_effect) & (est.adjusted_effect <= est.ci_high)).all()
    assert (paths.reports / "support" / "support_effects.png").read_bytes()[:8] == PNG
    tracker = Tracker(tracking_uri(paths.mlflow_db), paths.mlflow_artifacts.as_uri(), "support_effects")
    runs = tracker.client.search_runs([tracker.experiment_id])
    assert runs and runs[0].data.params["design"] == S.DESIGN
    assert any(k.endswith("_adjusted_effect") for k in runs[0].data.metrics)


def test_hardship_screen_lists_the_latest_cohort_with_reasons(city):
    from ml import hardship

    paths, _, _ = city
    s = query(paths, "SELECT * FROM outputs.hardship_screen")
    latest = query(paths, "SELECT max(as_of_date) AS d FROM marts.pupil_features WHERE as_of_kind = 'latest'").d[0]
    cohort = query(paths, "SELECT count(*) AS n FROM marts.pupil_features WHERE as_of_date = ?", [latest]).n[0]
    assert len(s) == cohort and (s.as_of_date == latest).all()
    fired = s[s.n_indicators > 0]
    assert 0 < len(fired) < len(s)
    assert (fired.indicators_ja.str.len() > 0).all() and (s[s.n_indicators == 0].screen_score == 0).all()
    weights = {i.key: i.weight for i in hardship.load_spec().indicators}
    assert np.allclose(s.screen_score, [sum(weights[k] for k in json.loads(j)) for j in s.indicators_json])
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        page = hardship.screen_page(con, fired.school_code.iloc[0])
    finally:
        con.close()
    assert len(page["pupils"]) and page["pupils"].screen_score.is_monotonic_decreasing


def test_bench_measures_the_outputs_against_the_truth(city):
    from bench.outputs_vs_truth import evaluate

    paths, _, _ = city
    r = evaluate(paths.home)
    assert r["beating_odds"]["schools"] == 3 and -1 <= r["beating_odds"]["pearson"] <= 1
    assert r["support"]["actions"] == 6 and r["support"]["naive_truth_inside"] == 0
    assert r["screen"]["matched_to_truth"] > 0 and r["screen"]["recall_top10"] > 0.10  # beats a random list
    assert (paths.reports / "outputs_vs_truth.json").exists()


def test_the_serving_snapshot_carries_the_outputs_built_before_it(city):
    """The snapshot runs after the outputs in one run, and holds them for the portal's pages."""
    from portal.serving import SnapshotReader

    paths, _, _ = city
    snap = SnapshotReader(paths.serving)
    warehouse = query(paths, "SELECT (SELECT count(*) FROM outputs.school_karte) AS karte, "
                             "(SELECT count(*) FROM outputs.support_effects) AS support, "
                             "(SELECT count(*) FROM outputs.hardship_screen WHERE as_of_date = "
                             "(SELECT max(as_of_date) FROM outputs.hardship_screen)) AS screen").iloc[0]
    assert snap.query("SELECT (SELECT count(*) FROM outputs.school_karte) AS karte, "
                      "(SELECT count(*) FROM outputs.support_effects) AS support, "
                      "(SELECT count(*) FROM outputs.hardship_screen) AS screen") == \
        [{"karte": warehouse.karte, "support": warehouse.support, "screen": warehouse.screen}]
    schools = {r["school_code"] for r in snap.query("SELECT school_code FROM schools")}
    charts = {r["name"] for r in snap.query("SELECT name FROM charts")}
    assert {f"karte/{c}.png" for c in schools} | {"karte/beating_odds.png", "support/support_effects.png"} <= charts
