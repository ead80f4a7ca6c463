"""Fairness audit of a risk list: who gets listed, and how right the list is, by group.

For one as-of date, the top 5 % of the cohort is listed (ties broken at random, as
expectations). Per attribute — sex, grade, school, and school-context band (the school's
就学援助 rate in thirds across schools: 低/中/高) — and per group:

* ``flag_rate``  share of the group's pupils who are listed,
* ``precision``  share of the group's listed pupils who became 不登校,
* ``recall``     share of the group's 不登校 pupils who were listed,
* ``fpr``        share of the group's other pupils who were listed (false-positive rate).

Each is divided by the same figure of the attribute's **largest group** (the reference); a ratio
outside 0.8–1.25 is flagged. Small groups swing widely by chance: ``n`` and ``positives`` are in
the table, and a ratio is only computed when both groups have at least
:data:`MIN_POSITIVES` positives (precision, recall) or some listed pupils (flag rate, fpr).
Different base rates by group are expected (the risk really differs by grade); the audit shows
where the list's errors fall, it does not decide what is fair.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml import metrics as M

BAND = (0.8, 1.25)
MIN_POSITIVES = 5
RATES = ("flag_rate", "precision", "recall", "fpr")


def context_band(aid_rate: pd.Series, school: pd.Series) -> pd.Series:
    """低/中/高: the school's 就学援助 rate in thirds over the schools present."""
    per_school = pd.DataFrame({"school": school, "rate": aid_rate}).groupby("school")["rate"].first()
    if per_school.notna().sum() < 3:
        return pd.Series(np.where(aid_rate.notna(), "中", "不明"), index=aid_rate.index)
    ranks = per_school.rank(method="first", pct=True)
    band = pd.cut(ranks, [0, 1 / 3, 2 / 3, 1.0], labels=["低", "中", "高"]).astype(str)
    return school.map(band).fillna("不明")


def attributes(frame: pd.DataFrame) -> dict[str, pd.Series]:
    out = {}
    if "reg_female" in frame:
        out["sex"] = frame["reg_female"].map({1.0: "女子", 0.0: "男子"}).fillna("不明")
    out["grade"] = frame["grade"].astype(int).astype(str)
    out["school"] = frame["school_code"].astype(str)
    if "ctx_school_aid_rate" in frame:
        out["context_band"] = context_band(frame["ctx_school_aid_rate"], frame["school_code"])
    return out


def audit(frame: pd.DataFrame, score, *, fraction: float = 0.05) -> pd.DataFrame:
    """One row per (attribute, group) with rates, ratios to the largest group and flags."""
    y = frame["label"].to_numpy(dtype=float)
    s = np.asarray(score, dtype=float)
    listed = M.topk_inclusion(s, M.k_for_fraction(len(s), fraction))
    rows = []
    for attr, values in attributes(frame).items():
        v = values.to_numpy()
        for g in pd.unique(v):
            sel = v == g
            n, pos = int(sel.sum()), float(y[sel].sum())
            lst = float(listed[sel].sum())
            tp = float((listed[sel] * y[sel]).sum())
            rows.append({"attribute": attr, "group": str(g), "n": n, "positives": int(pos),
                         "listed": lst,
                         "flag_rate": lst / n if n else np.nan,
                         "precision": tp / lst if lst else np.nan,
                         "recall": tp / pos if pos else np.nan,
                         "fpr": (lst - tp) / (n - pos) if n - pos else np.nan})
    t = pd.DataFrame(rows)
    out = []
    for attr, g in t.groupby("attribute", sort=False):
        ref = g.sort_values(["n", "group"], ascending=[False, True]).iloc[0]
        g = g.assign(reference=ref["group"])
        flags = [[] for _ in range(len(g))]
        for rate in RATES:
            r0 = float(ref[rate])
            if not np.isfinite(r0):
                ratio = pd.Series(np.nan, index=g.index)
            elif r0 == 0:  # nobody in the reference: equal if nobody here either, else unbounded
                ratio = pd.Series(np.where(g[rate] > 0, np.inf, 1.0), index=g.index).where(g[rate].notna())
            else:
                ratio = g[rate] / r0
            if rate in ("precision", "recall"):
                ok = (g["positives"] >= MIN_POSITIVES) & (ref["positives"] >= MIN_POSITIVES)
            else:
                ok = (g["listed"] > 0) | (ref["listed"] > 0)
            ratio = pd.Series(np.where(ok, ratio, np.nan), index=g.index)
            g[f"{rate}_ratio"] = ratio
            for i, r in enumerate(ratio.to_numpy()):
                if not np.isnan(r) and not (BAND[0] <= r <= BAND[1]):
                    flags[i].append(rate)
        g["outside_band"] = [", ".join(f) for f in flags]
        out.append(g)
    return pd.concat(out, ignore_index=True)


def flagged(table: pd.DataFrame) -> pd.DataFrame:
    return table[table.outside_band != ""]
