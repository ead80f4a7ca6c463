"""Temporal evaluation: train on the past, test on a later school year, as the city would.

**Folds.** For each of the last ``n_test_years`` completed school years ``Y`` (the survey of ``Y``
exists, so the label is known):

* *train*: the cohort rows (as-of dates May–March) of the completed years before ``Y - 1``;
* *held out* (early stopping and calibration): the rows of ``Y - 1``, the latest year before
  ``Y`` — a later slice than the training years, as the model will meet later data;
* *test*: the rows of ``Y``.

Every label of the train and held-out years was known by May 1 of ``Y`` (the survey of ``Y - 1``
is compiled then), so a model of fold ``Y`` could have been trained before ``Y``'s first
prediction. With only one completed year before ``Y`` (a short history), that year is split by
pupil instead — a quarter of its pupils (by a hash of the pseudonym) are held out — and the fold
says so (``strategy = "pupil_holdout"``).

**Metrics** are computed per as-of date and per subset: ``all`` (the cohort) and ``new`` (not
counted 不登校 in the previous year's survey). The **headline** is the first as-of date in
November — the city's first prediction of the year.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from ml import metrics as M

FRACTION = 0.05      # the top 5% of the cohort
K_PER_SCHOOL = 3     # what one school's case meeting can take
HOLDOUT_SHARE = 0.25
HEADLINE_MONTH = 11


@dataclass(frozen=True)
class Fold:
    test_year: int
    valid_years: tuple[int, ...]
    train_years: tuple[int, ...]
    strategy: str  # "later_year" or "pupil_holdout"

    @property
    def name(self) -> str:
        return f"test_{self.test_year}"

    def to_dict(self) -> dict:
        return {"test_year": self.test_year, "valid_years": list(self.valid_years),
                "train_years": list(self.train_years), "strategy": self.strategy}


def completed_years(frame: pd.DataFrame) -> list[int]:
    """School years whose label exists (their long-absence survey is in staging)."""
    has = frame.groupby("school_year")["label"].apply(lambda s: s.notna().all() and len(s) > 0)
    return sorted(int(y) for y, ok in has.items() if ok)


def temporal_folds(years: Sequence[int], n_test_years: int = 2) -> list[Fold]:
    """Folds for the last ``n_test_years`` of ``years`` (completed years) that have history."""
    years = sorted(set(int(y) for y in years))
    folds = []
    for y in years[-n_test_years:]:
        prior = [p for p in years if p < y]
        if len(prior) >= 2:
            folds.append(Fold(y, (prior[-1],), tuple(prior[:-1]), "later_year"))
        elif len(prior) == 1:
            folds.append(Fold(y, tuple(prior), tuple(prior), "pupil_holdout"))
    return folds


# a model needs a completed year to test on and at least one completed year before it to train
# and calibrate on (split by pupil when there is only one)
MIN_COMPLETED_YEARS = 2


def history_shortfall(years: Sequence[int], needed: int = MIN_COMPLETED_YEARS) -> str | None:
    """None when ``years`` (completed school years) are enough for a model, else what is
    missing in words: "needs 2 completed school years, has 1 (2025)"."""
    years = sorted(set(int(y) for y in years))
    if len(years) >= needed:
        return None
    has = f"{len(years)} ({', '.join(map(str, years))})" if years else "none"
    return f"needs {needed} completed school years (with their long-absence survey), has {has}"


def production_fold(years: Sequence[int]) -> Fold | None:
    """The fold whose test year is the latest completed year: its model is the one registered
    (its test figures are then out of sample for the promotion gate)."""
    folds = temporal_folds(years, 1)
    return folds[0] if folds else None


def _held_out_pupil(pupil_ids: pd.Series, share: float = HOLDOUT_SHARE) -> np.ndarray:
    def h(p: str) -> float:
        return int(hashlib.sha256(("holdout:" + p).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

    uniq = pd.Series(pupil_ids.unique())
    held = dict(zip(uniq, uniq.map(h) < share))
    return pupil_ids.map(held).to_numpy(dtype=bool)


def split(frame: pd.DataFrame, fold: Fold) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, held out, test) rows of a fold; train and held out keep labelled rows only."""
    labelled = frame["label"].notna()
    years = frame["school_year"]
    test = frame[years == fold.test_year]
    if fold.strategy == "later_year":
        train = frame[years.isin(fold.train_years) & labelled]
        valid = frame[years.isin(fold.valid_years) & labelled]
    else:
        pool = frame[years.isin(fold.train_years) & labelled]
        held = _held_out_pupil(pool["pupil_id"])
        train, valid = pool[~held], pool[held]
    return train, valid, test


def headline_date(dates) -> pd.Timestamp | None:
    """The first as-of date in November among ``dates`` (else the first one after it)."""
    ds = sorted(pd.to_datetime(pd.Series(dates)).unique())
    for d in ds:
        if d.month == HEADLINE_MONTH:
            return pd.Timestamp(d)
    later = [d for d in ds if (d.month >= HEADLINE_MONTH or d.month < 4)]
    return pd.Timestamp(later[0]) if later else None


def subsets(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    prev = frame["futoukou_prev_year"]
    new = ~(prev.fillna(False).astype(bool)).to_numpy()
    return {"all": np.ones(len(frame), dtype=bool), "new": new}


def evaluate_scores(frame: pd.DataFrame, raw: np.ndarray, prob: np.ndarray, *,
                    fraction: float = FRACTION, k_per_school: int = K_PER_SCHOOL) -> pd.DataFrame:
    """Metrics per (as-of date, subset) of scored, labelled rows of one school year.

    The top ``fraction`` and top ``k_per_school`` lists are drawn from each subset's own rows
    (for ``new``: the list a meeting would make after setting aside last year's cases).
    """
    rows = []
    f = frame.assign(_raw=np.asarray(raw, dtype=float), _prob=np.asarray(prob, dtype=float))
    f = f[f["label"].notna()]
    masks = subsets(f)
    for name, mask in masks.items():
        sub = f[mask]
        for d, g in sub.groupby("as_of_date", sort=True):
            m = M.ranking_metrics(g["label"].to_numpy(), g["_raw"].to_numpy(), g["_prob"].to_numpy(),
                                  groups=g["school_code"].to_numpy(), fraction=fraction,
                                  k_per_group=k_per_school)
            rows.append({"as_of_date": pd.Timestamp(d), "subset": name, **m})
    return pd.DataFrame(rows)


def lead_time(frame: pd.DataFrame, raw: np.ndarray, calendar, *, fraction: float = FRACTION,
              n_draws: int = 20, seed: int = 0, subset: str = "all") -> dict:
    """Lead time (:func:`ml.metrics.lead_times`) over the as-of dates of a test year."""
    f = frame.assign(score=np.asarray(raw, dtype=float))
    f = f[f["label"].notna()]
    f = f[subsets(f)[subset]]
    f = f.rename(columns={"date_30th_nonillness_absence": "date_30th"})
    f["label"] = f["label"].astype(int)
    return M.lead_times(f[["pupil_id", "as_of_date", "score", "label", "date_30th"]], calendar,
                        fraction=fraction, n_draws=n_draws, seed=seed)


@dataclass
class ModelResult:
    model: object
    fold: Fold
    metrics: pd.DataFrame                       # per as-of date and subset
    lead: dict[str, dict] = field(default_factory=dict)   # subset -> lead-time stats
    test_raw: np.ndarray | None = None
    test_prob: np.ndarray | None = None
    valid_raw: np.ndarray | None = None
    valid_prob: np.ndarray | None = None

    def headline(self, subset: str = "all") -> dict:
        m = self.metrics[self.metrics.subset == subset]
        d = headline_date(m.as_of_date)
        if d is None:
            return {}
        row = m[m.as_of_date == d].iloc[0].to_dict()
        row.update({f"lead_{k}": v for k, v in self.lead.get(subset, {}).items()})
        return row

    def year_mean(self, metric: str, subset: str = "all") -> float:
        m = self.metrics[self.metrics.subset == subset]
        return float(m[metric].mean()) if len(m) else float("nan")


def fit_and_evaluate(model, train: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame,
                     fold: Fold, calendar=None, *, n_draws: int = 20) -> ModelResult:
    """Fit on ``train`` (early stopping and calibration on ``valid``), evaluate on ``test``."""
    model.fit(train, valid)
    # each slice scored once: ``probability`` maps raw scores (``predict`` would score again)
    raw, valid_raw = model.raw(test), model.raw(valid)
    prob = model.probability(raw)
    metrics = evaluate_scores(test, raw, prob)
    lead = {}
    if calendar is not None and len(calendar):
        lead = {s: lead_time(test, raw, calendar, n_draws=n_draws, subset=s) for s in ("all", "new")}
    return ModelResult(model, fold, metrics, lead, raw, prob, valid_raw, model.probability(valid_raw))


def evaluate_fold(frame: pd.DataFrame, fold: Fold, models: Sequence, calendar=None, *,
                  n_draws: int = 20) -> list[ModelResult]:
    train, valid, test = split(frame, fold)
    if train.empty or valid.empty or test.empty:
        raise ValueError(f"fold {fold.name} has an empty part: train {len(train)}, held out "
                         f"{len(valid)}, test {len(test)}")
    return [fit_and_evaluate(m, train, valid, test, fold, calendar, n_draws=n_draws) for m in models]


def headline_table(results: Sequence[ModelResult]) -> pd.DataFrame:
    """One row per (fold, model, subset) at the headline date, with lead times."""
    rows = []
    for r in results:
        for subset in ("all", "new"):
            h = r.headline(subset)
            if h:
                rows.append({"test_year": r.fold.test_year, "model": r.model.name,
                             "subset": subset, **h})
    return pd.DataFrame(rows)
