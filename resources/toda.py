"""The platform's home folder (landing zone, key material, reports) and its DuckDB warehouse."""


from contextlib import contextmanager

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import PrivateAttr

from toda_platform.pseudonym import require_key
from toda_platform.settings import Paths


def _city_of_run(context: dg.InitResourceContext) -> str | None:
    """The city of the run this resource is set up for (None outside a run: a sensor's tick)."""
    from toda_platform.deployment import run_city

    run = context.run
    if run is None:
        return None
    keys = [*(run.asset_selection or ()), *(k.asset_key for k in (run.asset_check_selection or ()))]
    return run_city(run.tags, keys)


class CityScoped(dg.ConfigurableResource):
    """A resource of one city's home: ``home`` (a single city), or ``deployment`` (many cities;
    the city is the run's, resolved when the run sets the resource up)."""

    home: str = ""
    deployment: str = ""
    _city: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.deployment:
            self._city = _city_of_run(context)

    def paths_of(self, city: str | None = None) -> Paths:
        """The home of ``city`` in a deployment (default: this run's city), or the one home."""
        if not self.deployment:
            return Paths.from_env(self.home)
        from toda_platform.deployment import Deployment, DeploymentError

        city = city or self._city
        if not city:
            raise DeploymentError("this resource serves a deployment of many cities: no city given")
        return Deployment.from_env(self.deployment).paths(city)

    @property
    def paths(self) -> Paths:
        return self.paths_of()


class TodaHome(CityScoped):
    """Everything under ``TODA_HOME`` (or the run's city home): paths and the pseudonym key."""

    def pseudonym_key(self) -> bytes:
        # Never created here: a pipeline run must not invent a new key (every pseudonym would
        # change). `toda demo` creates one on first use, with mode 0600.
        return require_key(self.paths.pseudonym_key_file, demo=self.paths.demo)


class Warehouse(DuckDBResource):
    """dagster-duckdb's resource, closing its connection when the block raises too, and waiting
    (saying for whom) while another program holds the warehouse's lock.

    ``DuckDBResource.get_connection`` (0.29) closes only after a clean exit: an asset that fails
    inside the block leaves its read-write connection open for as long as the traceback lives,
    and a reader in the same process then fails with "Can't open a connection to same database
    file with a different configuration". Its retry gives up after ~22 s with DuckDB's bare
    error; ours waits up to TODA_LOCK_WAIT_SECONDS and names the program holding the lock.

    With ``deployment`` set (and ``database`` empty), the file is the run's city's warehouse."""

    deployment: str = ""
    _city_database: str = PrivateAttr(default="")

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.deployment:
            from toda_platform.deployment import Deployment

            city = _city_of_run(context)
            if city:
                self._city_database = str(Deployment.from_env(self.deployment).paths(city).warehouse)

    @contextmanager
    def get_connection(self):
        from toda_platform.warehouse import connect

        if self.deployment and not self._city_database:
            from toda_platform.deployment import DeploymentError

            raise DeploymentError("the warehouse of a deployment is the run's city's: this run has no city")
        config = {"custom_user_agent": "dagster", **self.connection_config}
        conn = connect(self._city_database or self.database, config=config, log=dg.get_dagster_logger().warning)
        try:
            yield conn
        finally:
            conn.close()


def warehouse_resource(paths: Paths) -> DuckDBResource:
    paths.home.mkdir(parents=True, exist_ok=True)
    return Warehouse(database=str(paths.warehouse))


def build_resources(paths: Paths) -> dict:
    return {"toda": TodaHome(home=str(paths.home)), "warehouse": warehouse_resource(paths)}


def deployment_resources(root) -> dict:
    """One resource of each kind for every city of a deployment: each run opens its own city's
    home and warehouse only."""
    return {"toda": TodaHome(deployment=str(root)), "warehouse": Warehouse(database="", deployment=str(root))}
