"""A young city borrows a model: a city's champion is exported to the deployment's shared
registry (the model and its metadata, no row about a child), and a city without a champion of
its own scores with it; a city with its own never borrows, nor does a single city."""

from __future__ import annotations

import json

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from ml.tracking import REGISTERED_MODEL
from resources.mlflow import MlflowTracking
from tests.ml_frames import empty_mlflow_store
from toda_platform.deployment import Deployment
from toda_platform.shared_models import META_FILE, MODEL_FILE, lenders

FEATURES = ["att_ytd_absent", "mood_mean", "qu_infringement"]


@pytest.fixture
def deployment(tmp_path) -> Deployment:
    d = Deployment.from_env(tmp_path / "deployment")
    for city in ("toda", "warabi"):
        empty_mlflow_store(d.add_city(city).mlflow_db)
    return d


def _resource(deployment: Deployment, city: str) -> MlflowTracking:
    res = MlflowTracking(deployment=str(deployment.root))
    res._city = city  # what setup_for_execution resolves from the run
    return res


def _champion(res: MlflowTracking, train_years=(2021, 2022, 2023)) -> lgb.Booster:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(400, 3)), columns=FEATURES)
    y = (x.att_ytd_absent + rng.normal(0, 0.5, 400) > 1).astype(int)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_threads": 1, "min_data_in_leaf": 20},
                        lgb.Dataset(x, y), num_boost_round=10)
    tracker = res.tracker()
    meta = {"model": "lightgbm", "features": FEATURES, "calibration": {"a": 1.0, "b": 0.0},
            "band_thresholds": {"赤": 0.5}, "fold": {"test_year": 2024, "train_years": list(train_years)}}
    with tracker.run("train"):
        version = tracker.log_lightgbm(booster, meta)
    tracker.client.set_registered_model_alias(REGISTERED_MODEL, "champion", version)
    return booster


def test_a_city_without_a_champion_scores_with_the_one_another_city_shared(deployment):
    toda, warabi = _resource(deployment, "toda"), _resource(deployment, "warabi")
    assert warabi.champion() is None  # nothing shared yet
    booster = _champion(toda)
    assert toda.share_champion() == "1"
    folder = deployment.shared_models / "toda"
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    # the model and what scoring needs about it: nothing about a pupil
    assert set(meta) <= {"model", "features", "calibration", "band_thresholds", "fold", "city",
                         "model_name", "version", "exported_at"}
    assert (meta["city"], meta["version"]) == ("toda", "1")
    mtime = (folder / MODEL_FILE).stat().st_mtime_ns
    assert toda.share_champion() == "1" and (folder / MODEL_FILE).stat().st_mtime_ns == mtime  # unchanged

    version, borrowed, bmeta = warabi.champion()
    assert version == "toda:v1" and bmeta["borrowed_from"] == "toda" and bmeta["features"] == FEATURES
    rows = pd.DataFrame({"att_ytd_absent": [0.0, 2.0, 3.0], "mood_mean": [0.1, np.nan, -1.0],
                         "qu_infringement": [0.0, 0.5, 1.0]})
    np.testing.assert_allclose(borrowed.predict(rows[FEATURES].to_numpy()), booster.predict(rows[FEATURES]))
    # a city with a champion of its own uses it; a young city never exports a borrowed one
    assert toda.champion()[0] == "1"
    assert warabi.share_champion() is None and not (deployment.shared_models / "warabi").exists()


def test_the_lender_trained_on_most_school_years_comes_first(deployment):
    deployment.add_city("kawaguchi")
    empty_mlflow_store(deployment.paths("kawaguchi").mlflow_db)
    _champion(_resource(deployment, "toda"), train_years=(2023,))
    _champion(_resource(deployment, "kawaguchi"), train_years=(2020, 2021, 2022, 2023))
    for city in ("toda", "kawaguchi"):
        _resource(deployment, city).share_champion()
    assert [m["city"] for m in lenders(deployment.shared_models, "warabi")] == ["kawaguchi", "toda"]
    assert [m["city"] for m in lenders(deployment.shared_models, "kawaguchi")] == ["toda"]
    assert _resource(deployment, "warabi").champion()[0] == "kawaguchi:v1"


def test_a_single_city_never_borrows(tmp_path):
    from ml.tracking import tracking_uri

    db = empty_mlflow_store(tmp_path / "mlflow.db")
    single = MlflowTracking(tracking_uri=tracking_uri(db), artifact_location=(tmp_path / "a").as_uri())
    assert single.champion() is None and single.share_champion() is None
