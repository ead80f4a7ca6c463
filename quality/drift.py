"""Feature drift between the rows a model is about to score and the same point of last year,
measured with Evidently and turned into a pass/fail gate before a risk list is published.

Why "the same point of last year" and not the training set: most features are windows of the
school year so far (absences since April, Q-U rounds held so far, …), so November's rows differ
from June's by construction. Comparing this year's as-of date with last year's nearest as-of
date by day of the school year removes the season and leaves what changed in the data: an
export that lost a column, a code list that moved, a department that stopped sending a file.

Evidently scores each column (from 1,000 pupils: Wasserstein distance normed by the reference's
spread for numbers, threshold 0.1; below, a K-S test at a Bonferroni-corrected level, see
``_methods``). It ignores missing values, so a source that silently stops
arriving would pass: the share of missing values is compared here too, and a jump beyond
``null_jump`` marks the column as drifted. The gate fails when the drifted columns carry more
than ``drift_share_limit`` of the compared features' importance (their LightGBM gain): ten
minor features moving matter less than the two the model leans on, and a whole source going
missing (all of attendance) must trip the gate even when its features are a third of the list.
Without weights every column weighs the same.

Pure Python: the ``scoring/feature_drift`` asset and its blocking check call this.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

# a reference more than this far from "one year before" is not the same point of the year
REFERENCE_WINDOW_DAYS = 45
DRIFT_SHARE_LIMIT = 0.3
NULL_JUMP = 0.2
COLUMN_THRESHOLD = 0.1  # Evidently's default for its distance methods, stated for the record


@dataclass
class DriftResult:
    columns: pd.DataFrame  # column, method, score, threshold, drifted, null_share_*, reason
    reference_date: date
    current_date: date
    n_reference: int
    n_current: int
    drift_share_limit: float
    report_path: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> list[str]:
        """Drifted features that count: not accepted this school year."""
        c = self.columns
        return c.loc[c.drifted & ~c.accepted, "column"].tolist()

    @property
    def share(self) -> float:
        """The share of importance (weight) carried by the drifted features that count."""
        c = self.columns
        total = c.weight.sum()
        return float(c.loc[c.drifted & ~c.accepted, "weight"].sum() / total) if total > 0 else 0.0

    @property
    def passed(self) -> bool:
        return self.share <= self.drift_share_limit

    def summary(self) -> str:
        verdict = "within" if self.passed else "beyond"
        return (f"{len(self.drifted)} of {len(self.columns)} scoring features drifted, carrying "
                f"{self.share:.0%} of their importance (limit {self.drift_share_limit:.0%}: "
                f"{verdict}) between "
                f"{self.reference_date} ({self.n_reference} pupils) and {self.current_date} "
                f"({self.n_current} pupils)")


def reference_date(as_of_dates: Iterable[date], current: date,
                   window_days: int = REFERENCE_WINDOW_DAYS) -> date | None:
    """The as-of date nearest to one year before ``current`` (within ``window_days``), or None."""
    target = _one_year_before(current)
    best = None
    for d in as_of_dates:
        d = pd.Timestamp(d).date()
        gap = abs((d - target).days)
        if gap <= window_days and (best is None or gap < best[0]):
            best = (gap, d)
    return best[1] if best else None


def _one_year_before(d: date) -> date:
    try:
        return d.replace(year=d.year - 1)
    except ValueError:  # 29 February
        return d - timedelta(days=365)


def feature_drift(reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str], *,
                  reference_date: date, current_date: date,
                  drift_share_limit: float = DRIFT_SHARE_LIMIT, null_jump: float = NULL_JUMP,
                  accepted: Iterable[str] = (), weights: dict[str, float] | None = None,
                  html_path: Path | None = None) -> DriftResult:
    """Compare ``columns`` of two frames; write Evidently's HTML report to ``html_path``.
    Drift in an ``accepted`` column is reported but does not count toward the share; ``weights``
    (e.g. gain) weigh each column's drift, equal when None."""
    if reference.empty or current.empty:
        raise ValueError(f"drift needs rows on both dates: {len(reference)} on {reference_date}, "
                         f"{len(current)} on {current_date}")
    columns = list(dict.fromkeys(columns))
    ref = reference[columns].astype("float64")
    cur = current[columns].astype("float64")
    null_ref, null_cur = ref.isna().mean(), cur.isna().mean()
    rows = {c: {"column": c, "method": None, "score": np.nan, "threshold": np.nan,
                "null_share_reference": float(null_ref[c]), "null_share_current": float(null_cur[c]),
                "drifted": False, "reason": ""} for c in columns}
    # columns Evidently cannot score: no values on one side, or no spread in the reference (a
    # normed distance divides by it). They are judged on missing values and the value itself.
    scorable = []
    for c in columns:
        r, k = ref[c].dropna(), cur[c].dropna()
        if r.empty or k.empty:
            if r.empty and k.empty:
                rows[c]["reason"] = "no values on either date"
            else:
                rows[c].update(drifted=True, reason=f"no values on {reference_date if r.empty else current_date}")
        elif r.nunique() <= 1:
            moved = k.nunique() > 1 or k.iloc[0] != r.iloc[0]
            rows[c].update(method="constant in reference", drifted=bool(moved),
                           reason="constant in the reference, varies now" if moved else "")
        else:
            scorable.append(c)
    notes = []
    if scorable:
        for entry in _evidently(ref[scorable], cur[scorable], html_path):
            rows[entry["column"]].update(method=entry["method"], score=entry["score"],
                                         threshold=entry["threshold"])
            if _beyond(entry):
                rows[entry["column"]].update(drifted=True, reason="distribution moved")
    elif html_path is not None:
        notes.append("no column could be scored by Evidently: no HTML report")
    for c in columns:
        jump = rows[c]["null_share_current"] - rows[c]["null_share_reference"]
        if abs(jump) > null_jump:
            rows[c]["drifted"] = True
            rows[c]["reason"] = "; ".join(x for x in (rows[c]["reason"],
                                                       f"missing {rows[c]['null_share_reference']:.0%} → "
                                                       f"{rows[c]['null_share_current']:.0%}") if x)
    table = pd.DataFrame(list(rows.values()))
    table["accepted"] = table.column.isin(set(accepted))
    raw = table.column.map(weights or {}).fillna(0.0) if weights else pd.Series(1.0, index=table.index)
    if raw.sum() <= 0:
        raw = pd.Series(1.0, index=table.index)
    table["weight"] = raw / raw.sum()
    return DriftResult(table, reference_date, current_date, len(reference), len(current),
                       drift_share_limit, html_path if scorable else None, notes)


# Below this many pupils on either date a distance is too noisy (two samples of 300 from one
# distribution reach a normed Wasserstein distance of 0.1 in about one draw in two): test instead.
SMALL_SAMPLE = 1000
ALPHA = 0.05


def _beyond(entry: dict) -> bool:
    """A test's p-value drifts when small; a distance when large."""
    if entry["p_value"]:
        return entry["score"] < entry["threshold"]
    return entry["score"] >= entry["threshold"]


def _methods(n_rows: int, n_columns: int) -> dict:
    """Evidently's per-column methods, chosen here rather than left to its defaults.

    From ``SMALL_SAMPLE`` rows on: distances (Wasserstein normed by the reference's spread for
    numbers, Jensen-Shannon for what Evidently still treats as categories), threshold 0.1 — how
    far the data moved, not whether a large sample can tell. Below: K-S and chi-square tests at
    5 % *divided by the number of features* (Bonferroni). Uncorrected, 30 features at 5 % flag
    one or two by chance in a typical run, and with the share weighted by importance a chance
    flag on the top feature could stop a list on its own."""
    if n_rows >= SMALL_SAMPLE:
        return {"num_method": "wasserstein", "num_threshold": COLUMN_THRESHOLD,
                "cat_method": "jensenshannon", "cat_threshold": COLUMN_THRESHOLD}
    alpha = ALPHA / max(n_columns, 1)
    return {"num_method": "ks", "num_threshold": alpha, "cat_method": "chisquare", "cat_threshold": alpha}


def _evidently(ref: pd.DataFrame, cur: pd.DataFrame, html_path: Path | None) -> list[dict]:
    """Per-column (column, method, score, threshold, p_value) from Evidently's drift preset."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    methods = _methods(min(len(ref), len(cur)), len(ref.columns))
    tests = {methods["num_method"], methods["cat_method"]} & {"ks", "chisquare"}
    # every model input is a number (booleans as 0/1): declared, so that Evidently does not
    # guess "categorical" for a count with few distinct values
    definition = DataDefinition(numerical_columns=list(ref.columns))
    snapshot = Report([DataDriftPreset(**methods)]).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition))
    if html_path is not None:
        Path(html_path).parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html_path))
    out = []
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if not str(config.get("type", "")).endswith("ValueDrift"):
            continue
        method = str(config.get("method"))
        out.append({"column": config["column"], "method": method,
                    "threshold": float(config.get("threshold", COLUMN_THRESHOLD)),
                    "score": float(metric["value"]),
                    "p_value": method in tests or "p_value" in method})
    missing = set(ref.columns) - {e["column"] for e in out}
    if missing:
        raise RuntimeError(f"Evidently returned no drift score for {sorted(missing)}")
    return out


# --- the warehouse side: tables the asset writes and its check reads --------------------------

DRIFT_DDL = """
CREATE SCHEMA IF NOT EXISTS quality;
CREATE TABLE IF NOT EXISTS quality.feature_drift_runs (
    run_id VARCHAR, checked_at TIMESTAMP, as_of_date DATE, reference_date DATE,
    model_version VARCHAR, status VARCHAR, n_features INTEGER, drifted_features VARCHAR[],
    drifted_share DOUBLE, drift_share_limit DOUBLE, passed BOOLEAN, summary VARCHAR,
    report_path VARCHAR);
CREATE TABLE IF NOT EXISTS quality.feature_drift (
    run_id VARCHAR, as_of_date DATE, reference_date DATE, "column" VARCHAR, method VARCHAR,
    score DOUBLE, threshold DOUBLE, null_share_reference DOUBLE, null_share_current DOUBLE,
    drifted BOOLEAN, accepted BOOLEAN, reason VARCHAR);
ALTER TABLE quality.feature_drift ADD COLUMN IF NOT EXISTS weight DOUBLE;
CREATE TABLE IF NOT EXISTS quality.drift_acceptances (
    school_year INTEGER, "column" VARCHAR, reason VARCHAR, accepted_at TIMESTAMP, run_id VARCHAR);
"""


def ensure_tables(con) -> None:
    con.execute(DRIFT_DDL)


def _school_year(d) -> int:
    from ml.asof import school_year_of

    return school_year_of(pd.Timestamp(d).date())


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="Asia/Tokyo").tz_localize(None)


def accept(con, columns: Sequence[str], reason: str, *, run_id: str, on: date | None = None) -> None:
    """Record that drift in ``columns`` is understood, for the school year of ``on`` (today)."""
    if not reason.strip():
        raise ValueError("accepting drift needs a reason (accept_reason): it is the audit trail")
    year = _school_year(on or _now())
    con.executemany("INSERT INTO quality.drift_acceptances VALUES (?, ?, ?, ?, ?)",
                    [[year, c, reason.strip(), _now(), run_id] for c in columns])


def accepted_features(con, as_of: date) -> set[str]:
    return {r[0] for r in con.execute(
        'SELECT DISTINCT "column" FROM quality.drift_acceptances WHERE school_year = ?',
        [_school_year(as_of)]).fetchall()}


def top_features(booster, n: int) -> dict[str, float]:
    """The ``n`` features of a LightGBM booster with the largest total gain (ties by name),
    with their gain, largest first. Features the model never split on are left out."""
    gain = booster.feature_importance(importance_type="gain")
    ranked = sorted(zip(booster.feature_name(), map(float, gain)), key=lambda x: (-x[1], x[0]))
    return dict([(name, g) for name, g in ranked[:n] if g > 0] or ranked[:n])


def record_run(con, result: DriftResult | None, *, run_id: str, as_of_date, status: str,
               model_version: str | None) -> None:
    """One row per run (and, when measured, one per feature). Without a measurement the run
    passes: there is nothing to publish (no champion) or nothing to compare with yet."""
    ensure_tables(con)
    if result is None:
        con.execute("INSERT INTO quality.feature_drift_runs VALUES (?, ?, ?, NULL, ?, ?, 0, [], NULL, "
                    "NULL, TRUE, ?, NULL)", [run_id, _now(), as_of_date, model_version, status, status])
        return
    con.execute("INSERT INTO quality.feature_drift_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, _now(), result.current_date, result.reference_date, model_version, status,
                 len(result.columns), result.drifted, result.share, result.drift_share_limit,
                 result.passed, result.summary(),
                 str(result.report_path) if result.report_path else None])
    cols = result.columns.assign(run_id=run_id, as_of_date=pd.Timestamp(result.current_date),
                                 reference_date=pd.Timestamp(result.reference_date))
    con.register("_drift", cols)
    try:
        con.execute("INSERT INTO quality.feature_drift BY NAME SELECT * FROM _drift")
    finally:
        con.unregister("_drift")


def latest_run(con, run_id: str | None = None) -> dict | None:
    """The row of run ``run_id`` if it recorded one, else the latest."""
    ensure_tables(con)
    row = con.execute("SELECT * FROM quality.feature_drift_runs ORDER BY (run_id = ?) DESC, "
                      "checked_at DESC LIMIT 1", [run_id or ""]).df()
    return None if row.empty else row.iloc[0].to_dict()


def publication_refused(run: dict | None, as_of_date, model_version: str) -> str | None:
    """Why a risk list of ``as_of_date`` by ``model_version`` may not be published, or None.

    Publication needs a drift measurement of that date and that model that passed — so that a
    list is never published around the gate (e.g. ``outputs/risk_scores`` materialised alone)."""
    if run is None:
        return "no drift measurement: materialise scoring/feature_drift first"
    if pd.Timestamp(run["as_of_date"]) != pd.Timestamp(as_of_date):
        return (f"the latest drift measurement is of {pd.Timestamp(run['as_of_date']).date()}, "
                f"not {pd.Timestamp(as_of_date).date()}: materialise scoring/feature_drift first")
    if run["status"] == "measured" and str(run["model_version"]) != str(model_version):
        return (f"drift was measured on the features of version {run['model_version']}, the "
                f"champion is now {model_version}: materialise scoring/feature_drift again")
    if not run["passed"]:
        return f"the drift gate failed: {run['summary']}"
    return None
