"""MLflow tracking and registry as a Dagster resource (defined once, here).

A small ``ConfigurableResource`` around :class:`ml.tracking.Tracker` — dagster-mlflow's resource
is an old-style one that starts runs by itself. The store is sqlite in ``TODA_HOME`` with the
artifacts beside it (MLflow 3's file store is deprecated): open the UI on it with

    .venv/bin/toda mlflow --home $TODA_HOME

(one worker, telemetry off, the model-training view; see ``toda_platform/cli.py``).
"""

from __future__ import annotations

import dagster as dg

from ml.tracking import EXPERIMENT, REGISTERED_MODEL, Tracker, tracking_uri
from toda_platform.settings import Paths


class MlflowTracking(dg.ConfigurableResource):
    """Where runs and the registered model ``futoukou_risk`` live."""

    tracking_uri: str
    artifact_location: str
    experiment: str = EXPERIMENT
    model_name: str = REGISTERED_MODEL

    def tracker(self) -> Tracker:
        return Tracker(self.tracking_uri, self.artifact_location, self.experiment, self.model_name)

    def ui_command(self) -> str:
        import os

        return f".venv/bin/toda mlflow --home {os.environ.get('TODA_HOME', '.toda')}"


def mlflow_resource(paths: Paths) -> MlflowTracking:
    paths.home.mkdir(parents=True, exist_ok=True)
    return MlflowTracking(tracking_uri=tracking_uri(paths.mlflow_db),
                          artifact_location=paths.mlflow_artifacts.as_uri())
