"""The three models compared on one cohort: the city's rule, a logistic regression, LightGBM.

All three share one interface: ``fit(train, valid)`` on model frames (:mod:`ml.dataset`),
``raw(frame)`` — the ranking score — and ``predict(frame)`` — the calibrated probability, which
is ``probability(raw(frame))`` (an evaluation that has the raw scores maps them, without scoring
the rows twice).

* **Rule baseline** (:class:`RuleBaseline`): the city's earlier logic — the pupil's absence days
  so far this year and a projection of the year's absence count. Score = projected absences for
  the year (absences so far + the year-to-date absence rate × the school days left of a
  :data:`SCHOOL_DAYS_PER_YEAR`-day year), ties broken by absences so far; before this year's
  attendance exists (the first as-of date of a year) the previous year's absence count stands
  in. It learns nothing from the labels except its calibration.
* **Logistic regression** (:class:`LogisticModel`): median imputation with a missing
  indicator for every column that had NULLs in training, standard scaling, L2-penalised
  logistic regression with balanced class weights, fitted on every positive and a quarter of
  the negatives weighted ×4 (:func:`negative_sample`: the same objective in expectation, a
  quarter of the cost).
* **LightGBM** (:class:`LightGBMModel`): gradient-boosted trees, positives up-weighted by
  ``negatives / positives`` (imbalance), early stopping on the held-out slice by average
  precision.

**Calibration.** Every model's raw score is mapped to a probability by Platt scaling fitted on
the held-out slice (a one-feature logistic regression on the raw margin). Platt, not isotonic:
isotonic regression is a step function that ties whole blocks of pupils at the top of a list
that a case meeting has to read in order; Platt is strictly monotone, so the calibrated
probability ranks exactly like the raw score. A negative slope (a model that ranks the held-out
slice backwards — e.g. with random labels) is clipped to zero: the probability is then the
base rate for everyone, never a reversed ranking learnt from the held-out slice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from ml.dataset import feature_matrix

SCHOOL_DAYS_PER_YEAR = 200

DEFAULT_LGB_PARAMS = {
    "objective": "binary",
    # chosen on the held-out slice by bench/tune_champion.py (24 seeded random draws, 2026-11-30)
    # and measured again on 2026-12-01 (README, "Peers of the champion"): on a city of 24,000
    # pupils (359 cases) ahead of the previous defaults beyond noise (PR-AUC +0.015, +0.007 to
    # +0.025) and level with a ten-minute FLAML search. Larger leaves, a slow rate, a third of the
    # features per tree, no class weighting; early stopping on the held-out slice picks the
    # number of trees (~250-340 on the default city)
    "learning_rate": 0.02,
    "num_leaves": 63,
    # leaf-wise trees of 63 leaves grew 17 levels deep on average (28 at most); TreeSHAP, which
    # writes every pupil's reasons each night, costs in proportion to depth squared. Capped at 8
    # (2026-12-01, default city, same fold): held-out PR-AUC 0.7356 against 0.7354, test list
    # 0.803 against 0.803; idle, a fit 55.6 s of CPU against 64.0 s, the reasons of 11,860
    # pupils 35.8 s against 92.7 s
    "max_depth": 8,
    "min_data_in_leaf": 20,
    "min_gain_to_split": 1.0,
    "feature_fraction": 0.3,
    # balanced bagging: every tree sees every positive and half of the negatives (cases are
    # ~1.5 % of rows)
    "pos_bagging_fraction": 1.0,
    "neg_bagging_fraction": 0.5,
    "bagging_freq": 1,
    "lambda_l2": 0.0,
    # "balanced" would weigh the positives as all the negatives each tree sees (see fit)
    "scale_pos_weight": 1.0,
    "metric": "average_precision",
    "num_threads": 2,
    "verbose": -1,
    "seed": 7,
    "deterministic": True,
    "force_row_wise": True,
}


def _labels(frame: pd.DataFrame) -> np.ndarray:
    y = frame["label"].to_numpy(dtype=float)
    if np.isnan(y).any():
        raise ValueError("training and calibration rows need a label (completed school years only)")
    return y


# ---------------------------------------------------------------------------------------------
# Calibration
# ---------------------------------------------------------------------------------------------

@dataclass
class PlattCalibrator:
    """p = sigmoid(slope · z + intercept), fitted on a held-out slice; slope clipped at 0."""

    slope: float = 0.0
    intercept: float = 0.0

    def fit(self, z, y) -> "PlattCalibrator":
        from sklearn.linear_model import LogisticRegression

        z = np.asarray(z, dtype=float).reshape(-1, 1)
        y = np.asarray(y, dtype=float)
        if y.min() == y.max():
            rate = np.clip(y.mean(), 1e-6, 1 - 1e-6)
            self.slope, self.intercept = 0.0, float(np.log(rate / (1 - rate)))
            return self
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(z, y)
        self.slope, self.intercept = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        if self.slope <= 0:
            rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
            self.slope, self.intercept = 0.0, float(np.log(rate / (1 - rate)))
        return self

    def __call__(self, z) -> np.ndarray:
        z = np.asarray(z, dtype=float)
        return 1.0 / (1.0 + np.exp(-(self.slope * z + self.intercept)))

    def to_dict(self) -> dict:
        return {"method": "platt", "slope": self.slope, "intercept": self.intercept}

    @classmethod
    def from_dict(cls, d: dict) -> "PlattCalibrator":
        return cls(float(d["slope"]), float(d["intercept"]))


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------

class _CalibratedRaw:
    """``predict`` = the calibrator on the raw score (the regression and LightGBM)."""

    def probability(self, raw: np.ndarray) -> np.ndarray:
        return self.calibrator(raw)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.probability(self.raw(frame))


@dataclass
class RuleBaseline:
    """The city's earlier logic; see the module docstring."""

    name: str = "rule_baseline"
    features: list[str] = field(default_factory=lambda: [
        "att_ytd_absent", "att_ytd_days", "att_prev_absent", "att_prev_days"])
    calibrator: PlattCalibrator = field(default_factory=PlattCalibrator)

    def fit(self, train: pd.DataFrame | None, valid: pd.DataFrame) -> "RuleBaseline":
        self.calibrator = PlattCalibrator().fit(self._z(valid), _labels(valid))
        return self

    @staticmethod
    def projection(frame: pd.DataFrame) -> np.ndarray:
        so_far = frame["att_ytd_absent"].to_numpy(dtype=float)
        days = frame["att_ytd_days"].to_numpy(dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = so_far / days
            remaining = np.maximum(SCHOOL_DAYS_PER_YEAR - days, 0)
            projected = so_far + rate * remaining
        prev = frame["att_prev_absent"].to_numpy(dtype=float) if "att_prev_absent" in frame else \
            np.full(len(frame), np.nan)
        out = np.where(np.isfinite(projected), projected, prev)
        return np.where(np.isfinite(out), out, 0.0)

    def raw(self, frame: pd.DataFrame) -> np.ndarray:
        so_far = np.nan_to_num(frame["att_ytd_absent"].to_numpy(dtype=float))
        # lexicographic: projection first, absences so far breaks its ties
        return self.projection(frame) + 1e-4 * so_far

    def _z(self, frame: pd.DataFrame) -> np.ndarray:
        return np.log1p(np.maximum(self.raw(frame), 0))

    def probability(self, raw: np.ndarray) -> np.ndarray:
        """The calibrated probability of scores from :meth:`raw` (``predict`` without
        recomputing them)."""
        return self.calibrator(np.log1p(np.maximum(raw, 0)))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.probability(self.raw(frame))

    def params(self) -> dict:
        return {"school_days_per_year": SCHOOL_DAYS_PER_YEAR,
                "score": "projected year absences; ties: absences so far"}


def negative_sample(y: np.ndarray, share: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(rows kept, their weights): every positive and a random ``share`` of the negatives, with
    the balanced class weights of all of ``y`` (n / (2 × rows of the class)) and each kept
    negative standing for 1 / share of them — the weighted loss on the kept rows estimates the
    balanced loss on all rows, at a fraction of the cost (positives are ~1.4 % of the rows)."""
    y = np.asarray(y, dtype=float)
    n, pos = len(y), float(y.sum())
    weight = np.where(y == 1, n / (2 * max(pos, 1.0)), n / (2 * max(n - pos, 1.0)))
    if share >= 1:
        return np.arange(n), weight
    keep = (y == 1) | (np.random.default_rng(seed).random(n) < share)
    return np.flatnonzero(keep), np.where(y == 1, weight, weight / share)[keep]


class MedianImputer:
    """sklearn's ``SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)``
    in numpy: each column's NaNs become its training median (0 for a column with no value), and a
    missing indicator is appended for every column that had a NaN in training. The same numbers
    (tests/test_ml_models.py holds them equal) without the masked arrays that made sklearn's
    median take 9 s of the 41 s the regression's fit took on the default city."""

    def fit(self, x: np.ndarray, y=None) -> "MedianImputer":
        import warnings

        x = np.asarray(x)
        with warnings.catch_warnings():  # an all-NaN column: its median is NaN, then 0
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.nanmedian(x, axis=0)
        self.statistics_ = np.where(np.isnan(median), 0.0, median).astype(x.dtype)
        self.missing_ = np.flatnonzero(np.isnan(x).any(axis=0))
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        nan = np.isnan(x)
        return np.hstack([np.where(nan, self.statistics_, x), nan[:, self.missing_].astype(x.dtype)])

    def fit_transform(self, x: np.ndarray, y=None) -> np.ndarray:
        return self.fit(x).transform(x)


@dataclass
class LogisticModel(_CalibratedRaw):
    features: Sequence[str]
    C: float = 0.05
    max_iter: int = 300
    negative_share: float = 0.25   # negatives the regression sees (see negative_sample)
    seed: int = 0
    name: str = "logistic"
    pipeline: object = None
    calibrator: PlattCalibrator = field(default_factory=PlattCalibrator)

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame) -> "LogisticModel":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.features = list(self.features)
        y = _labels(train)
        x = feature_matrix(train, self.features)
        # imputation and scaling learnt on every row; the regression on the sample
        prepare = make_pipeline(MedianImputer(), StandardScaler()).fit(x)
        keep, weight = negative_sample(y, self.negative_share, self.seed)
        regression = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(
            prepare.transform(x[keep]), y[keep], sample_weight=weight)
        self.pipeline = make_pipeline(*prepare, regression)
        self.calibrator = PlattCalibrator().fit(self.raw(valid), _labels(valid))
        return self

    def raw(self, frame: pd.DataFrame) -> np.ndarray:
        return self.pipeline.decision_function(feature_matrix(frame, self.features))

    def params(self) -> dict:
        return {"C": self.C, "max_iter": self.max_iter, "class_weight": "balanced",
                "negatives_kept": self.negative_share, "sample_seed": self.seed,
                "imputation": "median + missing indicators", "scaling": "standard",
                "features": len(self.features)}


def query_groups(keys) -> tuple[np.ndarray, np.ndarray]:
    """(row order, group sizes) for a ranking objective: the rows' positions stably sorted by
    ``keys`` (e.g. the as-of date: one query per list), and the number of rows of each key in
    that order, as ``lightgbm.Dataset(group=...)`` wants them (rows of a query contiguous)."""
    keys = np.asarray(keys)
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if pd.isna(keys).any():
        raise ValueError(f"query group keys: {int(pd.isna(keys).sum())} rows have no key")
    order = np.argsort(keys, kind="stable")
    _, sizes = np.unique(keys[order], return_counts=True)
    return order, sizes


@dataclass
class LightGBMModel(_CalibratedRaw):
    """LightGBM; ``weight_column`` (optional) names a column of the training frame holding each
    row's weight (the held-out slice is never weighted); ``group_column`` (optional, for a
    ranking objective such as ``rank_xendcg``) names the column whose values are the queries —
    training and held-out rows are grouped by it (see :func:`query_groups`)."""

    features: Sequence[str]
    num_boost_round: int = 600
    early_stopping_rounds: int = 50
    params_override: dict = field(default_factory=dict)
    name: str = "lightgbm"
    booster: object = None
    calibrator: PlattCalibrator = field(default_factory=PlattCalibrator)
    train_params: dict = field(default_factory=dict)
    weight_column: str | None = None
    group_column: str | None = None

    def _weights(self, train: pd.DataFrame) -> np.ndarray | None:
        if self.weight_column is None:
            return None
        if self.weight_column not in train.columns:
            raise ValueError(f"training rows have no weight column {self.weight_column!r}")
        w = pd.to_numeric(train[self.weight_column], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(w) | (w < 0)
        if bad.any():
            raise ValueError(f"weight column {self.weight_column!r}: {int(bad.sum())} rows (first row "
                             f"{int(np.flatnonzero(bad)[0])}) are missing, negative or not finite")
        return w

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame) -> "LightGBMModel":
        import lightgbm as lgb

        self.features = list(self.features)
        weight = self._weights(train)
        group = vgroup = None
        if self.group_column is not None:
            for name, f in (("training", train), ("held-out", valid)):
                if self.group_column not in f.columns:
                    raise ValueError(f"{name} rows have no query column {self.group_column!r}")
            order, group = query_groups(train[self.group_column].to_numpy())
            vorder, vgroup = query_groups(valid[self.group_column].to_numpy())
            train, valid = train.iloc[order], valid.iloc[vorder]
            weight = None if weight is None else weight[order]
        y, yv = _labels(train), _labels(valid)
        pos = max(y.sum(), 1.0)
        params = {**DEFAULT_LGB_PARAMS, **self.params_override}
        if params.get("scale_pos_weight") == "balanced":
            # the positives' total weight equals the negatives' in every tree, whose rows hold a
            # ``neg_bagging_fraction`` share of the negatives and every positive
            bagged = float(params.get("neg_bagging_fraction", 1.0)) if int(params.get("bagging_freq", 0)) > 0 else 1.0
            params["scale_pos_weight"] = float((len(y) - y.sum()) / pos) * bagged
        params["num_threads"] = min(int(params.get("num_threads", 2)), 2)
        dtrain = lgb.Dataset(feature_matrix(train, self.features), y, weight=weight, group=group,
                             feature_name=self.features, free_raw_data=True)
        xv = feature_matrix(valid, self.features)
        dvalid = lgb.Dataset(xv, yv, group=vgroup, reference=dtrain)
        callbacks = [lgb.early_stopping(self.early_stopping_rounds, verbose=False)] \
            if yv.min() != yv.max() else []
        self.booster = lgb.train(params, dtrain, num_boost_round=self.num_boost_round,
                                 valid_sets=[dvalid], valid_names=["held_out"], callbacks=callbacks)
        self.train_params = {**params, "best_iteration": int(self.booster.best_iteration or
                                                             self.booster.current_iteration())}
        self.train_params |= {k: v for k, v in (("weight_column", self.weight_column),
                                                ("group_column", self.group_column)) if v is not None}
        self.calibrator = PlattCalibrator().fit(self._raw_matrix(xv), yv)
        return self

    def _iteration(self):
        return self.booster.best_iteration or None

    def raw(self, frame: pd.DataFrame) -> np.ndarray:
        return self._raw_matrix(feature_matrix(frame, self.features))

    def _raw_matrix(self, x: np.ndarray) -> np.ndarray:
        return self.booster.predict(x, raw_score=True, num_iteration=self._iteration())

    def contributions(self, frame: pd.DataFrame) -> np.ndarray:
        """Per-row contributions to the raw log-odds (last column: the bias)."""
        return self.booster.predict(feature_matrix(frame, self.features), pred_contrib=True,
                                    num_iteration=self._iteration())

    def importance(self) -> pd.DataFrame:
        gain = self.booster.feature_importance("gain", iteration=self._iteration())
        split = self.booster.feature_importance("split", iteration=self._iteration())
        return pd.DataFrame({"feature": self.features, "gain": gain, "splits": split})

    def params(self) -> dict:
        return {k: v for k, v in self.train_params.items() if k not in ("verbose",)}


def build_models(features: Sequence[str], *, lgb_rounds: int = 600, early_stopping: int = 50,
                 lgb_params: dict | None = None) -> list:
    """The three models of the comparison, unfitted."""
    return [RuleBaseline(), LogisticModel(features),
            LightGBMModel(features, num_boost_round=lgb_rounds,
                          early_stopping_rounds=early_stopping, params_override=lgb_params or {})]


def mean_abs_contribution(contrib: np.ndarray, features: Sequence[str]) -> pd.DataFrame:
    """Importance as the mean absolute contribution per feature (bias column dropped)."""
    return pd.DataFrame({"feature": list(features),
                         "mean_abs_contribution": np.abs(contrib[:, :-1]).mean(axis=0)})
