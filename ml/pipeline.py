"""The training pipeline end to end, without Dagster: folds → models → MLflow → registry → gate,
and scoring a cohort with a registered version.

:func:`train_and_register` is what the ``models/futoukou_risk`` asset runs;
:func:`score_cohort` is what ``outputs/risk_scores`` runs with the version behind ``champion``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from ml import evaluation as E
from ml import metrics as M
from ml.dataset import feature_matrix, fingerprint
from ml.explain import explain, reference_means
from ml.feature_groups import group_of
from ml.models import LightGBMModel, PlattCalibrator, build_models, mean_abs_contribution
from ml.scoring import BANDS, band_precision, choose_band_thresholds, risk_score_frame
from ml.tracking import (CHAMPION, ECE_TOLERANCE, PER_DATE_METRICS, GateDecision, Tracker,
                         calibration_figure, decide, gate_figures, importance_figure,
                         pr_curve_figure)


@dataclass
class TrainConfig:
    n_test_years: int = 2
    lgb_rounds: int = 600
    early_stopping: int = 50
    lgb_params: dict = field(default_factory=dict)
    lead_draws: int = 20
    register: bool = True
    models: tuple[str, ...] = ("rule_baseline", "logistic", "lightgbm")
    ece_tolerance: float = ECE_TOLERANCE


@dataclass
class TrainingSummary:
    results: list
    headline: pd.DataFrame
    per_date: pd.DataFrame
    version: str | None = None
    decision: GateDecision | None = None
    bands: pd.DataFrame | None = None
    thresholds: dict | None = None
    importance: pd.DataFrame | None = None
    run_ids: dict = field(default_factory=dict)
    folds: list = field(default_factory=list)
    unchanged_version: str | None = None  # set when the training equals an existing version's


def score_with(booster, meta: dict, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(raw, calibrated probability) of a registered LightGBM version on model-frame rows."""
    feats = list(meta["features"])
    raw = booster.predict(feature_matrix(frame, feats), raw_score=True)
    prob = PlattCalibrator.from_dict(meta["calibration"])(raw)
    return raw, prob


# TreeSHAP costs ~2.7 ms of CPU a row with the champion: a mean |contribution| over a seeded
# sample of this many of the headline date's ~12,000 pupils moves the top features' values by a
# few per cent and saves ~20 s of the model step
IMPORTANCE_ROWS = 3000


def importance_table(model: LightGBMModel, rows: pd.DataFrame) -> pd.DataFrame:
    """Importance by gain and by mean absolute contribution (on at most ``IMPORTANCE_ROWS`` of
    ``rows``, a fixed random sample), with source groups."""
    if len(rows) > IMPORTANCE_ROWS:
        rows = rows.sample(n=IMPORTANCE_ROWS, random_state=0)
    imp = model.importance().merge(
        mean_abs_contribution(model.contributions(rows), model.features), on="feature")
    imp["group"] = imp.feature.map(group_of)
    return imp.sort_values("gain", ascending=False).reset_index(drop=True)


def fold_fingerprints(train, valid, test, features: Sequence[str]) -> dict:
    """What a fold's models are trained, held out and tested on (one hash of each slice per
    fold: every model of the fold logs the same)."""
    return {"train": fingerprint(train, features), "held_out": fingerprint(valid, features),
            "test": fingerprint(test, features)}


def _log_result(tracker: Tracker, r: E.ModelResult, test, prints: dict) -> pd.DataFrame | None:
    """Parameters, metrics and artifacts of one model and fold, in the active run."""
    fold = r.fold
    tracker.log_params({"model": r.model.name, **{f"fold_{k}": v for k, v in fold.to_dict().items()},
                        **r.model.params()})
    for subset in ("all", "new"):
        h = r.headline(subset)
        tracker.log_metrics({f"nov_{subset}_{k}": v for k, v in h.items()
                             if k not in ("as_of_date", "subset")})
        for metric in PER_DATE_METRICS:
            tracker.log_metrics({f"year_{subset}_{metric}": r.year_mean(metric, subset)})
    tracker.log_per_date(r.metrics)
    tracker.log_table(r.metrics, "metrics/per_as_of_date.csv")
    tracker.log_json(prints, "data/fingerprint.json")
    d = E.headline_date(test.as_of_date)
    sel = (test.as_of_date == d).to_numpy()
    if sel.any():
        y = test.label.to_numpy()[sel]
        tracker.log_figure(pr_curve_figure(y, r.test_raw[sel], f"{r.model.name} {d.date()} (test)"),
                           "plots/pr_curve.png")
    cal = M.calibration_table(test.label.to_numpy(), r.test_prob)
    tracker.log_table(cal, "metrics/calibration.csv")
    tracker.log_figure(calibration_figure(cal, f"{r.model.name} {fold.test_year} (test)"),
                       "plots/calibration.png")
    if isinstance(r.model, LightGBMModel):
        imp = importance_table(r.model, test[sel] if sel.any() else test)
        tracker.log_table(imp, "importance/importance.csv")
        tracker.log_table(imp.groupby("group")[["gain", "mean_abs_contribution"]].sum()
                          .sort_values("gain", ascending=False).reset_index(),
                          "importance/by_group.csv")
        tracker.log_figure(importance_figure(imp, "gain", "importance: gain"), "plots/importance_gain.png")
        tracker.log_figure(importance_figure(imp, "mean_abs_contribution", "importance: mean |contribution|"),
                           "plots/importance_contribution.png")
        return imp
    return None


def champion_figures(tracker: Tracker, test: pd.DataFrame, year: int):
    """Gate figures of the current champion on ``test`` (None without a champion)."""
    loaded = tracker.load_alias(CHAMPION)
    if loaded is None:
        return None, None
    version, booster, meta = loaded
    raw, prob = score_with(booster, meta, test)
    per_date = E.evaluate_scores(test, raw, prob)
    return version, gate_figures(f"champion v{version}", year, per_date)


def train_and_register(frame: pd.DataFrame, features: Sequence[str], tracker: Tracker,
                       calendar=None, config: TrainConfig | None = None, log=print) -> TrainingSummary:
    """Evaluate the three models on each fold, log every run, register the latest fold's
    LightGBM as a new version and move an alias by the promotion gate."""
    cfg = config or TrainConfig()
    if cfg.register and not {"rule_baseline", "lightgbm"} <= set(cfg.models):
        raise ValueError("registering needs the LightGBM model and the rule baseline (the gate's bar)")
    features = list(features)
    labelled = frame[frame.label.notna()]
    years = E.completed_years(labelled)
    folds = E.temporal_folds(years, cfg.n_test_years)
    if not folds:
        raise ValueError(f"not enough completed school years to evaluate: {years}")
    production = folds[-1]
    summary = TrainingSummary([], pd.DataFrame(), pd.DataFrame(), folds=folds)
    per_date = []
    for fold in folds:
        train, valid, test = E.split(labelled, fold)
        log(f"fold {fold.name}: train {fold.train_years} ({len(train)} rows), held out "
            f"{fold.valid_years} ({len(valid)}), test {len(test)} rows [{fold.strategy}]")
        prints = fold_fingerprints(train, valid, test, features)
        models = [m for m in build_models(features, lgb_rounds=cfg.lgb_rounds,
                                          early_stopping=cfg.early_stopping, lgb_params=cfg.lgb_params)
                  if m.name in cfg.models]
        for model in models:
            with tracker.run(f"{model.name}_{fold.test_year}",
                             tags={"model": model.name, "test_year": str(fold.test_year),
                                   "kind": "temporal_evaluation"}) as run:
                r = E.fit_and_evaluate(model, train, valid, test, fold, calendar,
                                       n_draws=cfg.lead_draws)
                imp = _log_result(tracker, r, test, prints)
                summary.results.append(r)
                summary.run_ids[(model.name, fold.test_year)] = run.info.run_id
                per_date.append(r.metrics.assign(model=model.name, test_year=fold.test_year))
                h = r.headline("all")
                log(f"  {model.name}: Nov p@5% {h.get('precision_top', float('nan')):.3f}, "
                    f"p@3/school {h.get('precision_school', float('nan')):.3f}, "
                    f"AUC {h.get('roc_auc', float('nan')):.3f}, PR-AUC {h.get('pr_auc', float('nan')):.3f}")
                if fold == production and isinstance(model, LightGBMModel) and cfg.register:
                    summary.importance = imp
                    _register(tracker, summary, r, prints, valid, test, features, run.info.run_id,
                              log, cfg.ece_tolerance)
    summary.per_date = pd.concat(per_date, ignore_index=True)
    summary.headline = E.headline_table(summary.results)
    return summary


def _register(tracker, summary, r: E.ModelResult, prints: dict, valid, test, features, run_id, log,
              ece_tolerance: float = ECE_TOLERANCE):
    year = r.fold.test_year
    yv = valid.label.to_numpy()
    thresholds = choose_band_thresholds(yv, r.valid_prob)
    bands = pd.concat([band_precision(yv, r.valid_prob, thresholds).assign(slice="held_out"),
                       band_precision(test.label.to_numpy(), r.test_prob, thresholds).assign(slice="test")])
    tracker.log_table(bands, "bands/band_precision.csv")
    summary.bands, summary.thresholds = bands, thresholds
    # the bar: the current champion on the same test rows (before the new version exists)
    champ_version, champ = champion_figures(tracker, test, year)
    baseline = next(x for x in summary.results
                    if x.fold == r.fold and x.model.name == "rule_baseline")
    train_sha = prints["train"]["sha256"]
    meta = {
        "model": "lightgbm", "features": list(features), "calibration": r.model.calibrator.to_dict(),
        "band_thresholds": thresholds, "band_targets": dict(BANDS), "fold": r.fold.to_dict(),
        "best_iteration": int(r.model.train_params.get("best_iteration", 0)),
        "train_sha256": train_sha, "test_year": year,
    }
    # the same training (data, held-out slice, features, parameters) gives the same model: a
    # nightly rerun with no new labels registers nothing new
    key = hashlib.sha256(json.dumps(
        [train_sha, prints["held_out"]["sha256"], list(features),
         {k: v for k, v in r.model.train_params.items() if k != "best_iteration"}],
        sort_keys=True, default=str).encode()).hexdigest()
    same = tracker.version_with_tag("training_key", key)
    if same is not None:
        tracker.client.set_tag(run_id, "registered_as", f"unchanged: version {same.version}")
        log(f"training unchanged since futoukou_risk v{same.version} "
            f"({', '.join(same.aliases) or 'no alias'}): no new version registered")
        summary.version, summary.decision, summary.unchanged_version = str(same.version), None, str(same.version)
        return
    version = tracker.log_lightgbm(r.model.booster, meta,
                                   example=pd.DataFrame(feature_matrix(test.head(20), features),
                                                        columns=list(features)))
    tracker.client.set_model_version_tag(tracker.model_name, version, "training_key", key)
    cand = gate_figures(f"candidate v{version}", year, r.metrics)
    decision = decide(cand, champ, gate_figures("rule_baseline", year, baseline.metrics),
                      ece_tolerance)
    f = r.fold
    tracker.apply_decision(version, decision, run_id, description=(
        f"LightGBM on {len(features)} features, trained on school years "
        f"{', '.join(map(str, f.train_years))}, early-stopped and calibrated on "
        f"{', '.join(map(str, f.valid_years))} ({f.strategy}), tested on {year}; best iteration "
        f"{meta['best_iteration']}."))
    log(f"registered futoukou_risk v{version}: {decision.alias} — {decision.reason}")
    summary.version, summary.decision = version, decision


def score_cohort(frame: pd.DataFrame, booster, meta: dict, *, model_name: str, version: str,
                 scored_at) -> pd.DataFrame:
    """``outputs.risk_scores`` rows for the cohort rows of one as-of date."""
    feats = list(meta["features"])
    raw, prob = score_with(booster, meta, frame)
    contrib = booster.predict(feature_matrix(frame, feats), pred_contrib=True)
    reasons = explain(contrib, frame, feats, grade_means=reference_means(frame, feats))
    return risk_score_frame(frame, raw, prob, reasons, meta.get("band_thresholds", {}),
                            model_name=model_name, model_version=version, scored_at=scored_at)
