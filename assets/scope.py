"""Whose assets a job, schedule or sensor acts on.

The single city of ``TODA_HOME`` (``Scope()``): keys, names and tags as they always were.
One city of a deployment (``Scope("warabi")``): the same definitions with every asset key under
the city's name (``warabi/staging/attendance_daily``), every job, schedule and sensor name
prefixed (``warabi__nightly_refresh``), and every run it starts tagged ``toda/city=warabi``
(the run queue's per-city limit, and the resources' way to open that city's home).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import dagster as dg

from toda_platform.deployment import CITY_TAG
from toda_platform.warehouse import WRITER_TAGS


@dataclass(frozen=True)
class Scope:
    city: str | None = None

    def key(self, key: dg.AssetKey) -> dg.AssetKey:
        return key.with_prefix(self.city) if self.city else key

    def name(self, name: str) -> str:
        return f"{self.city}__{name}" if self.city else name

    @property
    def everything(self) -> dg.AssetSelection:
        return dg.AssetSelection.key_prefixes([self.city]) if self.city else dg.AssetSelection.all()

    def assets(self, *keys: dg.AssetKey) -> dg.AssetSelection:
        return dg.AssetSelection.assets(*(self.key(k) for k in keys))

    def groups(self, *names: str) -> dg.AssetSelection:
        selection = dg.AssetSelection.groups(*names)
        return selection & self.everything if self.city else selection

    @property
    def tags(self) -> dict[str, str]:
        """The tags of every run this scope starts: a warehouse writer (of this city)."""
        return {**WRITER_TAGS, CITY_TAG: self.city} if self.city else dict(WRITER_TAGS)


SINGLE = Scope()

# Dagster rebuilds checks whose keys were replaced through a constructor whose execution_type
# parameter it labels beta (1.13): said once here, not at every load of a deployment
warnings.filterwarnings("ignore", message=".*execution_type.*", category=dg.BetaWarning)


def prefix_assets(assets: list, city: str) -> list:
    """``assets`` (assets and asset checks) with every key — their own, their deps', their
    checks' targets — under ``city``: the same code, one asset graph per city."""
    keys = set()
    for a in assets:
        keys |= set(a.keys) | {d.asset_key for spec in a.specs for d in spec.deps}
        keys |= {c.asset_key for c in a.check_keys}
        keys |= set(getattr(a, "keys_by_input_name", {}).values())
    replacements = {k: k.with_prefix(city) for k in keys}
    return [a.with_attributes(asset_key_replacements=replacements) for a in assets]
