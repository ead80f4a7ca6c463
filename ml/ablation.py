"""Which data does the model need? Leave-one-source-out and single-source LightGBM runs.

For one fold (by default the latest completed year's), LightGBM is trained on

* every feature (``full``),
* every feature except one source group's (``leave_one_out``), for every group, and
* one source group's features alone (``single_source``), for every group,

and each is scored on the test year's headline as-of date (early November, whole cohort).
Metric changes against ``full`` get 95 % intervals from a bootstrap over pupils: the test
pupils are resampled with replacement, every variant is scored on the same resample, and the
2.5th and 97.5th percentiles of the difference are reported. That interval covers the test
pupils, not the fit: two fits on slightly different data differ too (early stopping lands on
another round). So the full model is also refitted ``refits`` times on bootstrap resamples of the
training pupils, and the standard deviation of its test metric over those refits is the
**refit noise** (``refit_sd``). A source is **needed** when leaving it out lowers the metric with
an interval wholly below zero *and* by more than twice the refit noise. A single-source value
above the rule baseline's means the source carries signal on its own.

Training rows are thinned to the as-of months of :attr:`AblationConfig.train_months` — by
default November only, the month the ablation is scored on — to keep the 2 × groups + 1 fits
affordable (about a quarter of a minute each on the default city and two cores); the held-out
slice used for early stopping is thinned the same way, the test date never. The variants are
fitted identically, so their differences are comparable; the full variant is a little weaker
than the main model trained on every month.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from ml import evaluation as E
from ml import metrics as M
from ml.feature_groups import BY_KEY, columns_by_group
from ml.models import LightGBMModel, RuleBaseline

METRICS = ("roc_auc", "pr_auc", "precision_top", "precision_school")


@dataclass
class AblationConfig:
    train_months: tuple[int, ...] | None = (11,)
    lgb_rounds: int = 600  # at 300 the slowest leave-one-out fits were still improving
    early_stopping: int = 30
    # faster than the main model (coarser bins, larger steps) and without row or feature
    # sampling, so that two variants differ by their features, not by the luck of the draw
    lgb_params: dict = field(default_factory=lambda: {
        "learning_rate": 0.1, "max_bin": 63, "feature_fraction": 1.0, "bagging_fraction": 1.0,
        "bagging_freq": 0})
    n_boot: int = 200
    seed: int = 0
    groups: tuple[str, ...] | None = None  # default: every group with features
    refits: int = 3  # refits of the full model on resampled training pupils (the noise floor)


def _metric(name: str, y: np.ndarray, s: np.ndarray, schools: np.ndarray) -> float:
    if name == "roc_auc":
        return M.roc_auc(y, s)
    if name == "pr_auc":
        return M.pr_auc(y, s)
    if name == "precision_top":
        return M.at_fraction(y, s, E.FRACTION)["precision"]
    if name == "precision_school":
        return M.per_group_at_k(y, s, schools, E.K_PER_SCHOOL)["precision"]
    if name == "r_precision":
        return M.r_precision(y, s)
    if name in M.RECALL_FRACTIONS:
        return M.recall_at_fraction(y, s, M.RECALL_FRACTIONS[name])
    raise KeyError(name)


def _thin(frame: pd.DataFrame, months) -> pd.DataFrame:
    if not months:
        return frame
    return frame[pd.to_datetime(frame.as_of_date).dt.month.isin(months)]


def resample_pupils(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Pupils drawn with replacement, each with all their rows (a pupil's rows stay together)."""
    pupils = frame.pupil_id.unique()
    drawn = pd.Series(rng.choice(pupils, size=len(pupils), replace=True), name="pupil_id")
    return frame.merge(drawn.to_frame(), on="pupil_id")


def refit_noise(y: np.ndarray, schools: np.ndarray, scores: Sequence[np.ndarray],
                metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """Standard deviation of each metric over fits of one model (sample SD; NaN below two)."""
    out = {}
    for m in metrics:
        vals = np.array([_metric(m, y, s, schools) for s in scores], dtype=float)
        out[m] = float(np.std(vals, ddof=1)) if len(vals) >= 2 else float("nan")
    return out


def bootstrap_table(y: np.ndarray, schools: np.ndarray, scores: dict[str, np.ndarray],
                    reference: str, *, n_boot: int = 200, seed: int = 0,
                    metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Per variant and metric: value, change against ``reference`` and its bootstrap interval.

    Rows of ``y``/``scores`` are pupils (one as-of date), so resampling rows resamples pupils.
    """
    rng = np.random.default_rng(seed)
    n = len(y)
    point = {v: {m: _metric(m, y, s, schools) for m in metrics} for v, s in scores.items()}
    diffs = {v: {m: [] for m in metrics} for v in scores}
    vals = {v: {m: [] for m in metrics} for v in scores}
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        yb, gb = y[idx], schools[idx]
        if yb.min() == yb.max():
            continue
        ref = {m: _metric(m, yb, scores[reference][idx], gb) for m in metrics}
        for v, s in scores.items():
            for m in metrics:
                val = ref[m] if v == reference else _metric(m, yb, s[idx], gb)
                vals[v][m].append(val)
                diffs[v][m].append(val - ref[m])
    rows = []
    for v in scores:
        for m in metrics:
            d = np.asarray(diffs[v][m], dtype=float)
            x = np.asarray(vals[v][m], dtype=float)
            rows.append({
                "variant": v, "metric": m, "value": point[v][m],
                "value_low": float(np.nanpercentile(x, 2.5)) if len(x) else np.nan,
                "value_high": float(np.nanpercentile(x, 97.5)) if len(x) else np.nan,
                "delta": point[v][m] - point[reference][m],
                "delta_low": float(np.nanpercentile(d, 2.5)) if len(d) else np.nan,
                "delta_high": float(np.nanpercentile(d, 97.5)) if len(d) else np.nan,
            })
    return pd.DataFrame(rows)


@dataclass
class AblationResult:
    table: pd.DataFrame       # one row per (variant, metric)
    fold: E.Fold
    as_of_date: pd.Timestamp
    variants: pd.DataFrame    # variant, kind, group, features, best_iteration
    refit_sd: dict = field(default_factory=dict)  # metric -> SD of the full model over refits

    def wide(self, metric: str) -> pd.DataFrame:
        """One row per variant for one metric, kinds and groups as columns."""
        t = self.table[self.table.metric == metric].merge(self.variants, on="variant")
        return t[["kind", "group", "group_ja", "n_features", "value", "value_low", "value_high",
                  "delta", "delta_low", "delta_high", "refit_sd", "needed"]].reset_index(drop=True)

    def needed(self, metric: str = "pr_auc") -> list[str]:
        """Source groups whose removal costs more than pupil sampling and refit noise explain."""
        w = self.wide(metric)
        return w[(w.kind == "leave_one_out") & w.needed].group.tolist()


def run_ablation(frame: pd.DataFrame, fold: E.Fold, features: Sequence[str],
                 config: AblationConfig | None = None, log=print, on_variant=None) -> AblationResult:
    """Fit every variant on the fold and compare them on its headline as-of date.

    ``on_variant(name, kind, group, feats, model)`` is called after each fit (for MLflow)."""
    cfg = config or AblationConfig()
    train, valid, test = E.split(frame, fold)
    train, valid = _thin(train, cfg.train_months), _thin(valid, cfg.train_months)
    d = E.headline_date(test.as_of_date)
    test = test[test.as_of_date == d]
    y = test.label.to_numpy(dtype=float)
    schools = test.school_code.to_numpy()
    by_group = columns_by_group(features)
    groups = [g for g in (cfg.groups or by_group) if g in by_group]
    plan = [("full", "full", "", list(features))]
    for g in groups:
        plan.append((f"without_{g}", "leave_one_out", g, [c for c in features if c not in by_group[g]]))
        plan.append((f"only_{g}", "single_source", g, list(by_group[g])))
    scores, variants = {}, []

    def fit(feats, rows) -> LightGBMModel:
        """Every variant and refit fitted alike: only the features or the training rows differ."""
        m = LightGBMModel(feats, num_boost_round=cfg.lgb_rounds,
                          early_stopping_rounds=cfg.early_stopping, params_override=cfg.lgb_params)
        m.fit(rows, valid)
        return m

    for name, kind, group, feats in plan:
        if not feats:
            continue
        m = fit(feats, train)
        scores[name] = m.raw(test)
        variants.append({"variant": name, "kind": kind, "group": group,
                         "group_ja": BY_KEY[group].title_ja if group else "",
                         "n_features": len(feats),
                         "best_iteration": int(m.train_params.get("best_iteration", 0))})
        log(f"ablation {name}: {len(feats)} features, AUC {M.roc_auc(y, scores[name]):.3f}")
        if on_variant:
            on_variant(name, kind, group, feats, m)
    scores["rule_baseline"] = RuleBaseline().raw(test)
    variants.append({"variant": "rule_baseline", "kind": "baseline", "group": "", "group_ja": "",
                     "n_features": 4, "best_iteration": 0})
    table = bootstrap_table(y, schools, scores, "full", n_boot=cfg.n_boot, seed=cfg.seed)
    refit_scores = [scores["full"]] if "full" in scores else []
    rng = np.random.default_rng(cfg.seed + 1)
    for r in range(cfg.refits if refit_scores else 0):
        m = fit(list(features), resample_pupils(train, rng))
        refit_scores.append(m.raw(test))
        log(f"ablation refit {r + 1} of the full model: AUC {M.roc_auc(y, refit_scores[-1]):.3f}, "
            f"best iteration {int(m.train_params.get('best_iteration', 0))}")
    noise = refit_noise(y, schools, refit_scores)
    table["refit_sd"] = table.metric.map(noise)
    kinds = {v["variant"]: v["kind"] for v in variants}
    table["needed"] = ((table.variant.map(kinds) == "leave_one_out") & (table.delta_high < 0)
                       & (table.delta < -2 * table.refit_sd.fillna(0)))
    return AblationResult(table, fold, d, pd.DataFrame(variants), noise)
