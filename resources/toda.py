"""The platform's home folder (landing zone, key material, reports) and its DuckDB warehouse."""


import time
from contextlib import contextmanager

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


CONNECT_ATTEMPTS = 10


class Warehouse(DuckDBResource):
    """dagster-duckdb's resource, closing its connection when the block raises too.

    ``DuckDBResource.get_connection`` (0.29) closes only after a clean exit: an asset that fails
    inside the block leaves its read-write connection open for as long as the traceback lives,
    and a reader in the same process then fails with "Can't open a connection to same database
    file with a different configuration"."""

    @contextmanager
    def get_connection(self):
        import duckdb

        config = {"custom_user_agent": "dagster", **self.connection_config}
        for attempt in range(CONNECT_ATTEMPTS):  # another process may hold the file's lock briefly
            try:
                conn = duckdb.connect(self.database, read_only=False, config=config)
                break
            except (RuntimeError, duckdb.IOException):
                if attempt == CONNECT_ATTEMPTS - 1:
                    raise
                time.sleep(min(0.1 * 2 ** attempt, 5.0))
        try:
            yield conn
        finally:
            conn.close()


def warehouse_resource(paths: Paths) -> DuckDBResource:
    paths.home.mkdir(parents=True, exist_ok=True)
    return Warehouse(database=str(paths.warehouse))


def build_resources(paths: Paths) -> dict:
    return {"toda": TodaHome(home=str(paths.home)), "warehouse": warehouse_resource(paths)}
