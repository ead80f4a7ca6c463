"""Many cities, one deployment: ``TODA_DEPLOYMENT`` holds one home per city.

::

    $TODA_DEPLOYMENT/
      cities/<name>/        one city's home (a TODA_HOME: landing, warehouse, key, identity store,
        city.toml           MLflow store, serving, portal ...) and its city file
      dagster/              the one Dagster instance of the deployment (run queue: one writer
                            per city, many cities at once)
      shared/models/<name>/ each city's champion, exported for cities too young for their own:
                            the model and its metadata only (no row about a child)
      prefecture/           cross-city views: school and city aggregates, small cells suppressed

Nothing in one city's home is read by another city's run: each run resolves its city (the
``toda/city`` run tag, or the prefix of the asset keys it selects) and opens that home only.
Without ``TODA_DEPLOYMENT`` the platform serves the single city of ``TODA_HOME`` as before.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from toda_platform.settings import Paths

DEPLOYMENT_ENV = "TODA_DEPLOYMENT"
CITY_TAG = "toda/city"
CITY_FILE = "city.toml"
NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # an asset key prefix, a run tag value, a folder name


class DeploymentError(ValueError):
    pass


@dataclass(frozen=True)
class Deployment:
    root: Path

    @classmethod
    def from_env(cls, root: str | os.PathLike | None = None) -> "Deployment | None":
        value = root if root is not None else os.environ.get(DEPLOYMENT_ENV, "").strip()
        return cls(Path(value).expanduser().resolve()) if value else None

    @property
    def cities_dir(self) -> Path:
        return self.root / "cities"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    @property
    def shared_models(self) -> Path:
        return self.root / "shared" / "models"

    @property
    def prefecture(self) -> Path:
        return self.root / "prefecture"

    def cities(self) -> list[str]:
        """Every configured city: a folder under cities/ holding its city file, by name."""
        if not self.cities_dir.is_dir():
            return []
        names = sorted(p.parent.name for p in self.cities_dir.glob(f"*/{CITY_FILE}"))
        bad = [n for n in names if not NAME.match(n)]
        if bad:
            raise DeploymentError(f"{self.cities_dir}: city folder names must match {NAME.pattern} "
                                  f"(they prefix asset keys and tag runs): {', '.join(bad)}")
        return names

    def paths(self, city: str) -> Paths:
        """The home of ``city``; refuses a name that is not a configured city."""
        if not NAME.match(city or ""):
            raise DeploymentError(f"not a city name: {city!r}")
        home = self.cities_dir / city
        if not (home / CITY_FILE).is_file():
            raise DeploymentError(f"no city '{city}' in {self.cities_dir} (no {CITY_FILE} there)")
        return Paths(home)

    def add_city(self, name: str, city_file: str | os.PathLike | None = None) -> Paths:
        """Make ``cities/<name>/`` with its city file: a copy of ``city_file`` when given, else
        the packaged file of that name (``toda_platform/cities/<name>.toml``), else the packaged
        Toda file under this city's name (its exports described as Toda's: edit it)."""
        if not NAME.match(name):
            raise DeploymentError(f"not a city name: {name!r} (must match {NAME.pattern})")
        home = self.cities_dir / name
        home.mkdir(parents=True, exist_ok=True)
        target = home / CITY_FILE
        if not target.exists():
            target.write_text(city_file_text(name, city_file), encoding="utf-8")
        return Paths(home)


def city_file_text(name: str, city_file: str | os.PathLike | None = None) -> str:
    if city_file:
        return Path(city_file).read_text(encoding="utf-8")
    packaged = Path(__file__).resolve().parent / "cities"
    own, toda = packaged / f"{name}.toml", packaged / "toda.toml"
    if own.is_file():
        return own.read_text(encoding="utf-8")
    if toda.is_file():  # the first `name = ...` is the [city] table's
        return re.sub(r'(?m)^name\s*=\s*"[^"]*"', f'name = "{name}"', toda.read_text(encoding="utf-8"), count=1)
    return f'schema_version = 1\n[city]\nname = "{name}"\n'  # before the packaged city files


def run_city(tags: dict, asset_keys=()) -> str:
    """The city a run belongs to: its ``toda/city`` tag, else the one prefix of the asset keys
    it selects (a materialisation started by hand in the UI). A run spanning cities is refused:
    it would need two warehouses at once."""
    if tags.get(CITY_TAG):
        return tags[CITY_TAG]
    prefixes = {k.path[0] for k in asset_keys}
    if len(prefixes) == 1:
        return prefixes.pop()
    if not prefixes:
        raise DeploymentError(f"a run of the deployment names no city: tag it {CITY_TAG}=<name> "
                              "or select one city's assets")
    raise DeploymentError(f"a run may serve one city only; this one selects {', '.join(sorted(prefixes))}")
