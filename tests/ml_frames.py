"""Small synthetic model frames whose answer is known (shared by the tests/test_ml_*.py files)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

FEATURES = ["grade", "att_ytd_absent", "att_ytd_days", "att_prev_absent", "att_prev_days",
            "att_d30_absent", "mood_d30_mood_mean", "mood_d30_missing", "aig_creativity",
            "reg_female", "ctx_school_aid_rate"]


def make_frame(*, pupils: int = 400, years=(2021, 2022, 2023, 2024), dates_per_year: int = 2,
               signal: bool = True, seed: int = 0, unlabelled_years=()) -> pd.DataFrame:
    """One row per (pupil, as-of date). With ``signal`` the label is 1 exactly when the pupil's
    absences this year are high (``att_ytd_absent`` ≥ 12 of 60 days — a feature determines the
    label); without it the label is a coin flip of the same rate, independent of everything."""
    rng = np.random.default_rng(seed)
    rows = []
    schools = ["S1", "S2", "S3", "S4"]
    for y in years:
        risk = rng.gamma(1.0, 1.0, pupils)
        for j in range(dates_per_year):
            d = date(y, 10 + j, 1)
            for i in range(pupils):
                rows.append((f"p{i:04d}", d, y, schools[i % 4],
                             1 + i % 9, risk[i]))
    f = pd.DataFrame(rows, columns=["pupil_id", "as_of_date", "school_year", "school_code",
                                    "grade", "_risk"])
    n = len(f)
    f["as_of_kind"] = "month_start"
    f["class_name"] = "1"
    f["att_ytd_days"] = 60.0
    f["att_ytd_absent"] = np.round(f["_risk"] * 5 + rng.normal(0, 0.3, n)).clip(0, 60)
    f["att_prev_days"] = 200.0
    f["att_prev_absent"] = rng.poisson(5, n).astype(float)
    f["att_d30_absent"] = np.round(f["att_ytd_absent"] / 2)
    mood = 4 - f["_risk"] * 0.3 + rng.normal(0, 0.5, n)
    missing = rng.random(n) < 0.2
    f["mood_d30_mood_mean"] = np.where(missing, np.nan, mood)
    f["mood_d30_missing"] = missing.astype(float)
    f["aig_creativity"] = rng.normal(50, 10, n)
    f["reg_female"] = (rng.random(n) < 0.5).astype(float)
    f["ctx_school_aid_rate"] = f["school_code"].map({"S1": 0.05, "S2": 0.1, "S3": 0.2, "S4": 0.3})
    if signal:
        label = (f["att_ytd_absent"] >= 12).astype(float)
    else:
        rate = float((f["att_ytd_absent"] >= 12).mean())
        label = (rng.random(n) < rate).astype(float)
    f["label"] = label
    f["label_available"] = True
    f.loc[f.school_year.isin(unlabelled_years), ["label"]] = np.nan
    f.loc[f.school_year.isin(unlabelled_years), ["label_available"]] = False
    f["futoukou_prev_year"] = False
    f["nonillness_absent_days"] = 0
    # positives reach their 30th absence in March
    f["date_30th_nonillness_absence"] = pd.to_datetime(
        np.where(f["label"] == 1, pd.to_datetime(f["school_year"].astype(str) + "-03-01") +
                 pd.DateOffset(years=1), pd.NaT))
    f["as_of_date"] = pd.to_datetime(f["as_of_date"])
    return f.drop(columns="_risk")


_TEMPLATE: dict[str, Path] = {}


def empty_mlflow_store(target: Path) -> Path:
    """Copy an initialised, empty MLflow sqlite store to ``target`` (creating one costs ~10 s of
    schema migrations; the copy is made once per test process). Experiments, with their
    artifact locations, are created later by the code under test."""
    import shutil
    import tempfile

    if "db" not in _TEMPLATE:
        from mlflow import MlflowClient

        folder = Path(tempfile.mkdtemp(prefix="mlflow-template-"))
        db = folder / "mlflow.db"
        uri = f"sqlite:///{db}"
        MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models()
        MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments()
        _TEMPLATE["db"] = db
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(_TEMPLATE["db"], target)
    return target
