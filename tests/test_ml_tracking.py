"""MLflow tracking, the registry and the promotion gate, on a temporary sqlite store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml import tracking as T
from ml.pipeline import TrainConfig, score_cohort, score_with, train_and_register
from tests.ml_frames import FEATURES, empty_mlflow_store, make_frame


def fig(p, ece, who="x", year=2024):
    return T.GateFigures(who, p, ece, year)


# --- the decision itself ------------------------------------------------------------------------

def test_a_better_model_becomes_champion_and_a_worse_one_challenger():
    base = fig(0.20, 0.010, "rule_baseline")
    champ = fig(0.30, 0.010, "champion v1")
    d = T.decide(fig(0.35, 0.010), champ, base)
    assert (d.alias, d.promoted, d.bar) == ("champion", True, "champion")
    d = T.decide(fig(0.25, 0.005), champ, base)
    assert (d.alias, d.promoted) == ("challenger", False)
    # the gate's figure is a yearly mean and says so (the headline is one date's list)
    assert "mean PR-AUC over as-of dates of 2024 0.250 <= 0.300 (champion v1)" in d.reason
    d = T.decide(T.GateFigures("x", 0.35, 0.01, 2025, 10), T.GateFigures("champion v1", 0.3, 0.01, 2025, 10),
                 fig(0.1, 0.1, year=2025))
    assert "mean PR-AUC over 10 as-of dates of 2025 0.350 > 0.300" in d.reason


def test_equal_pr_auc_does_not_promote():
    champ = fig(0.30, 0.010)
    assert T.decide(fig(0.30, 0.001), champ, fig(0.1, 0.1)).alias == "challenger"


def test_better_pr_auc_but_worse_calibration_is_challenger():
    champ = fig(0.30, 0.010)
    d = T.decide(fig(0.40, 0.010 + T.ECE_TOLERANCE + 0.001), champ, fig(0.1, 0.1))
    assert d.alias == "challenger" and "ECE" in d.reason
    assert T.decide(fig(0.40, 0.010 + T.ECE_TOLERANCE / 2), champ, fig(0.1, 0.1)).alias == "champion"


def test_without_a_champion_the_bar_is_the_rule_baseline():
    base = fig(0.20, 0.010, "rule_baseline")
    d = T.decide(fig(0.25, 0.010), None, base)
    assert (d.alias, d.bar) == ("champion", "rule_baseline")
    d = T.decide(fig(0.15, 0.010), None, base)
    assert (d.alias, d.bar) == ("challenger", "rule_baseline")


def test_figures_of_different_years_are_refused():
    with pytest.raises(ValueError):
        T.decide(fig(0.3, 0.01, year=2025), fig(0.2, 0.01, year=2024), fig(0.1, 0.1, year=2025))


# --- the registry on a real store ---------------------------------------------------------------

NOISE = ["aig_creativity", "reg_female"]
MEDIUM = ["mood_d30_mood_mean", "mood_d30_missing", "aig_creativity"]
FULL = MEDIUM + ["qu_infringement"]


def gate_frame() -> pd.DataFrame:
    """Label driven by mood and Q-U, a little by absences (so the rule baseline is weak but
    better than noise)."""
    f = make_frame(pupils=500, years=(2022, 2023, 2024, 2025), seed=11, unlabelled_years=(2025,))
    rng = np.random.default_rng(4)
    n = len(f)
    mood = rng.normal(0, 1, n)
    qu = rng.normal(0, 1, n)
    f["mood_d30_mood_mean"] = 3 + mood
    f["mood_d30_missing"] = 0.0
    f["qu_infringement"] = 20 + 5 * qu
    absences = (f["att_ytd_absent"] - f["att_ytd_absent"].mean()) / f["att_ytd_absent"].std()
    z = -mood + 1.2 * qu + 0.6 * absences + rng.normal(0, 0.2, n)
    lab = (z > np.quantile(z, 0.9)).astype(float)
    f["label"] = np.where(f.school_year == 2025, np.nan, lab)
    return f


@pytest.fixture
def tracker(tmp_path):
    db = empty_mlflow_store(tmp_path / "mlflow.db")
    return T.Tracker(T.tracking_uri(db), (tmp_path / "mlartifacts").as_uri())


def r4_dates(summary):
    r = next(x for x in summary.results if x.model.name == "lightgbm")
    return r.metrics[r.metrics.subset == "all"].as_of_date.unique()


def test_date_step_reads_as_the_date():
    ts, step = T.date_step("2025-11-05")
    assert step == 20251105 and pd.Timestamp(ts, unit="ms") == pd.Timestamp("2025-11-05")


def test_telemetry_is_off_unless_the_environment_says_otherwise():
    env = T.quiet_environment({"DO_NOT_TRACK": "false"})
    assert env == {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "false"}
    import os

    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"  # set on importing ml.tracking


def test_promotion_gate_through_the_registry(tracker):
    f = gate_frame()
    # ECE on 1,000 test rows moves by a few points between fits: a looser calibration margin
    # here (the margin itself is tested above); precision decides these cases
    cfg = TrainConfig(n_test_years=1, lgb_rounds=40, early_stopping=10, lead_draws=2,
                      lgb_params={"min_data_in_leaf": 20, "learning_rate": 0.2, "num_threads": 1},
                      models=("rule_baseline", "lightgbm"), ece_tolerance=0.05)
    quiet = lambda *_: None  # noqa: E731

    # 1. noise only, no champion yet: compared with the rule baseline and not better
    s1 = train_and_register(f, NOISE, tracker, config=cfg, log=quiet)
    assert (s1.version, s1.decision.bar, s1.decision.alias) == ("1", "rule_baseline", "challenger")
    assert tracker.version_by_alias("champion") is None

    # 2. a real signal beats the rule baseline: champion
    s2 = train_and_register(f, MEDIUM, tracker, config=cfg, log=quiet)
    assert (s2.version, s2.decision.bar, s2.decision.alias) == ("2", "rule_baseline", "champion")

    # the very same training again registers nothing new
    again = train_and_register(f, MEDIUM, tracker, config=cfg, log=quiet)
    assert (again.decision, again.unchanged_version) == (None, "2")
    assert len(tracker.client.search_model_versions(f"name = '{T.REGISTERED_MODEL}'")) == 2

    # 3. noise again (another noise column), now against the champion: challenger, the
    # champion stays
    s3 = train_and_register(f, NOISE + ["ctx_school_aid_rate"], tracker, config=cfg, log=quiet)
    assert (s3.decision.bar, s3.decision.alias) == ("champion", "challenger")
    assert str(tracker.version_by_alias("champion").version) == "2"

    # 4. a better model (more signal) replaces the champion
    s4 = train_and_register(f, FULL, tracker, config=cfg, log=quiet)
    assert s4.decision.alias == "champion", s4.decision.reason
    assert s4.decision.compared_with.who == "champion v2"
    assert s4.decision.candidate.pr_auc > s4.decision.compared_with.pr_auc
    assert str(tracker.version_by_alias("champion").version) == "4"
    assert str(tracker.version_by_alias("challenger").version) == "3"

    # the decision and its figures are logged on the run and the model version
    c = tracker.client
    mv = c.get_model_version(T.REGISTERED_MODEL, "4")
    assert mv.tags["gate_decision"] == "champion"
    run = c.get_run(mv.run_id)
    assert run.data.tags["gate_decision"] == "champion"
    assert run.data.metrics["gate_promoted"] == 1.0
    assert run.data.metrics["gate_bar_year_mean_pr_auc"] == pytest.approx(
        s4.decision.compared_with.pr_auc)
    artifacts = {a.path for a in c.list_artifacts(mv.run_id)}
    assert {"gate", "plots", "metrics", "data", "importance", "bands"} <= artifacts
    # the registered model says what it is and what it takes
    assert "不登校" in c.get_registered_model(T.REGISTERED_MODEL).description
    assert "champion" in mv.description and "mean PR-AUC" in mv.description
    import mlflow

    sig = mlflow.models.get_model_info(f"models:/{T.REGISTERED_MODEL}/4").signature
    assert sig is not None and sig.inputs.input_names() == FULL
    # metrics per as-of date are keyed by the date (step YYYYMMDD, timestamp the date)
    hist = c.get_metric_history(mv.run_id, "by_date_all_r_precision")
    dates = sorted(pd.Timestamp(d) for d in r4_dates(s4))
    assert [m.step for m in sorted(hist, key=lambda m: m.step)] == [
        d.year * 10000 + d.month * 100 + d.day for d in dates]
    assert all(pd.Timestamp(m.timestamp, unit="ms") == pd.Timestamp(str(m.step)) for m in hist)
    # summary metrics for the runs table: the headline list's and the year's means
    assert {"nov_all_r_precision", "nov_all_recall_top1", "nov_all_recall_top2", "nov_all_pr_auc",
            "year_all_r_precision"} <= set(run.data.metrics)
    # the experiment opens in MLflow's model-training view; the Default one keeps its
    # artifacts under the store's artifact root, not ./mlruns
    exp = c.get_experiment(tracker.experiment_id)
    assert exp.tags[T.EXPERIMENT_KIND_TAG] == T.EXPERIMENT_KIND
    assert c.get_experiment("0").artifact_location == tracker.artifact_location.rstrip("/") + "/0"
    # one run per model and fold, named after both
    runs = c.search_runs([tracker.experiment_id])
    assert sorted({r.info.run_name for r in runs}) == ["lightgbm_2024", "rule_baseline_2024"]

    # scoring goes through the registry: the champion's scores are the pipeline's scores
    version, booster, meta = tracker.load_alias("champion")
    assert version == "4" and meta["features"] == FULL
    test = f[f.school_year == 2024]
    r = next(x for x in s4.results if x.model.name == "lightgbm")
    raw, prob = score_with(booster, meta, test)
    np.testing.assert_allclose(prob, r.test_prob, rtol=1e-6)
    today = f[f.school_year == 2025]
    today = today[today.as_of_date == today.as_of_date.max()]
    scores = score_cohort(today, booster, meta, model_name=T.REGISTERED_MODEL, version=version,
                          scored_at=pd.Timestamp("2025-11-05"))
    assert len(scores) == len(today) and set(scores.model_version) == {"4"}
    assert scores.groupby("school_code").rank_in_school.min().eq(1).all()


def test_toda_mlflow_opens_the_model_training_view_with_one_quiet_worker(tracker, tmp_path, monkeypatch):
    from toda_platform.cli import mlflow_server_command, mlflow_ui_url
    from toda_platform.settings import Paths

    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    paths = Paths(tmp_path)  # the tracker fixture's store is tmp_path/mlflow.db
    exp = tracker.experiment_id
    argv, env = mlflow_server_command(paths, "127.0.0.1", 5001, 1)
    assert argv[1] == "server" and argv[argv.index("--workers") + 1] == "1"
    assert argv[argv.index("--default-artifact-root") + 1] == paths.mlflow_artifacts.as_uri()
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true" and env["DO_NOT_TRACK"] in ("true", "1")
    assert mlflow_ui_url(paths, "127.0.0.1", 5001) == \
        f"http://127.0.0.1:5001/#/experiments/{exp}?workflowType=machine_learning"
