"""Roles, read from a file (``portal/roles.toml``, or the file ``TODA_PORTAL_ROLES`` names)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DEFAULT_FILE = Path(__file__).with_name("roles.toml")
SCOPES = ("all", "school", "agency", "none")


@dataclass(frozen=True)
class Role:
    key: str
    label: str
    scope: str
    names: bool = False
    export_names: bool = False
    record_support: bool = False
    hardship_screen: bool = False
    audit_log: bool = False
    manage_users: bool = False

    @property
    def sees_pupils(self) -> bool:
        return self.scope != "none"


@dataclass(frozen=True)
class MisuseRules:
    refusals_per_hour: int = 5
    pupils_per_day: int = 40
    usual_factor: float = 3.0
    schools_per_day: int = 3
    night_start_hour: int = 22
    night_end_hour: int = 6


@dataclass(frozen=True)
class ScreenRules:
    """Which of a school's screened pupils the 貧困・虐待 page lists (roles.toml ``[screen]``)."""
    top_share: float = 0.05   # the school's top share by screen score (ties included) ...
    min_score: float = 3.0    # ... with at least this score (one weak sign alone never lists)


def config_file() -> Path:
    return Path(os.environ.get("TODA_PORTAL_ROLES") or DEFAULT_FILE)


@lru_cache(maxsize=4)
def _load(path: str) -> tuple[dict[str, Role], MisuseRules, ScreenRules]:
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    roles = {}
    for key, spec in data.get("roles", {}).items():
        role = Role(key=key, **spec)
        if role.scope not in SCOPES:
            raise ValueError(f"{path}: role {key!r} has scope {role.scope!r}; allowed: {', '.join(SCOPES)}")
        roles[key] = role
    return roles, MisuseRules(**data.get("misuse", {})), ScreenRules(**data.get("screen", {}))


def roles() -> dict[str, Role]:
    return _load(str(config_file()))[0]


def misuse_rules() -> MisuseRules:
    return _load(str(config_file()))[1]


def screen_rules() -> ScreenRules:
    return _load(str(config_file()))[2]


def role(key: str | None) -> Role | None:
    return roles().get(key or "")
