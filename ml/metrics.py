"""Pure metrics of a risk list: what a case meeting can take, how early, how well calibrated.

Every ranking metric here treats **ties stochastically**: when the k-th place is shared by ``t``
pupils of whom ``m`` still fit in the list, each of them is in the list with probability
``m / t``. Precision and recall at k are reported as their expectation over that random
tie-breaking (computed exactly, not sampled); lead time, which depends on the sequence of lists
over a year, is averaged over ``n_draws`` random tie-breaks.

Conventions
  * ``k`` for a fraction of the cohort is ``ceil(fraction × n)`` (at least 1).
  * Top k per school: ``min(k, pupils of the school)`` per school; precision is the share of
    the pupils listed (over every school) who became 不登校, recall the share of all who became
    不登校 that were listed.
  * AUCs are NaN when the labels hold one class only.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd


def _arrays(y, score) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float)
    s = np.asarray(score, dtype=float)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"labels and scores must be 1-d of one length, got {y.shape} and {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0/1")
    return y, s


def k_for_fraction(n: int, fraction: float) -> int:
    """List length for a fraction of a cohort of ``n``: ``ceil(fraction × n)``, at least 1."""
    if n <= 0:
        return 0
    return max(1, math.ceil(fraction * n - 1e-9))


def topk_inclusion(score, k: int) -> np.ndarray:
    """Probability that each item is in the top ``k`` when ties are broken at random."""
    s = np.asarray(score, dtype=float)
    n = len(s)
    k = int(min(max(k, 0), n))
    out = np.zeros(n)
    if k == 0:
        return out
    kth = np.partition(s, n - k)[n - k]  # the k-th largest score
    above = s > kth
    tied = s == kth
    out[above] = 1.0
    out[tied] = (k - above.sum()) / tied.sum()
    return out


def grouped_topk_inclusion(score, groups, k: int) -> np.ndarray:
    """:func:`topk_inclusion` within each group, ``min(k, group size)`` per group."""
    s = np.asarray(score, dtype=float)
    g = pd.factorize(np.asarray(groups))[0]
    out = np.zeros(len(s))
    order = np.argsort(g, kind="stable")
    bounds = np.flatnonzero(np.diff(g[order])) + 1
    for idx in np.split(order, bounds):
        if len(idx):
            out[idx] = topk_inclusion(s[idx], k)
    return out


def _share(num: float, den: float) -> float:
    """A ratio of expected counts, clipped to [0, 1] against rounding (m/t summed t times)."""
    return float(min(max(num / den, 0.0), 1.0)) if den else float("nan")


def precision_at_k(y, score, k: int) -> float:
    """Expected share of positives among the top ``k`` (random tie-breaking)."""
    y, s = _arrays(y, score)
    k = min(k, len(y))
    if k <= 0:
        return float("nan")
    return _share(float((topk_inclusion(s, k) * y).sum()), k)


def recall_at_k(y, score, k: int) -> float:
    """Expected share of all positives that are in the top ``k`` (NaN without positives)."""
    y, s = _arrays(y, score)
    return _share(float((topk_inclusion(s, k) * y).sum()), y.sum())


def at_fraction(y, score, fraction: float = 0.05) -> dict[str, float]:
    """Precision and recall in the top ``fraction`` of the cohort, and the list length."""
    y, s = _arrays(y, score)
    k = k_for_fraction(len(y), fraction)
    incl = topk_inclusion(s, k)
    tp = float((incl * y).sum())
    return {"k": k, "precision": _share(tp, k), "recall": _share(tp, y.sum())}


def r_precision(y, score) -> float:
    """Precision in the top ``k`` where ``k`` is the number of positives (R-precision).

    Unlike precision in a fixed top fraction, its ceiling is 1 whatever the base rate; at
    ``k`` = positives precision and recall are equal. NaN without positives."""
    y, s = _arrays(y, score)
    k = int(y.sum())
    if k == 0:
        return float("nan")
    return precision_at_k(y, s, k)


def recall_at_fraction(y, score, fraction: float) -> float:
    """Share of all positives in the top ``fraction`` of the cohort (NaN without positives)."""
    y, s = _arrays(y, score)
    return recall_at_k(y, s, k_for_fraction(len(y), fraction))


# the recall lists shorter than the headline list (top 1 % and 2 % of the cohort)
RECALL_FRACTIONS = {"recall_top1": 0.01, "recall_top2": 0.02}


def per_group_at_k(y, score, groups, k: int = 3) -> dict[str, float]:
    """Precision and recall when each group (school) lists its top ``k``."""
    y, s = _arrays(y, score)
    incl = grouped_topk_inclusion(s, groups, k)
    listed = incl.sum()
    tp = float((incl * y).sum())
    return {"k": float(listed), "precision": _share(tp, listed), "recall": _share(tp, y.sum())}


def roc_auc(y, score) -> float:
    """Area under the ROC curve as the Mann-Whitney statistic on average ranks (a tie between a
    positive and a negative counts one half, as in scikit-learn); fast enough to bootstrap."""
    from scipy.stats import rankdata

    y, s = _arrays(y, score)
    if len(y) == 0 or y.min() == y.max():
        return float("nan")
    ranks = rankdata(s)
    pos = y == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pr_auc(y, score) -> float:
    """Average precision (the area under the precision-recall curve, step-wise)."""
    from sklearn.metrics import average_precision_score

    y, s = _arrays(y, score)
    if y.sum() == 0:
        return float("nan")
    return float(average_precision_score(y, s))


def brier(y, prob) -> float:
    y, p = _arrays(y, prob)
    return float(np.mean((p - y) ** 2))


def calibration_table(y, prob, n_bins: int = 10) -> pd.DataFrame:
    """Calibration curve on quantile bins of the predicted probability.

    One row per non-empty bin: ``n``, ``mean_predicted``, ``observed_rate`` and the bin's
    score range. Tied probabilities stay in one bin (bins follow distinct values).
    """
    y, p = _arrays(y, prob)
    if len(p) == 0:
        return pd.DataFrame(columns=["bin", "n", "mean_predicted", "observed_rate", "p_min", "p_max"])
    order = np.argsort(p, kind="stable")
    share_below = np.empty(len(p))
    share_below[order] = np.arange(len(p)) / len(p)
    q = np.minimum((share_below * n_bins).astype(int), n_bins - 1)
    # tied probabilities share the bin of their first (lowest) occurrence
    bins = pd.Series(q).groupby(p).transform("min").to_numpy()
    frame = pd.DataFrame({"bin": bins, "y": y, "p": p})
    out = frame.groupby("bin").agg(n=("y", "size"), mean_predicted=("p", "mean"),
                                   observed_rate=("y", "mean"), p_min=("p", "min"),
                                   p_max=("p", "max")).reset_index()
    return out


def expected_calibration_error(y, prob, n_bins: int = 10) -> float:
    """Σ_bins (n_b / n) · |mean predicted − observed rate| on :func:`calibration_table` bins."""
    t = calibration_table(y, prob, n_bins)
    if t.empty:
        return float("nan")
    return float((t.n * (t.mean_predicted - t.observed_rate).abs()).sum() / t.n.sum())


def ranking_metrics(y, score, prob=None, *, groups=None, fraction: float = 0.05,
                    k_per_group: int = 3) -> dict[str, float]:
    """Every metric of one list: ranking by ``score``, calibration of ``prob`` (default score)."""
    y, s = _arrays(y, score)
    p = s if prob is None else _arrays(y, prob)[1]
    top = at_fraction(y, s, fraction)
    out = {
        "n": float(len(y)), "positives": float(y.sum()),
        "base_rate": float(y.mean()) if len(y) else float("nan"),
        "k_top": float(top["k"]), "precision_top": top["precision"], "recall_top": top["recall"],
        "r_precision": r_precision(y, s),
        **{name: recall_at_fraction(y, s, f) for name, f in RECALL_FRACTIONS.items()},
        "roc_auc": roc_auc(y, s), "pr_auc": pr_auc(y, s),
        "brier": brier(y, p), "ece": expected_calibration_error(y, p),
        "mean_predicted": float(p.mean()) if len(p) else float("nan"),
    }
    if groups is not None:
        g = per_group_at_k(y, s, groups, k_per_group)
        out.update({"k_school": g["k"], "precision_school": g["precision"],
                    "recall_school": g["recall"]})
    return out


# ---------------------------------------------------------------------------------------------
# Lead time
# ---------------------------------------------------------------------------------------------

def school_days_between(calendar: Sequence, start, end) -> np.ndarray:
    """Number of school days ``d`` of ``calendar`` with ``start <= d < end`` (elementwise)."""
    cal = np.sort(np.asarray(pd.to_datetime(pd.Series(list(calendar))).to_numpy(dtype="datetime64[D]")))
    s = np.asarray(pd.to_datetime(pd.Series(np.atleast_1d(start))).to_numpy(dtype="datetime64[D]"))
    e = np.asarray(pd.to_datetime(pd.Series(np.atleast_1d(end))).to_numpy(dtype="datetime64[D]"))
    return np.maximum(np.searchsorted(cal, e, "left") - np.searchsorted(cal, s, "left"), 0)


def _ranks_before_ties(dates: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: how many rows of its date score higher, how many (itself included) score the
    same, and a number for its (date, score) group."""
    order = np.lexsort((-score, dates))
    d, s = dates[order], score[order]
    new_date = np.r_[True, d[1:] != d[:-1]]
    new_group = new_date | np.r_[True, s[1:] != s[:-1]]
    group_sorted = np.cumsum(new_group) - 1
    first_of_group = np.flatnonzero(new_group)
    date_start = np.maximum.accumulate(np.where(new_date, np.arange(len(d)), 0))
    higher_sorted = first_of_group[group_sorted] - date_start
    tied_sorted = np.diff(np.r_[first_of_group, len(d)])[group_sorted]
    higher, tied, group = (np.empty(len(d), dtype=np.int64) for _ in range(3))
    higher[order], tied[order], group[order] = higher_sorted, tied_sorted, group_sorted
    return higher, tied, group


def lead_times(frame: pd.DataFrame, calendar: Sequence, *, fraction: float = 0.05,
               n_draws: int = 20, seed: int = 0, return_pupils: bool = False):
    """How many school days before their 30th non-illness absence pupils were first listed.

    ``frame``: one row per (pupil, as-of date) of the cohort — columns ``pupil_id``,
    ``as_of_date``, ``score``, ``label`` (0/1: became 不登校 that year) and
    ``date_30th`` (the date of the 30th non-illness absence, NaT if none). At every as-of date
    the top ``fraction`` of that date's cohort is listed. For each pupil with ``label`` = 1 and a
    ``date_30th``, the lead time is the number of school days from the first as-of date on or
    before ``date_30th`` at which the pupil was listed up to (not including) ``date_30th``;
    0 if never listed by then.

    Ties are broken at random in each of ``n_draws`` draws; each statistic is the mean over the
    draws: ``median`` and ``mean`` (all such pupils, never listed = 0), ``median_listed`` (among
    those listed in time), ``share_listed`` (listed on or before the 30th absence), ``pupils``.
    """
    f = frame[["pupil_id", "as_of_date", "score", "label", "date_30th"]].copy()
    f["as_of_date"] = pd.to_datetime(f["as_of_date"])
    f["date_30th"] = pd.to_datetime(f["date_30th"])
    if not np.all(np.isfinite(f["score"].to_numpy(dtype=float))):
        raise ValueError("scores must be finite")
    f = f.sort_values(["as_of_date", "pupil_id"], kind="stable").reset_index(drop=True)
    n_per_date = f.groupby("as_of_date")["score"].transform("size").to_numpy()
    sizes, at = np.unique(n_per_date, return_inverse=True)
    k = np.array([k_for_fraction(int(n), fraction) for n in sizes], dtype=np.int64)[at]
    target = (f["label"].to_numpy(dtype=float) == 1) & f["date_30th"].notna().to_numpy() & \
        (f["as_of_date"] <= f["date_30th"]).to_numpy()
    pupils = f.loc[(f["label"] == 1) & f["date_30th"].notna(), ["pupil_id", "date_30th"]] \
        .drop_duplicates("pupil_id").set_index("pupil_id")["date_30th"]
    empty = {"pupils": 0, "median": float("nan"), "mean": float("nan"),
             "median_listed": float("nan"), "share_listed": float("nan")}
    if pupils.empty:
        return (empty, pd.DataFrame()) if return_pupils else empty
    lead_if = np.zeros(len(f))
    lead_if[target] = school_days_between(calendar, f.loc[target, "as_of_date"],
                                          f.loc[target, "date_30th"])
    rng = np.random.default_rng(seed)
    dates = f["as_of_date"].to_numpy()
    score = f["score"].to_numpy(dtype=float)
    # A row's rank on its date is (rows scoring higher) + (its place among the rows tied with it,
    # by this draw's random numbers). Only the target rows of a tie group that straddles the cut
    # k depend on the draw, so each draw sorts just those groups: the same ranks as sorting every
    # row by (date, score descending, random) each draw, for a fraction of the work.
    higher, tied, group = _ranks_before_ties(dates, score)
    always = target & (higher + tied <= k)
    maybe = target & (higher < k) & (higher + tied > k)
    in_draw = np.flatnonzero(np.isin(group, np.unique(group[maybe])))
    code = pd.Index(pupils.index).get_indexer(f["pupil_id"].to_numpy())
    stats = []
    per_pupil = np.zeros(len(pupils))
    listed_share = np.zeros(len(pupils))
    for _ in range(n_draws):
        u = rng.random(len(f))
        listed = always.copy()
        if len(in_draw):
            sub = in_draw[np.lexsort((u[in_draw], group[in_draw]))]
            g = group[sub]
            starts = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
            place = np.arange(len(sub)) - np.repeat(starts, np.diff(np.r_[starts, len(sub)]))
            listed[sub] = target[sub] & (higher[sub] + place < k[sub])
        lead = np.full(len(pupils), -1.0)
        np.maximum.at(lead, code[listed], lead_if[listed])
        got = lead >= 0
        lead0 = np.where(got, lead, 0.0)
        per_pupil += lead0
        listed_share += got
        stats.append({
            "median": float(np.median(lead0)), "mean": float(lead0.mean()),
            "median_listed": float(np.median(lead[got])) if got.any() else float("nan"),
            "share_listed": float(got.mean()),
        })
    s = pd.DataFrame(stats)
    out = {"pupils": int(len(pupils)), **{c: float(s[c].mean()) for c in s.columns}}
    if return_pupils:
        detail = pd.DataFrame({"pupil_id": pupils.index, "date_30th": pupils.to_numpy(),
                               "mean_lead_days": per_pupil / n_draws,
                               "share_listed": listed_share / n_draws})
        return out, detail
    return out
