"""The platform's home folder (landing zone, key material, reports) and its DuckDB warehouse."""


from contextlib import contextmanager

import dagster as dg
from dagster_duckdb import DuckDBResource

from toda_platform.pseudonym import require_key
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
        return require_key(self.paths.pseudonym_key_file, demo=self.paths.demo)


class Warehouse(DuckDBResource):
    """dagster-duckdb's resource, closing its connection when the block raises too, and waiting
    (saying for whom) while another program holds the warehouse's lock.

    ``DuckDBResource.get_connection`` (0.29) closes only after a clean exit: an asset that fails
    inside the block leaves its read-write connection open for as long as the traceback lives,
    and a reader in the same process then fails with "Can't open a connection to same database
    file with a different configuration". Its retry gives up after ~22 s with DuckDB's bare
    error; ours waits up to TODA_LOCK_WAIT_SECONDS and names the program holding the lock."""

    @contextmanager
    def get_connection(self):
        from toda_platform.warehouse import connect

        config = {"custom_user_agent": "dagster", **self.connection_config}
        conn = connect(self.database, config=config, log=dg.get_dagster_logger().warning)
        try:
            yield conn
        finally:
            conn.close()


def warehouse_resource(paths: Paths) -> DuckDBResource:
    paths.home.mkdir(parents=True, exist_ok=True)
    return Warehouse(database=str(paths.warehouse))


def build_resources(paths: Paths) -> dict:
    return {"toda": TodaHome(home=str(paths.home)), "warehouse": warehouse_resource(paths)}
