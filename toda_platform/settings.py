"""Every path the platform uses, derived from one root: ``TODA_HOME`` (default ``./.toda``).

A test points ``TODA_HOME`` at a temporary folder and is isolated from everything else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


DEMO_ENV = "TODA_DEMO"


@dataclass(frozen=True)
class Paths:
    home: Path

    @classmethod
    def from_env(cls, home: str | os.PathLike | None = None) -> "Paths":
        root = home if home is not None else os.environ.get("TODA_HOME", ".toda")
        return cls(Path(root).expanduser().resolve())

    @property
    def landing(self) -> Path:
        """Where departments drop their CSV exports, one folder per source key."""
        return self.home / "landing"

    @property
    def archive(self) -> Path:
        """Every landed file, kept by its sha256 before it is read."""
        return self.home / "archive"

    @property
    def quarantine(self) -> Path:
        return self.home / "quarantine"

    @property
    def truth(self) -> Path:
        """The synthetic city's hidden truth. Only evaluation code may read it."""
        return self.home / "truth"

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def secrets(self) -> Path:
        return self.home / "secrets"

    @property
    def pseudonym_key_file(self) -> Path:
        return self.secrets / "pseudonym.key"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def exports(self) -> Path:
        return self.home / "exports"

    @property
    def mlflow_db(self) -> Path:
        return self.home / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def identity(self) -> Path:
        """Names, kana, class and seat numbers (toda_platform.identity): never in the warehouse."""
        return self.home / "identity"

    @property
    def serving(self) -> Path:
        """Immutable snapshots of what the portal's pages need, the newest swapped in atomically."""
        return self.home / "serving"

    @property
    def ops_db(self) -> Path:
        """Operational alerts of failed runs (toda_platform.alerts), apart from the warehouse."""
        return self.home / "ops.sqlite3"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def city_file(self) -> Path:
        """The home's own city file (``toda generate`` writes it): which city this home is."""
        return self.home / "city.toml"

    @property
    def city(self):
        """The home's city (toda_platform.city.City): its ``city.toml``, else ``TODA_CITY``
        (a packaged name or a path), else Toda. Loaded once per file version."""
        from toda_platform.city import home_city

        return home_city(self.home)

    def landing_dir(self, source_key: str) -> Path:
        return self.landing / source_key

    @property
    def demo(self) -> bool:
        """Demo mode: ``TODA_DEMO=1``, or a home holding a synthetic city (its hidden truth).
        ``TODA_DEMO=0`` turns it off even there. Outside demo mode a strong key is required."""
        flag = os.environ.get(DEMO_ENV, "").strip().lower()
        if flag in ("1", "true", "yes", "on"):
            return True
        if flag in ("0", "false", "no", "off"):
            return False
        return self.truth.is_dir()


def paths() -> Paths:
    return Paths.from_env()
