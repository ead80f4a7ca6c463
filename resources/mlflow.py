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
from resources.toda import CityScoped
from toda_platform.settings import Paths


class MlflowTracking(CityScoped):
    """Where runs and the registered model ``futoukou_risk`` live: the store of the home (or,
    in a deployment, of the run's city: each city its own store and experiments)."""

    tracking_uri: str = ""
    artifact_location: str = ""
    experiment: str = EXPERIMENT
    model_name: str = REGISTERED_MODEL

    def store(self) -> tuple[str, str]:
        """(tracking URI, artifact location) of this run's city."""
        if not self.deployment:
            return self.tracking_uri, self.artifact_location
        paths = self.paths
        return tracking_uri(paths.mlflow_db), paths.mlflow_artifacts.as_uri()

    def tracker(self, experiment: str | None = None) -> Tracker:
        return Tracker(*self.store(), experiment or self.experiment, self.model_name)

    def champion(self):
        """(version, booster, metadata) of this city's champion; in a deployment, a city without
        one (too young for its own model) borrows another city's (``toda_platform.shared_models``:
        version ``<city>:v<n>``, ``metadata["borrowed_from"]``). None when there is neither."""
        from ml.tracking import CHAMPION

        own = self.tracker().load_alias(CHAMPION)
        if own is not None or not self.deployment:
            return own
        from toda_platform.deployment import Deployment
        from toda_platform.shared_models import borrow

        return borrow(Deployment.from_env(self.deployment).shared_models, self._city)

    def share_champion(self) -> str | None:
        """In a deployment, export this city's own champion to the shared registry (a no-op
        when it is there already, or outside a deployment)."""
        if not self.deployment:
            return None
        from toda_platform.deployment import Deployment
        from toda_platform.shared_models import export_champion

        shared = Deployment.from_env(self.deployment).shared_models
        return export_champion(self.tracker(), shared / self._city, self._city)

    def ui_command(self) -> str:
        import os

        home = self.paths.home if self.deployment else os.environ.get('TODA_HOME', '.toda')
        return f".venv/bin/toda mlflow --home {home}"


def mlflow_resource(paths: Paths) -> MlflowTracking:
    paths.home.mkdir(parents=True, exist_ok=True)
    return MlflowTracking(tracking_uri=tracking_uri(paths.mlflow_db),
                          artifact_location=paths.mlflow_artifacts.as_uri())
