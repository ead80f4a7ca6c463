"""The platform's home folder (landing zone, key material, reports) and its DuckDB warehouse."""


import dagster as dg
from dagster_duckdb import DuckDBResource

from toda_platform.pseudonym import load_key
from toda_platform.settings import Paths


class TodaHome(dg.ConfigurableResource):
    """Everything under ``TODA_HOME``: paths and the pseudonym key."""

    home: str

    @property
    def paths(self) -> Paths:
        return Paths.from_env(self.home)

    def pseudonym_key(self) -> bytes:
        # Never created here: a pipeline run must not invent a new key (every pseudonym would
        # change). `toda demo` creates one on first use, with mode 0600.
        return load_key(self.paths.pseudonym_key_file)


def warehouse_resource(paths: Paths) -> DuckDBResource:
    paths.home.mkdir(parents=True, exist_ok=True)
    return DuckDBResource(database=str(paths.warehouse))


def build_resources(paths: Paths) -> dict:
    return {"toda": TodaHome(home=str(paths.home)), "warehouse": warehouse_resource(paths)}
