"""Profile an unknown export: which source it is, how its headers map, and a draft city-file section.

A city adopting the platform has files, not documentation. ``profile_export`` reads one file
(encoding, delimiter, headers, the *shapes* of its values: 和暦 dates, grade styles, 13-character
学校コード, 8-digit numbers), scores it against every source the project knows — the catalogue's
columns and every header, alias and raw value the packaged city files accept — and proposes the
source, the header mapping and the export style. ``draft_section`` writes that proposal as a
city-file TOML section for a person to confirm, and says plainly what it could not map.

Values of personal columns (numbers, names, birth dates, hand-typed text) are never shown, nor
values of a column it could not map (it cannot know they are not personal): shapes only
("8 digits", "令和 date"). Only the raw values of mapped, non-personal code columns (出欠 marks,
性別) are listed, because the draft needs their value map.

    toda sources profile FILE [--source KEY]      (toda_platform/cli.py)
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from toda_platform import parsing
from toda_platform.catalogue import Column, SourceSpec

CITY_ENCODINGS = ("cp932", "utf-8-sig", "utf-8")  # what a city file may name
SAMPLE_ROWS = 5000
MAX_CODES = 200  # more distinct values than this: not a column of codes  # rows whose values are profiled (the header and the tail are always read)
CODE_KINDS = ("category", "bool", "multi")
DAY_COLUMN = re.compile(r"^(?P<day>[0-9]{1,2})(?P<suffix>日?)$")
_ERA_NAME = "(?:令和|平成|昭和)"
_ERA_YEAR = "(?:[0-9]{1,2}|元)"

# (shape name, pattern over NFKC text, the catalogue kinds it can be, date/grade style it shows)
_PATTERNS: tuple[tuple[str, re.Pattern, tuple[str, ...], str | None], ...] = (
    ("form timestamp", re.compile(r"[0-9]{4}/[0-9]{2}/[0-9]{2} [0-9]{1,2}:[0-9]{2}:[0-9]{2}"),
     ("timestamp_date",), "form_timestamp"),
    ("ISO date", re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}"), ("date", "timestamp_date"), "iso"),
    ("slash date", re.compile(r"[0-9]{4}/[0-9]{1,2}/[0-9]{1,2}"), ("date", "timestamp_date"), "slash"),
    ("和暦 date (令和6年4月8日)", re.compile(rf"{_ERA_NAME}{_ERA_YEAR}年[0-9]{{1,2}}月[0-9]{{1,2}}日"),
     ("date",), "wareki_kanji"),
    ("和暦 date (R06.04.08)", re.compile(r"[RHS][0-9]{2}\.[0-9]{2}\.[0-9]{2}"), ("date",), "wareki_letter_padded"),
    ("和暦 date (R6.4.8)", re.compile(r"[RHS][0-9]{1,2}\.[0-9]{1,2}\.[0-9]{1,2}"), ("date",), "wareki_letter"),
    ("ISO month", re.compile(r"[0-9]{4}-[0-9]{2}"), ("month",), "iso"),
    ("slash month", re.compile(r"[0-9]{4}/[0-9]{1,2}"), ("month",), "slash"),
    ("和暦 month (令和6年5月)", re.compile(rf"{_ERA_NAME}{_ERA_YEAR}年[0-9]{{1,2}}月"), ("month",), "wareki_kanji"),
    ("和暦 month (R6.5)", re.compile(r"[RHS][0-9]{1,2}\.[0-9]{1,2}"), ("month",), "wareki_letter"),
    ("和暦 school year (令和6年度)", re.compile(rf"{_ERA_NAME}{_ERA_YEAR}年度"), ("school_year",), "wareki_kanji"),
    ("和暦 school year (R6)", re.compile(r"[RHS][0-9]{1,2}"), ("school_year",), "wareki_letter"),
    ("grade 小3/中1", re.compile(r"[小中][1-6]"), ("grade",), "kanji"),
    ("grade 3年", re.compile(r"[1-6]年"), ("grade",), "within_school"),
    ("13-character 学校コード", re.compile(r"[A-H][0-9]{12}"), ("school_code",), None),
    ("16 hex characters (a pseudonym)", re.compile(r"[0-9a-f]{16}"), ("pseudonym",), None),
    ("time HH:MM", re.compile(r"[0-9]{1,2}:[0-9]{2}"), ("time",), None),
    ("decimal number", re.compile(r"-?[0-9]+\.[0-9]+"), ("float",), None),
)
_KANA = re.compile(r"[\u3041-\u309f\u30a0-\u30ff\s・ー]+")


@dataclass(frozen=True)
class Shape:
    """What a column's values look like, never what they are."""

    name: str  # "8 digits", "和暦 date (R6.4.8)", "text, 2-12 characters", "blank"
    kinds: tuple[str, ...]  # catalogue kinds the column can be
    style: str | None = None  # date_format or grade_format it shows
    distinct: int = 0


@dataclass(frozen=True)
class Export:
    """One file as read: encoding, delimiter, headers, a sample of rows and its trailer."""

    name: str
    encoding: str
    delimiter: str
    headers: list[str]
    rows: list[list[str]]
    total_row: bool
    trailing_blank_lines: int
    fullwidth_digits: bool


@dataclass
class Mapped:
    header: str
    column: str | None  # canonical column, None if unmapped
    how: str  # "header" (a header the project knows), "shape" (to confirm), "" (unmapped)
    shape: Shape
    personal: bool
    values: dict[str, str | None] = field(default_factory=dict)  # raw -> known code (non-personal codes only)


@dataclass
class Proposal:
    source: str
    score: float
    export: Export
    columns: list[Mapped]
    missing: list[str]  # required canonical columns the file lacks
    candidates: list[tuple[str, float]]  # (source, score), best first
    layout: str = "long"
    grid: dict | None = None  # month header, day_header, marks seen -> known code
    date_format: str | None = None
    grade_format: str | None = None
    file_name: str = ""
    file_cadence: str | None = None

    @property
    def unmapped(self) -> list[Mapped]:
        return [m for m in self.columns if m.column is None]

    def mapping(self) -> dict[str, str]:
        """Canonical column -> header, for the columns it could map."""
        return {m.column: m.header for m in self.columns if m.column}


@dataclass(frozen=True)
class Knowledge:
    """Everything the project knows about a source across its city files."""

    spec: SourceSpec  # the meaning (columns, kinds) from the first city that has it
    headers: Mapping[str, frozenset[str]]  # column -> every accepted header, normalised
    values: Mapping[str, Mapping[str, object]]  # column -> raw value (normalised) -> code
    marks: Mapping[str, str]  # grid mark -> status code (attendance)
    cadence: str


def normalise(text: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", (text or "").replace("\ufeff", "")))


def knowledge(cities: Iterable[Mapping[str, SourceSpec]]) -> dict[str, Knowledge]:
    """Merge the specs of several cities (headers, aliases, value maps) into one per source."""
    merged: dict[str, dict] = {}
    for specs in cities:
        for key, spec in specs.items():
            k = merged.setdefault(key, {"spec": spec, "headers": {}, "values": {}, "marks": {},
                                        "cadence": spec.export.file_cadence})
            for col in spec.columns:
                k["headers"].setdefault(col.name, set()).update(normalise(h) for h in col.accepted_headers)
                k["headers"][col.name].add(normalise(col.name))
                for raw, code in (col.values or {}).items():
                    k["values"].setdefault(col.name, {}).setdefault(normalise(raw), code)
            grid = getattr(spec.export, "grid", None)
            for mark, code in (getattr(grid, "marks", None) or {}).items():
                k["marks"].setdefault(normalise(mark), code)
    return {key: Knowledge(k["spec"], {c: frozenset(h) for c, h in k["headers"].items()}, k["values"],
                           k["marks"], k["cadence"]) for key, k in merged.items()}


def project_knowledge() -> dict[str, Knowledge]:
    """What the project knows: every packaged city file (the catalogue alone before there were any)."""
    try:
        from toda_platform.city import load_city, packaged_cities
    except ImportError:  # pragma: no cover - before city files
        from toda_platform.catalogue import CATALOGUE

        return knowledge([CATALOGUE])
    return knowledge([load_city(name).specs for name in packaged_cities()])


# ---------------------------------------------------------------------------------------------
# Reading the file


def read_export(data: bytes, name: str = "export.csv", sample: int = SAMPLE_ROWS) -> Export:
    text, encoding = parsing.decode_bytes(data)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    blank_tail = 0
    while lines and not lines[-1].strip(",\t "):
        lines.pop()
        blank_tail += 1
    first = lines[0] if lines else ""
    delimiter = "\t" if first.count("\t") > first.count(",") else ","
    records = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter))
    headers = [h.strip() for h in records[0]] if records else []
    body = [r for r in records[1:] if any(c.strip() for c in r)]
    total = bool(body) and any("合計" in normalise(c) for c in body[-1][:3])
    if total:
        body = body[:-1]
    rows = body[:sample] + (body[-sample // 10:] if len(body) > sample else [])
    # numbers typed with full-width digits (an address's full-width block numbers do not count)
    fullwidth = any(re.fullmatch("[0-9０-９.．]*[０-９][0-9０-９.．]*", c.strip()) for r in rows for c in r)
    return Export(name, encoding, delimiter, headers, rows, total, blank_tail, fullwidth)


def column_shape(values: Iterable[str | None]) -> Shape:
    """The shape of a column's non-blank values (NFKC-normalised)."""
    seen = [unicodedata.normalize("NFKC", v).strip() for v in values if v is not None]
    seen = [v for v in seen if v]
    if not seen:
        return Shape("blank", ())
    distinct = set(seen)
    for name, pattern, kinds, style in _PATTERNS:
        if all(pattern.fullmatch(v) for v in distinct):
            if kinds == ("date",) and style == "wareki_letter" and any(
                    re.search(r"\.0[0-9]", v) for v in distinct):
                continue  # zero-padded: the padded style matched first unless widths vary
            return Shape(name, kinds, style, len(distinct))
    if all(v.isdigit() for v in distinct):
        widths = {len(v) for v in distinct}
        numbers = sorted(int(v) for v in distinct)
        if len(widths) == 1 and widths.pop() >= 6:
            width = len(next(iter(distinct)))
            return Shape(f"{width} digits", ("pupil_number", "resident_number", "str"), None, len(distinct))
        if all(2000 <= n <= 2100 for n in numbers):
            return Shape("4-digit year", ("school_year", "int"), "iso", len(distinct))
        digits = f"whole number, {min(map(len, distinct))}-{max(map(len, distinct))} digits"
        if all(1 <= n <= 9 for n in numbers):  # a grade 1-6 within the school, or 1-9 city-wide
            style = "bare_within_school" if numbers[-1] <= 6 else "citywide"
            return Shape("whole number, 1 digit", ("int", "grade", "category"), style, len(distinct))
        return Shape(digits, ("int", "category"), None, len(distinct))
    lengths = sorted(len(v) for v in distinct)
    if all(_KANA.fullmatch(v) for v in distinct):
        return Shape(f"kana, {lengths[0]}-{lengths[-1]} characters", ("str",), None, len(distinct))
    if len(distinct) <= 30 and lengths[-1] <= 40 and len(seen) >= 2 * len(distinct):
        return Shape(f"{len(distinct)} distinct short values", ("category", "bool", "multi", "str"), None,
                     len(distinct))
    return Shape(f"text, {lengths[0]}-{lengths[-1]} characters", ("str", "category", "multi"), None, len(distinct))


# ---------------------------------------------------------------------------------------------
# Matching a source


def _grid_columns(headers: list[str]) -> tuple[dict[int, int], str | None]:
    """Day columns (1..31 or 1日..31日) by position, and their header pattern; empty when not a grid."""
    days, suffixes = {}, set()
    for i, h in enumerate(headers):
        m = DAY_COLUMN.fullmatch(normalise(h))
        if m and 1 <= int(m["day"]) <= 31:
            days[i] = int(m["day"])
            suffixes.add(m["suffix"])
    if len(set(days.values())) < 28 or len(suffixes) != 1:
        return {}, None
    return days, "{day}" + suffixes.pop()


def _personal(col: Column | None) -> bool:
    """A column whose values are never shown: personal by the catalogue, or unknown."""
    return col is None or col.personal or col.kind == "str"


def _match(k: Knowledge, export: Export, shapes: list[Shape], raws: list[set[str]], skip: set[int],
           made: set[str]) -> tuple[list[Mapped], float, list[str]]:
    """Map the file's headers to one source's columns: by known header first, then by shape when
    exactly one still-unmapped column of a fitting kind is left. Returns the mapping, a score and
    the required columns missing."""
    cols = {c.name: c for c in k.spec.columns}
    by_header: dict[int, str] = {}
    taken = set(made)
    for i, h in enumerate(export.headers):
        if i in skip:
            continue
        hit = next((c for c in cols if c not in taken and normalise(h) in k.headers.get(c, ())), None)
        if hit:
            by_header[i] = hit
            taken.add(hit)
    by_shape: dict[int, str] = {}
    for i, h in enumerate(export.headers):
        if i in skip or i in by_header or not normalise(h):
            continue
        fits = [c for c in cols.values() if c.name not in taken and c.kind in shapes[i].kinds
                and (c.kind not in CODE_KINDS or _values_fit(k, c.name, raws[i]))]
        if len(fits) == 1:
            by_shape[i] = fits[0].name
            taken.add(fits[0].name)
    mapped = []
    for i, h in enumerate(export.headers):
        if i in skip:
            continue
        name = by_header.get(i) or by_shape.get(i)
        col = cols.get(name) if name else None
        values = {}
        if col is not None and col.kind in CODE_KINDS and _personal(col):
            # hand-typed codes (a sub-reason) may name a child: the file's values are not shown;
            # the draft offers the map the project already knows
            values = {raw: code for raw, code in k.values.get(col.name, {}).items()}
        elif col is not None and col.kind in CODE_KINDS:
            known = k.values.get(col.name, {})
            values = {v: known.get(normalise(v)) for v in sorted(_split(raws[i], col.kind == "multi"))}
        mapped.append(Mapped(h, name, "header" if i in by_header else "shape" if i in by_shape else "",
                             shapes[i], _personal(col), values))
    required = [c.name for c in k.spec.columns if c.required]
    missing = [c for c in required if c not in taken]
    found = sum(1.0 if c in by_header.values() or c in made else 0.5 for c in required if c in taken)
    extra = sum(1 for m in mapped if m.column is None and normalise(m.header))
    score = found / max(1, len(required)) - 0.05 * extra
    return mapped, round(score, 3), missing


def _raw_values(export: Export, i: int) -> set[str]:
    """The distinct raw values of column ``i``."""
    return {r[i].strip() for r in export.rows if i < len(r) and r[i].strip()}


def _split(raw: set[str], multi: bool) -> set[str]:
    """A multi column's cells split at 、 and ／ into the codes they hold."""
    return {part for v in raw for part in re.split("[、／/]", v) if part} if multi else raw


def _values_fit(k: Knowledge, column: str, raw: set[str]) -> bool:
    """Most of a code column's raw values are ones the project knows for this column."""
    if len(raw) > MAX_CODES:
        return False  # names, notes, numbers: not a code column
    known = k.values.get(column, {})
    raw = {normalise(v) for v in _split(raw, k.spec.column(column).kind == "multi")}
    return bool(raw) and sum(v in known for v in raw) >= 0.8 * len(raw)


def _grid_sources(know: Mapping[str, Knowledge]) -> list[str]:
    return [key for key, k in know.items()
            if any(c.kind == "date" for c in k.spec.columns) and any(c.name == "status" for c in k.spec.columns)]


def profile_export(data: bytes, name: str = "export.csv", source: str | None = None,
                   know: Mapping[str, Knowledge] | None = None) -> Proposal:
    """Propose the source of one export file, its header mapping and its export style."""
    know = know if know is not None else project_knowledge()
    if source is not None and source not in know:
        raise KeyError(f"unknown source {source!r}; known: {', '.join(know)}")
    export = read_export(data, name)
    n = len(export.headers)
    shapes = [column_shape(r[i] if i < len(r) else None for r in export.rows) for i in range(n)]
    raws = [_raw_values(export, i) for i in range(n)]
    days, day_header = _grid_columns(export.headers)
    grid = None
    skip = set(days)
    made: set[str] = set()
    if days:
        month_at = next((i for i in range(n) if i not in skip and "month" in shapes[i].kinds), None)
        if month_at is not None:
            skip.add(month_at)
        grid = {"month": export.headers[month_at] if month_at is not None else None, "day_header": day_header,
                "month_style": shapes[month_at].style if month_at is not None else None, "marks": {}}
        made = {"date", "status"}
    results = []
    for key in ([source] if source else (_grid_sources(know) if days else list(know))):
        mapped, score, missing = _match(know[key], export, shapes, raws, skip, made)
        results.append((score, key, mapped, missing))
    results.sort(key=lambda r: (-r[0], r[1]))
    score, key, mapped, missing = results[0]
    k = know[key]
    if grid is not None:
        marks = {m for i in days for m in raws[i]}
        known = {**{normalise(m): c for m, c in k.values.get("status", {}).items()}, **k.marks}
        grid["marks"] = {m: known.get(normalise(m)) for m in sorted(marks)}
    styles = [(m.shape.style, m.column) for m in mapped if m.column and m.shape.style]
    cols = {c.name: c for c in k.spec.columns}
    date_format = next((s for s, c in styles if cols[c].kind in ("date", "timestamp_date", "month")), None)
    date_format = date_format or next((s for s, c in styles if cols[c].kind == "school_year"), None)
    if grid and not date_format:
        date_format = grid["month_style"]
    grade_format = next((s for s, c in styles if cols[c].kind == "grade"), None)
    file_name, cadence = _file_pattern(Path(name).name, k.cadence)
    return Proposal(key, score, export, mapped, missing, [(key_, s) for s, key_, *_ in results[:5]],
                    "monthly_grid" if grid else "long", grid, date_format, grade_format, file_name, cadence)


_PERIODS = (  # how a file name carries its period, and the cadence that implies
    (re.compile(r"(?<![0-9])[0-9]{4}-[0-9]{2}(?![0-9])"), "monthly"),
    (re.compile(r"(?<![0-9])[0-9]{6}(?![0-9])"), "monthly"),
    (re.compile(r"(?<![0-9])[0-9]{4}-[0-9](?![0-9])"), "round"),
    (re.compile(r"(?<![0-9])[0-9]{4}(?![0-9])"), "school_year"),
    (re.compile(r"(?:令和|R)[0-9]{1,2}(?:年度)?"), "school_year"),
)


def _file_pattern(name: str, cadence: str) -> tuple[str, str]:
    """The file name with its period replaced by {period}, and the cadence the period suggests
    (the source's usual cadence when the name carries no period)."""
    stem = re.sub(r"(_訂正| \([0-9]+\))(?=\.[^.]+$)", "", name)
    for pattern, guess in _PERIODS:
        m = pattern.search(stem)
        if m:
            return stem[:m.start()] + "{period}" + stem[m.end():], guess
    return stem, cadence


# ---------------------------------------------------------------------------------------------
# Saying it


def _toml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return _toml_str(str(v))


def draft_section(p: Proposal) -> str:
    """A city-file section for a person to confirm: every guess marked, every gap said."""
    e = p.export
    lines = [f"# Draft from `toda sources profile {e.name}`: confirm every line, then add it to the city file.",
             f"# Proposed source: {p.source} (score {p.score:.2f}"
             + (f"; next: {', '.join(f'{k} {s:.2f}' for k, s in p.candidates[1:3])}" if len(p.candidates) > 1 else "")
             + ")",
             f"[sources.{p.source}]",
             f"encoding = {_toml_str(e.encoding)}" if e.encoding in CITY_ENCODINGS else
             f"encoding = \"utf-8\"  # the file is {e.encoding}: readers detect it, but a city file names one of "
             f"{', '.join(CITY_ENCODINGS)} — CONFIRM",
             f"file_cadence = {_toml_str(p.file_cadence or 'once')}",
             f"file_name = {_toml_str(p.file_name)}"]
    if p.date_format:
        lines.append(f"date_format = {_toml_str(p.date_format)}")
    if p.grade_format:
        lines.append(f"grade_format = {_toml_str(p.grade_format)}")
    lines += [f"total_row = {_toml_value(e.total_row)}", f"trailing_blank_lines = {e.trailing_blank_lines}",
              f"fullwidth_digits = {_toml_value(e.fullwidth_digits)}", f"layout = {_toml_str(p.layout)}",
              "", f"[sources.{p.source}.headers]"]
    for m in p.columns:
        if m.column:
            note = "known header" if m.how == "header" else f"by shape ({m.shape.name}): CONFIRM"
            lines.append(f"{m.column} = [{_toml_str(m.header)}]  # {note}")
    for c in p.missing:
        lines.append(f"# {c} = [?]  # required: no column of the file maps to it")
    for m in p.columns:
        if m.column and m.values:
            lines += ["", f"[sources.{p.source}.values.{m.column}]"]
            for raw, code in m.values.items():
                lines.append(f"{_toml_str(raw)} = {_toml_value(code)}" if code is not None
                             else f"# {_toml_str(raw)} = ?  # not a value the project knows: give its code")
    if p.grid:
        lines += ["", f"[sources.{p.source}.grid]",
                  f"month = [{_toml_str(p.grid['month'])}]" if p.grid["month"] else "# month = [?]  # no month column found",
                  f"day_header = {_toml_str(p.grid['day_header'])}", "",
                  f"[sources.{p.source}.grid.marks]"]
        for mark, code in p.grid["marks"].items():
            lines.append(f"{_toml_str(mark)} = {_toml_str(code)}" if code
                         else f"# {_toml_str(mark)} = ?  # not a mark the project knows: give its status code")
    lines += [""] + [f"# {line}" for line in report_lines(p, header=False)]
    return "\n".join(lines) + "\n"


def report_lines(p: Proposal, header: bool = True) -> list[str]:
    """The proposal in words: what maps, how sure, and what could not be mapped (shapes only)."""
    e = p.export
    out = []
    if header:
        out += [f"{e.name}: {e.encoding}, {'tab' if e.delimiter == chr(9) else 'comma'}-separated, "
                f"{len(e.headers)} columns, {len(e.rows)} rows profiled"
                + (", a 合計 row" if e.total_row else "")
                + (f", {e.trailing_blank_lines} trailing blank line(s)" if e.trailing_blank_lines else ""),
                f"proposed source: {p.source} (score {p.score:.2f})"
                + ("; others: " + ", ".join(f"{k} {s:.2f}" for k, s in p.candidates[1:4]) if len(p.candidates) > 1 else "")]
        if p.layout == "monthly_grid" and p.grid:
            out.append(f"layout: monthly grid (day columns {p.grid['day_header']}, month column "
                       f"{p.grid['month'] or 'NOT FOUND'})")
        for m in p.columns:
            if m.column:
                how = "known header" if m.how == "header" else "by shape, to confirm"
                out.append(f"  {m.header} -> {m.column} ({how}; {m.shape.name})")
    unmapped = [m for m in p.unmapped if normalise(m.header)]
    for m in unmapped:
        out.append(f"could not map column '{m.header}' ({m.shape.name}): it will not be read unless the "
                   f"city file names it")
    for c in p.missing:
        out.append(f"could not find the required column '{c}' of {p.source}")
    for m in p.columns:
        for raw, code in m.values.items():
            if code is None:
                out.append(f"could not map the value '{raw}' of {m.column}: give its code")
    for mark, code in ((p.grid or {}).get("marks") or {}).items():
        if code is None:
            out.append(f"could not map the grid mark '{mark}': give its status code")
    if not unmapped and not p.missing and all(c is not None for m in p.columns for c in m.values.values()):
        out.append("every column mapped")
    return out
