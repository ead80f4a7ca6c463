"""A city: how its departments export each source, which schools it publishes, its school calendar.

The catalogue (``catalogue.py``) says what each source *means*, the same everywhere. A city file
(``toda_platform/cities/<name>.toml``, or a home's own ``city.toml``) says how one city's
systems write it — headers and the aliases also accepted, encoding, date and grade style,
raw value → code maps, file naming, total rows, trailing blank lines, full-width digits, the
layout (long, or attendance as a monthly grid) — plus the pilot schools enabled for publication
and the calendar's long vacations. ``City.spec(key)`` is the catalogue's spec with the city's
export merged in: what every reader and writer of files uses.

The file is checked against a schema (pydantic) and against the catalogue; every error names
the file and the key path::

    warabi.toml: sources.attendance_daily.headers.statuss: unknown column 'statuss' (columns: …)

Adopting the platform in another city means writing this file, not code: copy ``toda.toml``,
change what differs, and ``load_city`` says what does not fit.
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from toda_platform.catalogue import CATALOGUE, Column, ExportStyle, MonthlyGrid, SourceSpec

CITIES_DIR = Path(__file__).with_name("cities")
CITY_ENV = "TODA_CITY"
DEFAULT_CITY = "toda"
# what every city exports: the schools, the pupils, attendance and the survey that labels the
# model. Any other source may be left out of a city file (not exported by that city)
CORE_SOURCES = ("school_master", "pupil_registry", "attendance_daily", "long_absence_survey")
SCHEMA_VERSION = 1
VALUED_KINDS = ("category", "multi", "bool")

Value = Union[bool, int, str]  # bool first: a TOML true is not the integer 1
_BRANCHES = {"bool", "int", "str"}  # pydantic's tags of Value's branches in an error's location
_PLAIN = {"missing": "Missing: this key is required", "extra_forbidden": "Unknown key (the schema has no such key)"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CityPart(_Strict):
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    title_ja: str = Field(min_length=1)
    board_ja: str = Field(min_length=1)
    office_ja: str = "教育政策室"  # the board's office that runs the platform and takes requests


class PublicationPart(_Strict):
    # 学校コード of the schools enabled for the risk list and the portal; empty: every school
    pilot_schools: list[str] = []


class CalendarPart(_Strict):
    breaks: list[list[str]] | None = None  # [["07-21", "08-31"], …] month-day, inclusive
    closed: list[date] = []
    open: list[date] = []


class GridPart(_Strict):
    month: list[str] = Field(min_length=1)  # headers of the column holding the month
    day_header: str = "{day}"  # the day columns' header, {day} = 1..31
    marks: dict[str, str] = Field(min_length=1)  # mark -> status code
    date_column: str = "date"
    status_column: str = "status"


class SourcePart(_Strict):
    encoding: Literal["cp932", "utf-8-sig", "utf-8"]
    file_cadence: Literal["monthly", "school_year", "round", "once"]
    file_name: str
    date_format: Literal["iso", "slash", "wareki_kanji", "wareki_letter", "wareki_letter_padded",
                         "form_timestamp"] = "iso"
    grade_format: Literal["kanji", "within_school", "bare_within_school", "citywide"] = "kanji"
    total_row: bool = False
    trailing_blank_lines: int = Field(0, ge=0, le=20)
    fullwidth_digits: bool = False
    layout: Literal["long", "monthly_grid"] = "long"
    headers: dict[str, list[str]]
    pseudonym_headers: dict[str, list[str]] = {}
    values: dict[str, Union[str, dict[str, Value]]] = {}
    grid: GridPart | None = None


class CityFile(_Strict):
    schema_version: Literal[1]
    city: CityPart
    publication: PublicationPart = PublicationPart()
    calendar: CalendarPart = CalendarPart()
    value_sets: dict[str, dict[str, Value]] = {}
    sources: dict[str, SourcePart]


class CityFileError(ValueError):
    """A city file that does not fit the schema or the catalogue: every problem, by key path."""

    def __init__(self, file: str, problems: list[tuple[str, str]]):
        self.file = file
        self.problems = problems
        shown = [f"{file}: {path}: {what}" if path else f"{file}: {what}" for path, what in problems]
        super().__init__("\n".join(shown[:30]) + (f"\n… and {len(shown) - 30} more" if len(shown) > 30 else ""))

    @property
    def paths(self) -> list[str]:
        return [p for p, _ in self.problems]


def _key(part: str) -> str:
    return part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else f'"{part}"'


def _path(*parts) -> str:
    return ".".join(_key(str(p)) for p in parts)


@dataclass(frozen=True)
class City:
    """One city's configuration, checked, with its sources' specs merged from the catalogue."""

    name: str
    title_ja: str
    board_ja: str
    file: Path
    specs: dict[str, SourceSpec]
    pilot_schools: tuple[str, ...] = ()
    office_ja: str = "教育政策室"
    breaks: tuple | None = None
    closed: frozenset = frozenset()
    open: frozenset = frozenset()

    def spec(self, key: str) -> SourceSpec:
        try:
            return self.specs[key]
        except KeyError:
            raise KeyError(f"unknown source {key!r}; {self.name} exports: {', '.join(self.specs)}") from None

    @property
    def not_exported(self) -> tuple[str, ...]:
        """The sources this city's file has no section for (their staging tables stay empty)."""
        return tuple(k for k, s in self.specs.items() if not s.exported)

    def published(self, school_code: str) -> bool:
        """Whether a school's list and portal page are published (a pilot school, or no pilot list)."""
        return not self.pilot_schools or school_code in self.pilot_schools

    @property
    def calendar(self):
        """The city's school calendar (a home's school_calendar.toml may still override it)."""
        from toda_platform.school_calendar import BREAKS, SchoolCalendar

        return SchoolCalendar(breaks=self.breaks or BREAKS, closed=self.closed, open=self.open)


def city_file(name_or_path: str | os.PathLike) -> Path:
    """A packaged city's file (``toda``) or a path to one."""
    text = str(name_or_path)
    if re.fullmatch(r"[a-z0-9_]+", text):
        path = CITIES_DIR / f"{text}.toml"
        if not path.exists():
            raise FileNotFoundError(f"no packaged city {text!r}; packaged: {', '.join(packaged_cities())}")
        return path
    path = Path(text).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no city file {path}")
    return path


def packaged_cities() -> list[str]:
    return sorted(p.stem for p in CITIES_DIR.glob("*.toml"))


def load_city(name_or_path: str | os.PathLike = DEFAULT_CITY) -> City:
    """The city of a packaged name or a file, checked against the schema and the catalogue."""
    path = city_file(name_or_path).resolve()
    return _load(path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _load(path: Path, _mtime: int) -> City:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise CityFileError(path.name, [("", f"not TOML: {e}")]) from None
    except UnicodeDecodeError:
        raise CityFileError(path.name, [("", "not UTF-8 text")]) from None
    return parse_city(raw, path)


def parse_city(raw: dict, path: Path) -> City:
    """A City from a city file's parsed TOML (``path`` names it in errors)."""
    try:
        doc = CityFile.model_validate(raw)
    except ValidationError as e:
        found: dict[str, list[str]] = {}
        for err in e.errors():
            # a union's branches come as separate errors tagged with the branch: one problem instead
            loc = [p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in _BRANCHES))]
            msg = _PLAIN.get(err["type"], err["msg"].replace("Input should be ", ""))
            found.setdefault(_path(*loc), []).append(msg)
        raise CityFileError(path.name, [(p, "value should be " + " or ".join(dict.fromkeys(msgs))
                                         if all(not m[0].isupper() for m in msgs) else "; ".join(msgs))
                                        for p, msgs in found.items()]) from None
    problems: list[tuple[str, str]] = []
    specs = {}
    for key in doc.sources:
        if key not in CATALOGUE:
            problems.append((_path("sources", key), f"unknown source; the catalogue's: {', '.join(CATALOGUE)}"))
    missing = [k for k in CATALOGUE if k not in doc.sources]
    core = [k for k in CORE_SOURCES if k in missing]
    if core:
        problems.append(("sources", f"missing {', '.join(core)}: every city exports these ({', '.join(CORE_SOURCES)}: "
                                    f"the schools, the pupils, their attendance and the long-absence survey "
                                    f"that labels the model); a section may be left out for any other source "
                                    f"the city does not export"))
    for name, mapping in doc.value_sets.items():
        if not mapping:
            problems.append((_path("value_sets", name), "empty"))
    for key, part in doc.sources.items():
        if key in CATALOGUE:
            specs[key] = _merge(CATALOGUE[key], part, doc, problems)
    for i, code in enumerate(doc.publication.pilot_schools):
        if not re.fullmatch(r"[A-Z]\d{12}", code):
            problems.append((_path("publication", "pilot_schools", i), f"'{code}' is not a 学校コード (B/C + 12 digits)"))
    breaks = None
    if doc.calendar.breaks is not None:
        breaks = []
        for i, pair in enumerate(doc.calendar.breaks):
            try:
                if len(pair) != 2:
                    raise ValueError
                breaks.append(tuple(_month_day(x) for x in pair))
            except ValueError:
                problems.append((_path("calendar", "breaks", i), f"{pair!r} is not [\"MM-DD\", \"MM-DD\"]"))
    if problems:
        raise CityFileError(path.name, list(dict.fromkeys(problems)))
    every = frozenset(h for s in specs.values() for c in s.columns for h in c.accepted_headers)
    specs = {k: replace(s, city_headers=every) for k, s in specs.items()}
    if missing:
        # Not exported by this city: a complete spec (the default city's) so that its staging
        # table, checks and every feature built from it run on an empty table as on any other;
        # the reader refuses any file landed for it before looking at the file (exported=False)
        default = load_city(DEFAULT_CITY).specs
        specs.update({k: replace(default[k], exported=False) for k in missing})
    specs = {k: specs[k] for k in CATALOGUE}  # the catalogue's order, whatever the file's
    return City(name=doc.city.name, title_ja=doc.city.title_ja, board_ja=doc.city.board_ja, file=path,
                specs=specs, pilot_schools=tuple(doc.publication.pilot_schools), office_ja=doc.city.office_ja,
                breaks=tuple(breaks) if breaks else None, closed=frozenset(doc.calendar.closed),
                open=frozenset(doc.calendar.open))


def _month_day(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d{2})-(\d{2})", text)
    if not m:
        raise ValueError(text)
    month, day = int(m[1]), int(m[2])
    date(2024, month, day)  # a real day of a leap year
    return month, day


def _merge(meaning: SourceSpec, part: SourcePart, doc: CityFile, problems: list) -> SourceSpec:
    key = meaning.key
    at = functools.partial(_path, "sources", key)
    names = [c.name for c in meaning.columns]
    known = f"(columns: {', '.join(names)})"
    grid = part.grid
    for section in ("headers", "pseudonym_headers", "values"):
        for col in getattr(part, section):
            if col not in names:
                problems.append((at(section, col), f"unknown column '{col}' {known}"))
    grid_cols = {grid.date_column, grid.status_column} if grid else set()
    columns = []
    for col in meaning.columns:
        headers = part.headers.get(col.name)
        if headers is None:
            if col.required and col.name not in grid_cols:
                problems.append((at("headers"), f"missing column '{col.name}' ({col.kind})"))
            headers = [col.name]  # not exported by this city (optional) or made by the grid
        elif not headers or any(not h.strip() for h in headers):
            problems.append((at("headers", col.name), "needs one or more non-blank headers"))
        pseudo = part.pseudonym_headers.get(col.name, [])
        if pseudo and not col.accepts_pseudonym:
            problems.append((at("pseudonym_headers", col.name), f"'{col.name}' never arrives pseudonymised"))
        elif col.accepts_pseudonym and not pseudo:
            problems.append((at("pseudonym_headers"), f"missing '{col.name}': the header of its pseudonym "
                                                      f"(the portal writes it, e.g. 仮名ID)"))
        values = _values(col, part, doc, at, problems, made_by_grid=col.name in grid_cols)
        if grid and col.name == grid.status_column:
            values = {**(values or {}), **grid.marks}  # the grid's cells arrive as their marks
        columns.append(replace(col, headers=tuple(headers), values=values, pseudonym_headers=tuple(pseudo)))
    if "{period}" not in part.file_name and part.file_cadence != "once":
        problems.append((at("file_name"), "needs {period} (one file per period)"))
    grid_style = None
    if part.layout == "monthly_grid":
        grid_style = _grid(meaning, part, at, problems)
    elif grid is not None:
        problems.append((at("grid"), 'only with layout = "monthly_grid"'))
    export = ExportStyle(
        encoding=part.encoding, file_cadence=part.file_cadence, file_name=part.file_name,
        date_format=part.date_format, grade_format=part.grade_format, total_row=part.total_row,
        trailing_blank_lines=part.trailing_blank_lines, fullwidth_digits=part.fullwidth_digits,
        layout=part.layout, grid=grid_style)
    use = replace(meaning.use, legal_basis=meaning.use.legal_basis.replace("{board}", doc.city.board_ja))
    return replace(meaning, columns=tuple(columns), export=export, use=use)


def _values(col: Column, part: SourcePart, doc: CityFile, at, problems: list, made_by_grid: bool = False) -> dict | None:
    given = part.values.get(col.name)
    if col.kind not in VALUED_KINDS:
        if given is not None:
            problems.append((at("values", col.name), f"'{col.name}' is {col.kind}: it has no value map"))
        return None
    if given is None:
        if (col.required and not made_by_grid) or part.headers.get(col.name):
            problems.append((at("values"), f"missing the value map of '{col.name}' ({col.kind})"))
        return {}
    where = at("values", col.name)
    if isinstance(given, str):
        if given not in doc.value_sets:
            problems.append((where, f"no value set '{given}'; value_sets: {', '.join(doc.value_sets) or 'none'}"))
            return {}
        where, given = _path("value_sets", given), doc.value_sets[given]
    if not given:
        problems.append((where, "empty value map"))
    for raw, code in given.items():
        if col.kind == "bool":
            if not isinstance(code, bool):
                problems.append((f"{where}.{_key(raw)}", f"{code!r} is not true or false"))
        elif code not in (col.codes or ()):
            problems.append((f"{where}.{_key(raw)}",
                             f"{code!r} is not a code of {col.name} ({', '.join(map(str, col.codes or ()))})"))
    return dict(given)


def _grid(meaning: SourceSpec, part: SourcePart, at, problems: list) -> MonthlyGrid | None:
    grid = part.grid
    if grid is None:
        problems.append((at("grid"), 'layout = "monthly_grid" needs a [grid] section (month, day_header, marks)'))
        return None
    cols = {c.name: c for c in meaning.columns}
    date_col, status_col = cols.get(grid.date_column), cols.get(grid.status_column)
    if date_col is None or date_col.kind != "date":
        problems.append((at("grid", "date_column"), f"'{grid.date_column}' is not a date column of {meaning.key}"))
    if status_col is None or status_col.kind != "category":
        problems.append((at("grid", "status_column"),
                         f"'{grid.status_column}' is not a category column of {meaning.key}"))
    if part.file_cadence != "monthly":
        problems.append((at("file_cadence"), "a monthly grid is one file per month: file_cadence = \"monthly\""))
    if part.total_row:
        problems.append((at("total_row"), "not with a monthly grid (its 合計 rows are skipped when read)"))
    if "{day}" not in grid.day_header:
        problems.append((at("grid", "day_header"), "needs {day} (the day of the month, 1-31)"))
    if status_col is not None:
        for mark, code in grid.marks.items():
            if not mark.strip():
                problems.append((at("grid", "marks", mark), "a blank cell means no school day: not a mark"))
            elif code not in (status_col.codes or ()):
                problems.append((at("grid", "marks", mark),
                                 f"{code!r} is not a code of {status_col.name} ({', '.join(status_col.codes or ())})"))
    return MonthlyGrid(month_headers=tuple(grid.month), day_header=grid.day_header, marks=dict(grid.marks),
                       date_column=grid.date_column, status_column=grid.status_column)


def home_city(home: str | os.PathLike) -> City:
    """The city of a home: its own ``city.toml``, else ``TODA_CITY`` (a packaged name or a path),
    else Toda."""
    from toda_platform.settings import Paths

    own = Paths.from_env(home).city_file
    if own.exists():
        return load_city(own)
    return load_city(os.environ.get(CITY_ENV, "").strip() or DEFAULT_CITY)
