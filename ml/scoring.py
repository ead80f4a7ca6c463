"""Risk bands and the risk-score table (pure; the Dagster asset loads the model and writes).

**Bands** 赤, ピンク, 橙, 黄 (or none) follow the colours the city's support meetings already use
(``support_records.risk_band``). Each band has a **precision target** on the model's held-out
slice (the school year before its test year, never seen in training): a band's threshold is the
lowest calibrated score such that, among held-out rows scoring at or above it, at least that
share became 不登校 that year (and at least :data:`MIN_LISTED` rows are that high):

======  ======================================================
赤       ≥ 60 % of the pupils at or above this score became 不登校
ピンク   ≥ 40 %
橙       ≥ 25 %
黄       ≥ 10 %
======  ======================================================

A target the held-out slice never reaches leaves its band empty (threshold ``None``). The
thresholds are chosen once, when the model is trained, and travel with the registered version;
the precision each band actually reached on the test year is logged beside them.
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np
import pandas as pd

BANDS: tuple[tuple[str, float], ...] = (("赤", 0.60), ("ピンク", 0.40), ("橙", 0.25), ("黄", 0.10))
MIN_LISTED = 10
NO_BAND = None


def choose_band_thresholds(y, prob, targets: Sequence[tuple[str, float]] = BANDS,
                           min_listed: int = MIN_LISTED) -> dict[str, float | None]:
    """Per band, the lowest score whose cumulative held-out precision meets the target."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(prob, dtype=float)
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    cum_prec = np.cumsum(ys) / np.arange(1, len(ys) + 1)
    # a cut is only possible where the score changes (ties stay on one side)
    can_cut = np.r_[ps[1:] < ps[:-1], True] if len(ps) else np.array([], dtype=bool)
    idx = np.arange(len(ps))
    out: dict[str, float | None] = {}
    for band, target in targets:
        ok = (cum_prec >= target) & can_cut & (idx + 1 >= min_listed)
        out[band] = float(ps[np.flatnonzero(ok).max()]) if ok.any() else None
    return out


def assign_bands(prob, thresholds: dict[str, float | None],
                 targets: Sequence[tuple[str, float]] = BANDS) -> np.ndarray:
    """The highest band whose threshold the score reaches, else None."""
    p = np.asarray(prob, dtype=float)
    out = np.full(len(p), None, dtype=object)
    for band, _ in reversed(targets):  # lowest band first, overwritten by higher ones
        t = thresholds.get(band)
        if t is not None:
            out[p >= t] = band
    return out


def band_precision(y, prob, thresholds: dict[str, float | None],
                   targets: Sequence[tuple[str, float]] = BANDS) -> pd.DataFrame:
    """Per band: its threshold, target, pupils at or above it, and the precision reached."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(prob, dtype=float)
    rows = []
    for band, target in targets:
        t = thresholds.get(band)
        sel = p >= t if t is not None else np.zeros(len(p), dtype=bool)
        rows.append({"band": band, "target_precision": target, "threshold": t,
                     "at_or_above": int(sel.sum()),
                     "precision": float(y[sel].mean()) if sel.any() else float("nan")})
    return pd.DataFrame(rows)


def rank_in_school(frame: pd.DataFrame, raw) -> np.ndarray:
    """1 = highest risk in the school; ties by pseudonym so the order is reproducible."""
    f = pd.DataFrame({"school_code": frame["school_code"].to_numpy(), "raw": np.asarray(raw),
                      "pupil_id": frame["pupil_id"].to_numpy()})
    f = f.sort_values(["school_code", "raw", "pupil_id"], ascending=[True, False, True])
    return (f.groupby("school_code").cumcount() + 1).sort_index().to_numpy()


RISK_SCORES_DDL = """
CREATE TABLE IF NOT EXISTS outputs.risk_scores (
    pupil_id VARCHAR NOT NULL,
    school_code VARCHAR NOT NULL,
    grade TINYINT NOT NULL,
    as_of_date DATE NOT NULL,
    score DOUBLE NOT NULL,
    band VARCHAR,
    rank_in_school INTEGER NOT NULL,
    reason_1 VARCHAR, reason_2 VARCHAR, reason_3 VARCHAR, reason_4 VARCHAR, reason_5 VARCHAR,
    reasons_json VARCHAR,
    model_name VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,
    scored_at TIMESTAMP NOT NULL,
    PRIMARY KEY (pupil_id, as_of_date)
)"""

KNOWN_CASES_DDL = """
CREATE TABLE IF NOT EXISTS outputs.known_cases (
    pupil_id VARCHAR NOT NULL,
    school_code VARCHAR NOT NULL,
    grade TINYINT NOT NULL,
    as_of_date DATE NOT NULL,
    nonillness_absent_days INTEGER NOT NULL,
    PRIMARY KEY (pupil_id, as_of_date)
)"""


def risk_score_frame(frame: pd.DataFrame, raw, prob, reasons, thresholds, *, model_name: str,
                     model_version: str, scored_at) -> pd.DataFrame:
    """Rows of ``outputs.risk_scores`` for scored cohort rows of one as-of date."""
    texts = [[r.text for r in rs] + [None] * (5 - len(rs)) for rs in reasons]
    out = pd.DataFrame({
        "pupil_id": frame["pupil_id"].to_numpy(),
        "school_code": frame["school_code"].to_numpy(),
        "grade": frame["grade"].astype(int).to_numpy(),
        "as_of_date": pd.to_datetime(frame["as_of_date"]).dt.date.to_numpy(),
        "score": np.asarray(prob, dtype=float),
        "band": assign_bands(prob, thresholds),
        "rank_in_school": rank_in_school(frame.reset_index(drop=True), raw),
    })
    for i in range(5):
        out[f"reason_{i + 1}"] = [t[i] for t in texts]
    out["reasons_json"] = [json.dumps([{"feature": r.feature, "value": r.value,
                                        "contribution": round(r.contribution, 4), "text": r.text}
                                       for r in rs], ensure_ascii=False) for rs in reasons]
    out["model_name"] = model_name
    out["model_version"] = str(model_version)
    out["scored_at"] = pd.Timestamp(scored_at)
    return out.sort_values(["school_code", "rank_in_school"]).reset_index(drop=True)
