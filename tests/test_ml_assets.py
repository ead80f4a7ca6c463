"""The model and scoring assets on a small synthetic warehouse (marts written directly), the
registry round trip to ``outputs.risk_scores``, and the truth wall: only the bench reads it."""

from __future__ import annotations

import re
import shutil
from datetime import date, timedelta

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from assets.models import (drift_within_limit, fairness_audit, feature_drift, futoukou_risk,
                           known_cases, risk_list_checks, risk_scores, source_ablation)
from ml.features import ID_COLUMNS
from ml.labels import LABELS_DDL
from resources.mlflow import mlflow_resource
from resources.toda import TodaHome, Warehouse
from tests.conftest import TEST_KEY
from tests.ml_frames import FEATURES, empty_mlflow_store, make_frame
from toda_platform.pseudonym import pseudonymise
from toda_platform.settings import Paths

LATEST = pd.Timestamp("2025-11-06")
RUN_CONFIG = {"ops": {
    "models__futoukou_risk": {"config": {"n_test_years": 1, "lgb_rounds": 40, "early_stopping": 10,
                                         "lead_draws": 2}},
    "models__source_ablation": {"config": {"train_months": [], "lgb_rounds": 30, "early_stopping": 10,
                                           "n_boot": 20, "groups": ["attendance", "mood"], "refits": 1}},
}}


def score_z(f: pd.DataFrame, rng) -> pd.Series:
    return (0.4 * f.att_ytd_absent / f.att_ytd_absent.std()
            - f.mood_d30_mood_mean.fillna(3.5) / f.mood_d30_mood_mean.std()
            + rng.normal(0, 0.3, len(f)))


def build_warehouse(paths: Paths) -> pd.DataFrame:
    """marts.pupil_features / marts.labels from a synthetic frame, pupils keyed by real
    pseudonyms; 2025 is the current year (no labels) with a 'latest' as-of date; two known
    cases; a school calendar in staging.attendance_daily. Returns the truth of 2025."""
    f = make_frame(pupils=300, years=(2021, 2022, 2023, 2024, 2025), seed=2, unlabelled_years=(2025,))
    # the label follows mood more than absences, with noise: the rule baseline (absences only)
    # is beatable and no list is perfect
    z = score_z(f, np.random.default_rng(8))
    f["label"] = np.where(f.school_year == 2025, np.nan, (z >= np.quantile(z, 0.9)).astype(float))
    numbers = {p: f"2019{int(p[1:]):04d}" for p in f.pupil_id.unique()}
    ids = {p: pseudonymise(TEST_KEY.encode(), n) for p, n in numbers.items()}
    latest = f[(f.school_year == 2025) & (f.as_of_date == f[f.school_year == 2025].as_of_date.max())]
    latest = latest.assign(as_of_date=LATEST, as_of_kind="latest")
    latest_z = score_z(latest, np.random.default_rng(9)).to_numpy()
    f = pd.concat([f, latest], ignore_index=True)
    truth = pd.DataFrame({"student_number": [numbers[p] for p in latest.pupil_id],
                          "school_year": 2025,
                          "p_futoukou": 1 / (1 + np.exp(-(latest_z - np.quantile(latest_z, 0.9)))),
                          "futoukou": (latest_z >= np.quantile(latest_z, 0.9)).astype(int)})
    # last year's truth too (the oracle beside the held-out year's headline): the share of the
    # pupil's 2024 rows labelled 不登校 as its "true probability"
    last = f[f.school_year == 2024].groupby("pupil_id").label.mean()
    # cases' non-attendance begins in September (before the November list) or January (after)
    onset = np.where(last.to_numpy() > 0.5, np.where(np.arange(len(last)) % 2, "2024-09-02", "2025-01-14"), "")
    truth = pd.concat([truth, pd.DataFrame({"student_number": [numbers[p] for p in last.index],
                                            "school_year": 2024, "p_futoukou": last.to_numpy(),
                                            "futoukou": (last.to_numpy() > 0.5).astype(int),
                                            "onset_date": onset})])
    f["pupil_id"] = f.pupil_id.map(ids)
    f["in_cohort"], f["known_case"] = True, False
    known = latest.head(2).assign(pupil_id=["k1", "k2"], in_cohort=False, known_case=True,
                                  nonillness_absent_days=31)
    labels = pd.concat([f, known], ignore_index=True)
    con = duckdb.connect(str(paths.warehouse))
    con.execute("CREATE SCHEMA marts; CREATE SCHEMA staging")
    feats = [c for c in FEATURES if c != "grade"]
    con.register("f", f)
    con.execute(f"CREATE TABLE marts.pupil_features AS SELECT {', '.join(ID_COLUMNS)}, "
                f"{', '.join(feats)} FROM f")
    con.execute(LABELS_DDL)
    con.register("l", labels)
    con.execute("INSERT INTO marts.labels BY NAME SELECT pupil_id, as_of_date::DATE AS as_of_date, "
                "as_of_kind, school_year, school_code, grade, in_cohort, known_case, "
                "nonillness_absent_days, futoukou_prev_year, label::BOOLEAN AS label, label_available, "
                "date_30th_nonillness_absence::DATE AS date_30th_nonillness_absence FROM l")
    days = [date(2021, 4, 1) + timedelta(days=i) for i in range(0, 365 * 5)]
    con.execute("CREATE TABLE staging.attendance_daily (date DATE)")
    con.executemany("INSERT INTO staging.attendance_daily VALUES (?)", [[d] for d in days if d.weekday() < 5])
    con.close()
    return truth


def materialise(paths: Paths, assets, ops: dict | None = None) -> dg.ExecuteInProcessResult:
    ops = {**RUN_CONFIG["ops"], **(ops or {})}
    keys = {k.to_python_identifier() for a in assets for k in a.keys}
    return dg.materialize(
        assets, resources={"warehouse": Warehouse(database=str(paths.warehouse)),
                           "mlflow": mlflow_resource(paths), "toda": TodaHome(home=str(paths.home))},
        run_config={"ops": {k: v for k, v in ops.items() if k in keys}},
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def table(paths: Paths, sql: str) -> pd.DataFrame:
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        return con.execute(sql).df()
    finally:
        con.close()


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """Home A: the whole model group and scoring, with a truth folder; home B: a copy of the
    same warehouse before any model ran, and no truth folder at all."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TODA_PSEUDONYM_KEY", TEST_KEY)
    root = tmp_path_factory.mktemp("mlcity")
    a, b = Paths.from_env(root / "a"), Paths.from_env(root / "b")
    a.home.mkdir(parents=True)
    truth = build_warehouse(a)
    a.truth.mkdir()
    truth.to_csv(a.truth / "pupil_years.csv", index=False)
    b.home.mkdir(parents=True)
    shutil.copy(a.warehouse, b.warehouse)
    empty_mlflow_store(a.mlflow_db)
    empty_mlflow_store(b.mlflow_db)
    result = materialise(a, [futoukou_risk, source_ablation, fairness_audit, feature_drift,
                             drift_within_limit, risk_scores, known_cases, *risk_list_checks])
    yield a, b, result
    mp.undo()


def test_the_model_assets_materialise_and_write_their_tables(city):
    a, _, result = city
    assert result.success
    head = table(a, "SELECT * FROM models.headline")
    assert set(head.model) == {"rule_baseline", "logistic", "lightgbm"}
    assert set(head.subset) == {"all", "new"} and set(head.test_year) == {2024}
    abl = table(a, "SELECT DISTINCT variant, kind FROM models.source_ablation")
    assert {"full", "without_attendance", "only_attendance", "rule_baseline"} <= set(abl.variant)
    fair = table(a, "SELECT DISTINCT attribute FROM models.fairness_audit")
    assert set(fair.attribute) == {"sex", "grade", "school", "context_band"}
    meta = result.asset_materializations_for_node("models__futoukou_risk")[0].metadata
    assert meta["gate_decision"].value in ("champion", "challenger")
    assert meta["mlflow_ui"].value.startswith(".venv/bin/toda mlflow --home ")
    # the headline in metadata: rounded figures, the date without a time, new columns beside
    head = meta["headline"].value
    assert "r_precision" in head and "recall_top1" in head and "00:00:00" not in head
    assert not re.search(r"\d\.\d{7,}", head)


def test_risk_scores_come_from_the_champion_with_bands_and_reasons(city):
    a, _, result = city
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()
              if e.asset_key.path == ["outputs", "risk_scores"]}
    assert set(checks) == {"scores_within_0_1", "bands_in_severity_order", "one_row_per_pupil",
                           "every_cohort_pupil_scored"}
    assert all(c.passed for c in checks.values()), {k: c.description for k, c in checks.items()}
    meta = result.asset_materializations_for_node("outputs__risk_scores")[0].metadata
    bands = meta["bands"].value  # severity order, rounded
    assert bands.index("赤") < bands.index("ピンク") < bands.index("橙") < bands.index("黄") < bands.index("なし")
    assert not re.search(r"\d\.\d{7,}", bands) and "nan" not in bands  # not 16 digits, no "nan"
    assert meta["as_of_date"].value == str(LATEST.date())
    from resources.mlflow import mlflow_resource as res

    champion = res(a).tracker().version_by_alias("champion")
    assert champion is not None
    s = table(a, "SELECT * FROM outputs.risk_scores")
    cohort = table(a, f"SELECT count(*) AS n FROM marts.labels WHERE as_of_date = DATE '{LATEST.date()}' "
                      "AND in_cohort").n[0]
    assert len(s) == cohort and set(s.as_of_date.astype(str)) == {str(LATEST.date())}
    assert set(s.model_version) == {str(champion.version)}
    assert s.score.between(0, 1).all()
    assert (s.groupby("school_code").rank_in_school.apply(lambda r: sorted(r) == list(range(1, len(r) + 1)))).all()
    assert set(s.band.dropna()) <= {"赤", "ピンク", "橙", "黄"}
    top = s.sort_values("score", ascending=False).head(10)
    assert top.reason_1.notna().all()
    assert top.reason_1.str.contains("欠席|気分").all()  # the features that drive the label
    # known cases are listed apart, never scored
    known = table(a, "SELECT * FROM outputs.known_cases")
    assert set(known.pupil_id) == {"k1", "k2"} and not set(known.pupil_id) & set(s.pupil_id)


def test_deleting_the_truth_folder_changes_no_score(city):
    a, b, _ = city
    assert not b.truth.exists()
    result = materialise(b, [futoukou_risk, feature_drift, drift_within_limit, risk_scores])
    assert result.success
    cols = "pupil_id, score, band, rank_in_school, reason_1, reason_2, reason_3, model_version"
    sa = table(a, f"SELECT {cols} FROM outputs.risk_scores ORDER BY pupil_id")
    sb = table(b, f"SELECT {cols} FROM outputs.risk_scores ORDER BY pupil_id")
    pd.testing.assert_frame_equal(sa, sb)


def test_the_bench_reads_the_truth_and_compares_with_the_oracle(city):
    a, _, _ = city
    from bench.model_quality import evaluate

    r = evaluate(a.home)
    assert r["pupils"] == 300 and r["pupils_without_truth"] == 0
    # the outcome here is a threshold of the score the oracle's probability is monotone in
    assert r["oracle"]["roc_auc"] == pytest.approx(1.0)
    assert r["champion"]["roc_auc"] > 0.9
    assert r["champion_over_oracle_roc_auc"] == pytest.approx(r["champion"]["roc_auc"])
    assert (a.reports / "model_quality.json").exists()
    # and at every as-of date of the current year, the champion scored through the registry
    assert [x["as_of_date"] for x in r["by_as_of_date"]] == ["2025-10-01", "2025-11-01", "2025-11-06"]
    assert all(x["oracle_roc_auc"] == pytest.approx(1.0) for x in r["by_as_of_date"][2:])
    # the held-out year's headline, with the oracle scored on exactly the same rows
    h = pd.DataFrame(r["headline_with_oracle"])
    assert set(h[h.subset != "early"].model) == {"rule_baseline", "logistic", "lightgbm", "oracle"}
    # the truly early cases (non-attendance not begun at the list's date): champion, rule, oracle
    early = h[h.subset == "early"].set_index("model")
    allrows = h[(h.test_year == 2024) & (h.subset == "all")].set_index("model")
    assert set(early.index) == {"champion", "rule_baseline", "oracle"}
    assert 0 < early.positives.iloc[0] < allrows.positives.iloc[0]
    assert early.n.iloc[0] == allrows.n.iloc[0] - (allrows.positives.iloc[0] - early.positives.iloc[0])
    assert early.r_precision.between(0, 1).all() and early.recall_top2.between(0, 1).all()
    for subset in ("all", "new"):
        part = h[(h.test_year == 2024) & (h.subset == subset)].set_index("model")
        assert part.n.nunique() == 1 and part.positives.nunique() == 1, part
        assert 0.8 < part.roc_auc["oracle"] <= 1.0


def test_the_drift_gate_passes_when_this_year_looks_like_last_year(city):
    a, _, result = city
    check = [e for e in result.get_asset_check_evaluations() if e.check_name == "drift_within_limit"]
    assert len(check) == 1 and check[0].passed
    run = table(a, "SELECT * FROM quality.feature_drift_runs")
    assert len(run) == 1 and run.status[0] == "measured"
    assert str(run.reference_date[0].date()) == "2024-11-01"  # one year before 2025-11-06
    assert run.drifted_share[0] <= 0.3 and run.passed[0]
    cols = table(a, "SELECT * FROM quality.feature_drift")
    assert len(cols) == run.n_features[0] > 0 and cols.method.notna().all()
    assert (a.reports / "drift" / "feature_drift_2025-11-06.html").stat().st_size > 10_000


def _break_latest_rows(paths: Paths) -> None:
    """The latest rows as if the attendance export had lost its absences: zero everywhere, and
    the mood survey missing for everybody."""
    con = duckdb.connect(str(paths.warehouse))
    con.execute("UPDATE marts.pupil_features SET att_ytd_absent = 0, att_d30_absent = 0, "
                "mood_d30_mood_mean = NULL WHERE as_of_kind = 'latest'")
    con.close()


def test_drifted_features_stop_the_new_list_and_keep_the_old_one(city, tmp_path):
    a, _, _ = city
    c = Paths.from_env(tmp_path / "c")
    shutil.copytree(a.home, c.home)  # the registry's artifacts are addressed by absolute path
    before = table(c, "SELECT * FROM outputs.risk_scores ORDER BY pupil_id")
    _break_latest_rows(c)
    result = materialise(c, [feature_drift, drift_within_limit, risk_scores])
    assert not result.success
    check = [e for e in result.get_asset_check_evaluations() if e.check_name == "drift_within_limit"][0]
    assert not check.passed and "beyond" in check.description
    assert {"att_ytd_absent", "mood_d30_mood_mean"} <= set(check.metadata["drifted_features"].value)
    assert not result.asset_materializations_for_node("outputs__risk_scores")
    # what was published before is untouched
    pd.testing.assert_frame_equal(table(c, "SELECT * FROM outputs.risk_scores ORDER BY pupil_id"), before)
    why = table(c, "SELECT reason FROM quality.feature_drift WHERE \"column\" = 'mood_d30_mood_mean' "
                   "AND run_id = (SELECT run_id FROM quality.feature_drift_runs ORDER BY checked_at DESC LIMIT 1)")
    assert "missing" in why.reason[0]

    # an operator who read the report accepts the features, with a reason: the list is published
    drifted = check.metadata["drifted_features"].value
    accepted = materialise(c, [feature_drift, drift_within_limit, risk_scores], ops={
        "scoring__feature_drift": {"config": {"accept_features": drifted,
                                              "accept_reason": "test: export change understood"}}})
    assert accepted.success
    assert accepted.asset_materializations_for_node("outputs__risk_scores")
    log = table(c, "SELECT * FROM quality.drift_acceptances")
    assert set(log.school_year) == {2025}  # the school year of the as-of date checked
    assert set(log["column"]) == set(drifted) and (log.reason == "test: export change understood").all()


def test_the_list_is_not_published_around_the_gate(city, tmp_path):
    """outputs/risk_scores materialised alone, after a failed drift measurement, refuses too."""
    a, _, _ = city
    c = Paths.from_env(tmp_path / "c")
    shutil.copytree(a.home, c.home)
    before = table(c, "SELECT * FROM outputs.risk_scores ORDER BY pupil_id")
    _break_latest_rows(c)
    assert not materialise(c, [feature_drift, drift_within_limit]).success
    alone = materialise(c, [risk_scores])
    assert not alone.success
    failure = [e for e in alone.all_events if e.is_step_failure][0]
    assert "not published: the drift gate failed" in failure.step_failure_data.user_failure_data.description
    pd.testing.assert_frame_equal(table(c, "SELECT * FROM outputs.risk_scores ORDER BY pupil_id"), before)


def test_unchanged_inputs_are_not_retrained_until_forced_or_changed(city, tmp_path):
    a, _, _ = city
    c = Paths.from_env(tmp_path / "c")
    shutil.copytree(a.home, c.home)
    client = mlflow_resource(c).tracker()
    runs_before = len(client.client.search_runs([client.experiment_id], max_results=1000))
    again = materialise(c, [futoukou_risk, source_ablation])
    assert again.success
    for node in ("models__futoukou_risk", "models__source_ablation"):
        meta = again.asset_materializations_for_node(node)[0].metadata
        assert "unchanged_since" in meta and "force=true" in meta["note"].value
    assert len(client.client.search_runs([client.experiment_id], max_results=1000)) == runs_before

    # a corrected label is a new input: the evaluation runs again
    con = duckdb.connect(str(c.warehouse))
    con.execute("UPDATE marts.labels SET label = NOT label WHERE pupil_id = "
                "(SELECT min(pupil_id) FROM marts.labels WHERE label_available)")
    con.close()
    changed = materialise(c, [futoukou_risk])
    meta = changed.asset_materializations_for_node("models__futoukou_risk")[0].metadata
    assert "unchanged_since" not in meta and "headline" in meta
    ablation_config = RUN_CONFIG["ops"]["models__source_ablation"]["config"]

    def ablation_meta(force: bool):
        r = materialise(c, [source_ablation], ops={"models__source_ablation": {"config": {
            **ablation_config, "force": force}}})
        return r.asset_materializations_for_node("models__source_ablation")[0].metadata

    assert "unchanged_since" not in ablation_meta(False)  # the corrected label
    assert "unchanged_since" in ablation_meta(False)      # nothing new since
    assert "unchanged_since" not in ablation_meta(True)   # forced
