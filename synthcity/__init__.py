"""The synthetic city: every department's exports for a Toda-like city, and its hidden truth.

No real pupil data may ever exist in this project, so every test, benchmark and demo runs on
this city. One latent model ties all 23 sources together (see ``latent.py`` and ``daily.py``);
the catalogue's ExportStyle decides how each file looks (``writer.py``); ``today`` decides only
which records exist yet, never what the simulation draws.

    generate_city(home, CityConfig(), progress=True) -> GenerationSummary

writes ``home/landing/<source_key>/*.csv`` for every catalogue source and ``home/truth/``
(which the pipeline never reads). Regenerating replaces the city's earlier landing files and
truth.

Module map: ``calendar`` (school days, holidays) · ``schools`` · ``population`` (cohorts,
transfers, classes) · ``names`` · ``latent`` (hidden state, p_futoukou) · ``daily`` (attendance,
case meetings, nurse visits) · ``support`` (actions and their true effects) · ``records/*`` (one
builder per source) · ``writer`` (the one generic CSV writer) · ``truth``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

from tqdm import tqdm

from toda_platform.catalogue import CATALOGUE
from toda_platform.city import CITY_ENV, load_city
from toda_platform.settings import Paths
from synthcity.calendar import DEFAULT, SchoolCalendar, school_year
from synthcity.city import simulate
from synthcity.records import BUILDERS
from synthcity.towns import town
from synthcity.truth import write_truth
from synthcity.writer import ReExportPlan, SourceFiles, Writer

__all__ = ["CityConfig", "GenerationSummary", "generate_city", "LATE_FIELDS", "PROFILES", "profile"]

# Fields that are blank in an export until they become known (the writer's ``__known``
# companions): an earlier export may show them blank where a later one shows a value.
LATE_FIELDS = {"pupil_registry": ("left_on",), "nursery_enrollment": ("left_on",), "support_records": ("outcome",)}


@dataclass(frozen=True)
class CityConfig:
    pupils: int = 12_000
    elementary_schools: int = 12
    junior_high_schools: int = 6
    years: int = 6  # school years of history, ending with the latest (in-progress) one
    latest_school_year: int = 2026  # fixed, not the wall clock: the city never depends on when it is made
    today: date | None = None  # default: early November of the latest school year
    seed: int = 20261
    # who lives where: school names and codes, districts (synthcity/towns.py) and the school
    # calendar of the town's packaged city file
    town: str = "toda"

    @property
    def school_years(self) -> list[int]:
        return list(range(self.latest_school_year - self.years + 1, self.latest_school_year + 1))

    @property
    def as_of(self) -> date:
        return self.today or date(self.latest_school_year, 11, 5)


@dataclass
class GenerationSummary:
    files: dict[str, list[str]] = field(default_factory=dict)  # source_key -> file names written
    # source_key -> data rows staging should hold after the duplicate file is skipped and the
    # corrected re-export has replaced its original
    expected_rows: dict[str, int] = field(default_factory=dict)
    duplicate_file: tuple[str, str] = ("", "")  # (source_key, file name) of the byte-identical re-export
    corrected_file: tuple[str, str, str] = ("", "", "")  # (source_key, original, corrected file name)
    seconds: float = 0.0


def generate_city(home: Path | str, config: CityConfig = CityConfig(), progress: bool = True,
                  city_file: str | Path | None = None) -> GenerationSummary:
    """``city_file``: how the city's departments write their files (a packaged name or a path;
    default: the home's city if it has one — its ``city.toml`` or ``TODA_CITY`` — else the town's
    own). It is copied into the home as ``city.toml``: the home says which city's exports it
    holds, and stages them with that file alone."""
    started = time.perf_counter()
    paths = Paths.from_env(home)
    years, today = config.school_years, config.as_of
    if city_file is not None:
        exports = load_city(city_file)
    elif paths.city_file.exists() or os.environ.get(CITY_ENV):
        exports = paths.city
    else:
        exports = load_city(config.town)
    calendar = load_city(config.town).calendar
    if config.years < 1 or today < date(years[0], 4, 1):
        raise ValueError(f"today ({today}) must fall on or after the first school year of the history ({years[0]})")
    with tqdm(total=len(years) + len(CATALOGUE) + 1, desc="synthetic city", unit="step",
              disable=not progress) as bar:
        city = simulate(config.seed, config.pupils, config.elementary_schools, config.junior_high_schools,
                        years, on_year=lambda: bar.update(), town=town(config.town), calendar=calendar)
        _clear(paths)
        paths.home.mkdir(parents=True, exist_ok=True)
        if not (paths.city_file.exists() and paths.city_file.samefile(exports.file)):
            shutil.copyfile(exports.file, paths.city_file)
        writer = Writer(paths.landing, today, config.seed, re_export_plan(years, today, calendar),
                        date(years[0], 4, 1))
        written: dict[str, SourceFiles] = {}
        for key, spec in exports.specs.items():
            bar.set_postfix_str(key)
            written[key] = writer.write(spec, BUILDERS[key](city))
            bar.update()
        if writer.duplicate is None or writer.correction is None:
            raise RuntimeError("the planned duplicate and corrected re-exports were not written")
        bar.set_postfix_str("truth")
        write_truth(paths.truth, city)
        bar.update()
    summary = GenerationSummary(
        files={k: v.names for k, v in written.items()},
        expected_rows={k: v.expected_rows for k, v in written.items()},
        duplicate_file=writer.duplicate,
        corrected_file=writer.correction,
        seconds=round(time.perf_counter() - started, 2),
    )
    record = asdict(summary) | {"config": {**asdict(config), "today": today.isoformat()}}
    (paths.truth / "generation.json").write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")
    return summary


# The generator's profiles (`toda generate --profile NAME`): each a town and its default size, written
# with the town's own city file. Toda is the default; Warabi is a neighbouring, smaller fictional
# city (about 0.4x Toda's pupils, 7 + 3 schools) whose departments use another vendor's exports.
PROFILES: dict[str, CityConfig] = {
    "toda": CityConfig(),
    "warabi": CityConfig(pupils=4_800, elementary_schools=7, junior_high_schools=3, seed=20262, town="warabi"),
}


def profile(name: str) -> CityConfig:
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; profiles: {', '.join(PROFILES)}") from None


def re_export_plan(years: list[int], today: date, calendar: SchoolCalendar = DEFAULT) -> ReExportPlan:
    """Attendance for June (corrected) and May (duplicated) of the school year before the latest,
    or of the latest completed one, or, if no year is complete yet, of the two latest complete
    school months. Preferring the year before the latest keeps the choice stable for every
    ``today`` from the latest year's April on."""
    done = [y for y in years if date(y + 1, 3, 31) < today]
    if done:
        before_latest = years[-2] if len(years) >= 2 else None
        y = before_latest if before_latest in done else done[-1]
        return ReExportPlan(duplicate=("attendance_daily", f"{y}-05"), correction=("attendance_daily", f"{y}-06"))
    months = sorted({(d.year, d.month) for y in years for d in school_year(y, calendar).days.astype(date)
                     if (d.year, d.month) < (today.year, today.month)})
    if len(months) < 2:
        raise ValueError(f"today ({today}) leaves fewer than two complete school months to re-export")
    (y1, m1), (y2, m2) = months[-2:]
    return ReExportPlan(duplicate=("attendance_daily", f"{y1}-{m1:02d}"),
                        correction=("attendance_daily", f"{y2}-{m2:02d}"))


def _clear(paths: Paths) -> None:
    """Remove the city's earlier exports and truth: a home holds one city at a time."""
    for key in CATALOGUE:
        folder = paths.landing_dir(key)
        if folder.is_dir():
            for f in folder.glob("*.csv"):
                f.unlink()
    shutil.rmtree(paths.truth, ignore_errors=True)
