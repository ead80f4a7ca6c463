"""The source catalogue: what each dataset a department exports *means*.

A spec is the contract between three parties: the synthetic city (which writes files the way
the department does), the ingestion factory (which reads them into ``staging.<key>``) and the
quality suites (which check them). Adding a source means adding a spec here, not code.

The catalogue holds the meaning, the same in every city: each column's canonical English name,
its kind, its allowed codes or range, and — for personal identifiers — what happens to it on the
way in:

* ``pseudonymise``: the number is replaced by a keyed HMAC (see ``pseudonym.py``);
* ``drop``: never read into the warehouse (addresses, free text);
* ``identity``: never read into the warehouse either; the registry's names, kana and seat numbers
  go to the identity store (``identity.py``), the one place the portal re-attaches them;
* ``birth_month``: a birth date is cut to its year and month.

How one city's departments write a source — the Japanese headers (the first is the one the
system writes), raw value → code maps, encoding, date and grade styles, file names, layout — is
that city's file (``toda_platform/cities/<city>.toml``); ``toda_platform.city.City.spec(key)``
gives the spec with both. Code that reads or writes files takes the spec from a City.

Every spec also states its **knowledge-date rule** as a DuckDB expression over the staged
columns: the first date on which the city could have known the record. Features at an as-of
date use only records whose ``known_date`` is strictly before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, Mapping

Kind = Literal[
    "str",  # free text, width-normalised
    "int",
    "float",
    "date",  # any date form the city writes: ISO, slashes, 和暦 (see parsing.parse_date)
    "timestamp_date",  # a form timestamp "2024/4/8 8:12:33": the date part
    "time",  # HH:MM
    "month",  # a year-month: 2024-05, 2024年5月, R6.5 → first day of the month
    "school_year",  # 年度: 2024, R6, 令和6年度 → 2024
    "grade",  # 小3, 中1, 3年, 3 … → city-wide school year 1-9 (see parsing.parse_grade)
    "category",  # raw value → canonical code through ``values``
    "multi",  # several categories in one cell, separated by 、 or ／
    "bool",  # raw value → True/False through ``values``
    "school_code",  # MEXT 13-character 学校コード
    "pupil_number",  # 学籍番号: the school system's pupil number
    "resident_number",  # 宛名番号: the resident-register number welfare departments key on
    "pseudonym",  # a pupil_id already pseudonymised (16 hex), from the platform's own portal
]
Pii = Literal["pseudonymise", "drop", "identity", "birth_month"]
# What a file replaces when it lands (see ingest.py, "Corrected re-exports"):
# * "coverage": official records. A file replaces exactly the (period, school) cells its rows
#   cover; an older export for a cell a newer one already filled is held for a person.
# * "rows": forms (Google Forms, surveys). Each row stands alone: the latest of duplicate
#   submissions wins, a row replaces the stored row with the same key, rows of pupils unknown to
#   the registry are set aside one by one with reasons, and the rest applies.
Handling = Literal["coverage", "rows"]

SCHOOL_TYPES = {"B": "elementary", "C": "junior_high"}


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    description: str = ""
    required: bool = True  # the header must be in the file
    nullable: bool = False  # a blank cell is allowed
    codes: tuple | None = None  # a category / multi column's canonical codes
    min: float | None = None
    max: float | None = None
    unit: str | None = None
    pii: Pii | None = None
    # A category filled in by hand (a sub-reason typed by a teacher): a value outside ``values``
    # is free text that may name a child, so it is counted and never stored, instead of
    # rejecting the file.
    unmapped: Literal["error", "count"] = "error"
    # a pupil number may arrive already pseudonymised (the portal's 仮名ID: it never holds a
    # 学籍番号); a file has either the number or the pseudonym, never both
    accepts_pseudonym: bool = False
    planned: bool = False  # a date set for the future (a review date): not an event, no export bound
    # How one city writes the column (its city file, see toda_platform/city.py); empty in the
    # catalogue, which says only what the column means.
    headers: tuple[str, ...] = ()  # the first is what the department's system writes
    values: Mapping[str, object] | None = None  # raw value -> code, for category / multi / bool
    pseudonym_headers: tuple[str, ...] = ()  # headers under which the pseudonym arrives

    @property
    def header(self) -> str:
        """The header as the department's system writes it."""
        if not self.headers:
            raise LookupError(f"{self.name}: the catalogue says what a column means, not its header; "
                              f"take the spec from the city (toda_platform.city.City.spec)")
        return self.headers[0]

    @property
    def personal(self) -> bool:
        """Values about one person (numbers, pseudonyms, birth dates, hand-typed text): never quoted
        in a message, a manifest, a reasons file or an event — line numbers and shapes instead."""
        return self.pii is not None or self.unmapped == "count" or self.kind in (
            "pupil_number", "resident_number", "pseudonym")

    @property
    def accepted_headers(self) -> tuple[str, ...]:
        return self.headers + self.pseudonym_headers

    @property
    def staged(self) -> bool:
        return self.pii not in ("drop", "identity")

    @property
    def staged_name(self) -> str:
        return "birth_month" if self.pii == "birth_month" else self.name

    @property
    def sql_type(self) -> str:
        if self.kind == "category" and self.codes and all(
            isinstance(v, int) and not isinstance(v, bool) for v in self.codes
        ):
            return "INTEGER"
        return _SQL_TYPES[self.kind]


_SQL_TYPES = {
    "str": "VARCHAR",
    "int": "INTEGER",
    "float": "DOUBLE",
    "date": "DATE",
    "timestamp_date": "DATE",
    "time": "VARCHAR",
    "month": "DATE",
    "school_year": "INTEGER",
    "grade": "TINYINT",
    "category": "VARCHAR",
    "multi": "VARCHAR",
    "bool": "BOOLEAN",
    "school_code": "VARCHAR",
    "pupil_number": "VARCHAR",
    "resident_number": "VARCHAR",
    "pseudonym": "VARCHAR",
}


@dataclass(frozen=True)
class ExportStyle:
    """How the department's system writes the file (the synthetic city imitates this); from the
    city file (toda_platform/city.py)."""

    encoding: Literal["cp932", "utf-8-sig", "utf-8"]
    file_cadence: Literal["monthly", "school_year", "round", "once"]
    file_name: str  # pattern with {period}
    date_format: Literal[
        "iso", "slash", "wareki_kanji", "wareki_letter", "wareki_letter_padded", "form_timestamp"
    ] = "iso"
    grade_format: Literal["kanji", "within_school", "bare_within_school", "citywide"] = "kanji"
    total_row: bool = False  # a 合計 row at the bottom
    trailing_blank_lines: int = 0
    fullwidth_digits: bool = False  # some numbers typed with full-width digits
    # "long": one row per record; "monthly_grid": one row per pupil and month, a column per day
    # (attendance from many 校務支援 systems, see toda_platform/layouts.py)
    layout: Literal["long", "monthly_grid"] = "long"
    grid: "MonthlyGrid | None" = None


@dataclass(frozen=True)
class MonthlyGrid:
    """A monthly grid's own columns: the month, the day columns and what each mark means."""

    month_headers: tuple[str, ...]  # the column holding the month (2024-05, 2024年5月, R6.5 …)
    day_header: str  # the day columns' header, with {day} for 1..31: "{day}日", "{day}"
    marks: Mapping[str, str]  # mark -> status code; a blank cell is no school day / not enrolled
    date_column: str = "date"  # the canonical columns the grid's cells become
    status_column: str = "status"

    def day_name(self, day: int) -> str:
        return self.day_header.format(day=day)


# Why a source may be used (purpose limitation, 個人情報の保護に関する法律 第61条・第69条). Every
# output asset declares one of these (toda_platform/governance.py); the definitions refuse to load
# when an asset reads, through its lineage, a source that does not list the asset's purpose.
PURPOSES: dict[str, str] = {
    "early_support": "不登校の早期発見と支援",
    "school_improvement": "学校改善（学校カルテ）",
    "support_evaluation": "支援の効果検証",
    "hardship_screening": "貧困・虐待の早期把握と支援",
}


@dataclass(frozen=True)
class Use:
    """What a source may serve, on what legal footing, and how long the platform keeps it.

    ``retention_years`` counts from each record's ``known_date``: ``toda retention`` drops the
    rows (and the archived files) older than that. ``personal`` is False for school-level
    figures that identify no one."""

    purposes: tuple[str, ...]
    legal_basis: str  # one sentence, in Japanese, for the notice and the register
    retention_years: int
    retention_ja: str  # the period in words, for families
    collected_from: str  # how it is collected (収集方法), in Japanese
    personal: bool = True
    sensitive: bool = False  # holds 要配慮個人情報 (health checkup results: 施行令第2条)

    def __post_init__(self):
        unknown = [p for p in self.purposes if p not in PURPOSES]
        if unknown or not self.purposes:
            raise ValueError(f"unknown or missing purposes {unknown}; known: {', '.join(PURPOSES)}")
        if self.retention_years < 1:
            raise ValueError("a retention period is at least one year")


ALL_PURPOSES = tuple(PURPOSES)
_BOARD = ("{board}が、学校教育に関する所掌事務（地方教育行政の組織及び運営に関する法律第21条）"
          "の遂行に必要な範囲で保有し（個人情報の保護に関する法律第61条第1項）、その利用目的の範囲内で"
          "利用します（同法第69条第1項）。")
_FROM_PUPILS = ("児童生徒本人から直接、書面（電磁的記録を含む）で取得するため、取得の際に利用目的を明示します"
                "（個人情報の保護に関する法律第62条）。")
_PREFECTURE = ("埼玉県教育委員会が実施し市に返却する調査結果を、市教育委員会が所掌事務の遂行に必要な範囲で"
               "保有し、その利用目的の範囲内で利用します（個人情報の保護に関する法律第61条第1項・第69条第1項）。")
_WELFARE = ("市長部局が母子保健法・子ども・子育て支援法に基づく事務のために保有する情報を、教育委員会の"
            "所掌事務の遂行に必要な限度で、相当の理由があるときに限り提供を受けて利用します（個人情報の"
            "保護に関する法律第69条第2項第3号。要件の確認と記録は市の個人情報保護担当が行います）。")
_SCHOOL_LEVEL = ("学校単位の集計値で、特定の個人を識別できないため個人情報には当たりません。10人未満の"
                 "集計は表示しません。")
_SIX_YEARS = "記録の日から6年（数年にわたる経過をたどり、支援とその検証に使うため）"


def _pupil_use(collected_from: str, *, basis: str = _BOARD, years: int = 6,
               retention_ja: str = _SIX_YEARS, sensitive: bool = False) -> Use:
    return Use(ALL_PURPOSES, basis, years, retention_ja, collected_from, sensitive=sensitive)


def _school_use(collected_from: str, purposes: tuple[str, ...] = ("school_improvement",),
                years: int = 10) -> Use:
    return Use(purposes, _SCHOOL_LEVEL, years, f"{years}年（学校の経年比較のため）", collected_from,
               personal=False)


@dataclass(frozen=True)
class SourceSpec:
    key: str
    title_ja: str
    holder: str
    grain: Literal["pupil", "school"]
    cadence: str
    description: str
    columns: tuple[Column, ...]
    key_columns: tuple[str, ...]
    known_from: str  # DuckDB expression over staged columns → DATE
    known_rule: str  # the same rule in words
    period: str  # DuckDB expression → the period a file covers (its "slot", see ingest.py)
    use: Use  # purposes, legal basis, retention (see Use)
    export: ExportStyle | None = None  # how a city writes it: from its city file (None here)
    constants: Mapping[str, object] = field(default_factory=dict)  # domain facts for checks
    handling: Handling = "coverage"
    # for "rows": the column whose raw text orders duplicate submissions (a form's timestamp);
    # without it the later line of the file wins
    submitted_at: str | None = None
    # every header the city writes for any source (set by toda_platform.city): a file holding
    # none of them has most likely lost its header line
    city_headers: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    # False: the city's file has no section for this source (the city does not export it). Its
    # staging table exists, empty, so everything downstream runs; a file landed for it is
    # quarantined with a message saying so (toda_platform/city.py, ingest.read_file)
    exported: bool = True

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.key} has no column {name!r}")

    @property
    def staged_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.staged)

    @property
    def event_date(self) -> str | None:
        """The column that dates each record of a monthly (daily-grain) file, if any."""
        if self.export is None:
            raise LookupError(f"{self.key}: the file cadence is the city's; take the spec from the city")
        if self.export.file_cadence != "monthly":
            return None
        for c in self.staged_columns:
            if c.kind in ("date", "timestamp_date"):
                return c.staged_name
        return None

    @property
    def dropped_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if not c.staged)


def school_year_of(date_sql: str) -> str:
    """DuckDB expression: the school year (April–March) that contains a date."""
    return f"(year({date_sql}) - CASE WHEN month({date_sql}) < 4 THEN 1 ELSE 0 END)"


# ---------------------------------------------------------------------------------------------
# Shared columns and value maps
# ---------------------------------------------------------------------------------------------

def _pupil() -> Column:
    return Column(
        "pupil_id", "pupil_number", pii="pseudonymise",
        description="学籍番号 from the 校務支援 system; kept across moves between city schools",
    )


def _school() -> Column:
    return Column("school_code", "school_code",
                  description="MEXT 学校コード (B… elementary, C… junior high)")


def _grade(nullable=False) -> Column:
    return Column("grade", "grade", nullable=nullable, min=1, max=9,
                  description="city-wide school year: 小1-小6 = 1-6, 中1-中3 = 7-9")


def _year() -> Column:
    return Column("school_year", "school_year", min=2000, max=2100,
                  description="school year (April-March) named by its starting calendar year")


def _likert(name, lo=1, hi=4, nullable=True, description="") -> Column:
    return Column(name, "int", min=lo, max=hi, nullable=nullable,
                  description=description or f"{lo}-{hi} rating")




def _round() -> Column:
    return Column("round", "category", codes=(1, 2, 3),
                  description="survey round within the school year")


# ---------------------------------------------------------------------------------------------
# Pupil-level sources
# ---------------------------------------------------------------------------------------------

PUPIL_REGISTRY = SourceSpec(
    key="pupil_registry",
    title_ja="児童生徒名簿（学齢簿）",
    holder="学務課",
    grain="pupil",
    cadence="one file per school year, re-exported as transfers happen",
    description="Who is enrolled where, in which grade, each school year; transfers in and out.",
    columns=(
        _year(),
        _pupil(),
        Column("resident_id", "resident_number", pii="pseudonymise",
               description="住民基本台帳 number: links the 学齢簿 to welfare records (infant "
                           "checkups, nursery); pseudonymised with the same key"),
        # names are optional: the warehouse never needs them, the portal's identity store does
        Column("name", "str", pii="identity", required=False, nullable=True),
        Column("kana", "str", pii="identity", required=False,
               nullable=True),
        Column("birth_date", "date", pii="birth_month",
               description="kept as the first day of the birth month (age in months is all "
                           "features need)"),
        Column("sex", "category", codes=("M", "F")),
        _school(),
        _grade(),
        Column("class_name", "str", description="class within the grade"),
        Column("seat_number", "int", pii="identity", required=False, nullable=True,
               description="not needed for analysis and a quasi-identifier: identity store only"),
        Column("address", "str", pii="drop", required=False, nullable=True),
        Column("enrolled_on", "date", nullable=True,
               description="date of transfer in during the year (blank: enrolled from April)"),
        Column("left_on", "date", nullable=True,
               description="date of transfer out during the year (blank: stayed)"),
    ),
    key_columns=("school_year", "pupil_id", "school_code"),
    known_from="coalesce(enrolled_on, make_date(school_year, 4, 1))",
    known_rule="the roll is known on April 1 of its year; a pupil who transfers in is known "
               "from the transfer date (a transfer-out date is only usable once it has passed)",
    period="CAST(school_year AS VARCHAR)",
    use=_pupil_use("学務課の学齢簿システムから年度ごとに出力"),
)



ATTENDANCE_DAILY = SourceSpec(
    key="attendance_daily",
    title_ja="出欠情報",
    holder="各学校（校務支援システム）",
    grain="pupil",
    cadence="daily records, one city-wide file per month",
    description="One row per pupil and school day: present, absent (sick / other reasons), "
                "suspended, mourning, late or early leave, with 保健室登校/別室登校 flags.",
    columns=(
        Column("date", "date"),
        _school(),
        _pupil(),
        Column("status", "category",
               codes=("present", "absent_sick", "absent_other", "suspended", "mourning", "late",
                      "early_leave"),
               description="欠席(事故) = absent for reasons other than illness"),
        Column("room", "category", nullable=True, required=False,
               codes=("nurse_room", "separate_room"),
               description="present, but in the nurse's room or a separate room"),
        Column("sub_reason", "category", nullable=True, required=False,
               codes=("fever", "cold", "clinic", "unwell", "headache", "stomach_ache", "influenza",
                      "infection", "family", "personal", "reluctant", "funeral"), unmapped="count",
               description="optional sub-reason, typed by the teacher: only the catalogue's codes "
                           "are kept; other text (a note that may name a child) is counted, not stored"),
    ),
    key_columns=("pupil_id", "date"),
    known_from="date",
    known_rule="a day's attendance is known that evening",
    period="strftime(date, '%Y-%m')",
    use=_pupil_use("各学校の校務支援システムから月ごとに出力"),
)

LONG_ABSENCE_SURVEY = SourceSpec(
    key="long_absence_survey",
    title_ja="長期欠席調査（児童生徒の問題行動・不登校等生徒指導上の諸課題に関する調査）",
    holder="学務課",
    grain="pupil",
    cadence="annual, compiled after the school year ends",
    description="Pupils absent 30+ days in the year, with days by reason and the main reason "
                "they are counted under. The 不登校 label comes from here.",
    columns=(
        _year(),
        _school(),
        _pupil(),
        _grade(),
        Column("absent_days", "int", min=30, max=250, unit="days"),
        Column("days_illness", "int", min=0, max=250, unit="days"),
        Column("days_economic", "int", min=0, max=250, unit="days"),
        Column("days_futoukou", "int", min=0, max=250, unit="days"),
        Column("days_covid", "int", min=0, max=250,
               unit="days", nullable=True, required=False, description="counted from 2020"),
        Column("days_other", "int", min=0, max=250, unit="days"),
        Column("main_reason", "category",
               codes=("illness", "economic", "futoukou", "covid", "other"),
               description="the reason the pupil is counted under (MEXT): the label is "
                           "main_reason = 'futoukou'"),
    ),
    key_columns=("school_year", "pupil_id", "school_code"),
    known_from="make_date(school_year + 1, 5, 1)",
    known_rule="the survey of year Y is compiled in April of Y+1: known from May 1 of Y+1",
    period="CAST(school_year AS VARCHAR)",
    use=_pupil_use("文部科学省の調査のため学校が作成する報告から年度ごとに出力"),
)


BULLYING_RECORDS = SourceSpec(
    key="bullying_records",
    title_ja="いじめに関する記録",
    holder="学務課・各学校",
    grain="pupil",
    cadence="incidents as recognised, one file per school year",
    description="One row per pupil involved in a recognised incident, with role, forms, how "
                "it was found and whether it is resolved.",
    columns=(
        Column("incident_id", "str"),
        Column("recognised_on", "date"),
        _school(),
        _pupil(),
        _grade(),
        Column("role", "category", codes=("victim", "perpetrator")),
        Column("forms", "multi",
               codes=("teasing", "exclusion", "light_violence", "violence", "extortion", "property",
                      "coerced", "online"),
               description="several forms, separated by ／"),
        Column("found_by", "category",
               codes=("survey", "self_report", "teacher", "parent", "peer", "other")),
        Column("resolved", "category",
               codes=("resolved", "ongoing")),
        Column("notes", "str", pii="drop", required=False, nullable=True,
               description="free text may name children: never read"),
    ),
    key_columns=("incident_id", "pupil_id"),
    known_from="recognised_on + INTERVAL 14 DAY",
    known_rule="recognised incidents reach the board with the school's report, within two weeks",
    period=school_year_of("recognised_on"),
    use=_pupil_use("学校がいじめを認知した際の報告から年度ごとに出力"),
)

COUNSELING_RECORDS = SourceSpec(
    key="counseling_records",
    title_ja="教育相談記録",
    holder="教育相談担当",
    grain="pupil",
    cadence="sessions as held, one file per school year",
    description="One row per counselling session with a pupil or about a pupil.",
    columns=(
        Column("session_id", "str"),
        Column("session_date", "date"),
        _school(),
        _pupil(),
        Column("counsellor", "category",
               codes=("school_counsellor", "social_worker", "education_counsellor")),
        Column("topic", "category",
               codes=("non_attendance", "friends", "family", "study", "health", "bullying",
                      "career", "other")),
        Column("referred_by", "category",
               codes=("self", "parent", "teacher", "nurse", "agency")),
        Column("linked_agency", "bool"),
        Column("notes", "str", pii="drop", required=False, nullable=True),
    ),
    key_columns=("session_id",),
    known_from="session_date",
    known_rule="a session is recorded the day it is held",
    period=school_year_of("session_date"),
    use=_pupil_use("教育相談（SC・SSW・教育相談員）の記録から年度ごとに出力（相談内容の記述は取り込みません）"),
)

SCHOOL_LIFE_SURVEY = SourceSpec(
    key="school_life_survey",
    title_ja="学校生活に係るアンケート",
    holder="各学校",
    grain="pupil",
    cadence="2-3 rounds a year",
    description="Short Likert survey (1 = no … 4 = yes) about friends, teachers, study and "
                "feeling safe at school.",
    columns=(
        Column("survey_date", "date"),
        _school(),
        _pupil(),
        _grade(),
        _round(),
        _likert("q_friends"),
        _likert("q_teacher"),
        _likert("q_study"),
        _likert("q_safe"),
        _likert("q_enjoy"),
    ),
    key_columns=("pupil_id", "survey_date"),
    known_from="survey_date + INTERVAL 14 DAY",
    known_rule="answers are tallied and returned two weeks after the survey day",
    period=f"CAST({school_year_of('survey_date')} AS VARCHAR) || '-' || CAST(round AS VARCHAR)",
    use=_pupil_use("学校で実施するアンケート（児童生徒本人が回答）", basis=_BOARD + _FROM_PUPILS),
    handling="rows",
)

HEALTH_CHECKUP = SourceSpec(
    key="health_checkup",
    title_ja="学校健診",
    holder="各学校（養護教諭）",
    grain="pupil",
    cadence="annual, April-June",
    description="Height, weight and 肥満度, vision bands and dental status from the school "
                "health check.",
    columns=(
        Column("checkup_date", "date"),
        _school(),
        _pupil(),
        _grade(),
        Column("sex", "category", codes=("M", "F")),
        Column("height_cm", "float", min=90, max=200, unit="cm"),
        Column("weight_kg", "float", min=8, max=150, unit="kg"),
        Column("obesity_index", "float", min=-60, max=150, unit="%",
               description="(実測 − 標準体重)/標準体重 × 100"),
        Column("vision_right", "category", nullable=True,
               codes=("A", "B", "C", "D")),
        Column("vision_left", "category", nullable=True,
               codes=("A", "B", "C", "D")),
        Column("caries", "category",
               codes=("none", "treated", "untreated")),
        Column("dmf", "int", min=0, max=28, nullable=True),
    ),
    key_columns=("pupil_id", "checkup_date"),
    known_from="checkup_date + INTERVAL 7 DAY",
    known_rule="results are entered within a week of the checkup",
    period=school_year_of("checkup_date"),
    use=_pupil_use("学校保健安全法に基づく健康診断の結果を養護教諭が入力", sensitive=True),
    # 標準体重 = a × 身長(cm) − b (文部科学省, 2006 〜), by sex and age in years.
    constants={"standard_weight": {
        "M": {5: (0.386, 23.699), 6: (0.461, 32.382), 7: (0.513, 38.878), 8: (0.592, 48.804),
              9: (0.687, 61.390), 10: (0.752, 70.461), 11: (0.782, 75.106), 12: (0.783, 75.642),
              13: (0.815, 81.348), 14: (0.832, 83.695), 15: (0.766, 70.989)},
        "F": {5: (0.377, 22.750), 6: (0.458, 32.079), 7: (0.508, 38.367), 8: (0.561, 45.006),
              9: (0.652, 56.992), 10: (0.730, 68.091), 11: (0.803, 78.846), 12: (0.796, 76.934),
              13: (0.655, 54.234), 14: (0.594, 43.264), 15: (0.560, 37.002)},
    }},
)

PREFECTURAL_ACHIEVEMENT = SourceSpec(
    key="prefectural_achievement",
    title_ja="埼玉県学力・学習状況調査（学力）",
    holder="県教育委員会",
    grain="pupil",
    cadence="annual (April), 小4-中3; a panel that follows each pupil",
    description="IRT-based 学力レベル (1-12) and scale score per subject.",
    columns=(
        _year(),
        Column("survey_date", "date"),
        _school(),
        _pupil(),
        _grade(),
        Column("subject", "category",
               codes=("japanese", "math", "english", "science", "social_studies")),
        Column("level", "int", min=1, max=12),
        Column("scale_score", "float", min=0, max=1000),
    ),
    key_columns=("school_year", "pupil_id", "subject"),
    known_from="make_date(school_year, 7, 15)",
    known_rule="the prefecture returns April's results to schools in mid-July",
    period="CAST(school_year AS VARCHAR)",
    use=_pupil_use("埼玉県学力・学習状況調査の結果（県から返却）", basis=_PREFECTURE),
)

PREFECTURAL_QUESTIONNAIRE = SourceSpec(
    key="prefectural_questionnaire",
    title_ja="埼玉県学力・学習状況調査（質問紙）",
    holder="県教育委員会",
    grain="pupil",
    cadence="annual (April), 小4-中3",
    description="Non-cognitive scales from the ~100-item questionnaire (means of 4-point "
                "items).",
    columns=(
        _year(),
        _school(),
        _pupil(),
        _grade(),
        Column("self_esteem", "float", min=1, max=4),
        Column("self_efficacy", "float", min=1, max=4),
        Column("self_control", "float", min=1, max=4),
        Column("diligence", "float", min=1, max=4),
        Column("learning_strategies", "float", min=1, max=4),
    ),
    key_columns=("school_year", "pupil_id"),
    known_from="make_date(school_year, 7, 15)",
    known_rule="returned with the achievement results in mid-July",
    period="CAST(school_year AS VARCHAR)",
    use=_pupil_use("埼玉県学力・学習状況調査の質問紙（県から返却）", basis=_PREFECTURE),
)

NURSE_OFFICE_VISITS = SourceSpec(
    key="nurse_office_visits",
    title_ja="保健室利用状況",
    holder="各学校（養護教諭）",
    grain="pupil",
    cadence="visits as they happen, one file per month",
    description="Each visit to the nurse's office: time, symptom, temperature, rest and "
                "whether the pupil went home.",
    columns=(
        Column("visit_date", "date"),
        Column("visit_time", "time"),
        _school(),
        _pupil(),
        _grade(),
        Column("symptom", "category",
               codes=("headache", "stomach_ache", "unwell", "injury", "fever", "other")),
        Column("temperature", "float", min=34, max=42, unit="°C", nullable=True),
        Column("rest_minutes", "int", min=0, max=60, unit="min"),
        Column("went_home", "bool"),
    ),
    key_columns=("pupil_id", "visit_date", "visit_time"),
    known_from="visit_date",
    known_rule="a visit is logged the day it happens",
    period="strftime(visit_date, '%Y-%m')",
    use=_pupil_use("養護教諭が記録する保健室来室記録から月ごとに出力"),
)

AIGROW = SourceSpec(
    key="aigrow",
    title_ja="AiGROW 受験結果（Lite）",
    holder="各学校",
    grain="pupil",
    cadence="1-2 rounds a year, 中学校",
    description="Non-cognitive competencies, self- and peer-rated, as deviation scores.",
    columns=(
        Column("test_date", "date"),
        _school(),
        _pupil(),
        _grade(),
        Column("collaboration", "float", min=0, max=100),
        Column("problem_setting", "float", min=0, max=100),
        Column("creativity", "float", min=0, max=100),
        Column("flexibility", "float", min=0, max=100),
        Column("empathy", "float", min=0, max=100),
        Column("self_management", "float", min=0, max=100),
        Column("psychological_safety", "float", min=0, max=100),
        Column("self_affirmation", "float", min=0, max=100),
    ),
    key_columns=("pupil_id", "test_date"),
    known_from="test_date + INTERVAL 30 DAY",
    known_rule="the vendor returns results a month after the test",
    period=school_year_of("test_date"),
    use=_pupil_use("学校で実施する受験結果（事業者から返却）"),
)


QU_SURVEY = SourceSpec(
    key="qu_survey",
    title_ja="Q-U（楽しい学校生活を送るためのアンケート）",
    holder="各学校",
    grain="pupil",
    cadence="two rounds a year (June, November)",
    description="承認得点 and 被侵害得点 (sums of 10 five-point items), the resulting group, "
                "and 学校生活意欲 areas.",
    columns=(
        Column("survey_date", "date"),
        _school(),
        _pupil(),
        _grade(),
        Column("class_name", "str"),
        _round(),
        Column("approval", "int", min=10, max=50),
        Column("infringement", "int", min=10, max=50),
        Column("group", "category",
               codes=("satisfied", "unrecognised", "infringed", "dissatisfied", "needs_support"),
               description="要支援群 is the most severe part of 学級生活不満足群"),
        Column("motivation_friends", "int", min=3, max=12),
        Column("motivation_study", "int", min=3, max=12),
        Column("motivation_teacher", "int", min=3, max=12),
        Column("motivation_class", "int", min=3, max=12),
        Column("motivation_career", "int", min=3, max=12, nullable=True,
               required=False, description="junior high only"),
    ),
    key_columns=("pupil_id", "survey_date"),
    known_from="survey_date + INTERVAL 21 DAY",
    known_rule="the publisher scores the sheets and returns results three weeks later",
    period=f"CAST({school_year_of('survey_date')} AS VARCHAR) || '-' || CAST(round AS VARCHAR)",
    use=_pupil_use("学校で実施するアンケート（児童生徒本人が回答、発行元が採点）", basis=_BOARD + _FROM_PUPILS),
    # The group follows from the two scores against the publisher's norms (our synthetic norms).
    constants={"approval_high_from": 36, "infringement_high_from": 21,
               "needs_support": {"approval_at_most": 22, "infringement_at_least": 33}},
)

CLASS_UNDERSTANDING_SURVEY = SourceSpec(
    key="class_understanding_survey",
    title_ja="授業がわかる調査",
    holder="各学校",
    grain="pupil",
    cadence="two rounds a year",
    description="'I understand the lessons' (1-4) per subject.",
    columns=(
        Column("survey_date", "date"),
        _school(),
        _pupil(),
        _grade(),
        _round(),
        Column("subject", "category",
               codes=("japanese", "math", "english", "science", "social_studies")),
        Column("understanding", "int", min=1, max=4),
    ),
    key_columns=("pupil_id", "survey_date", "subject"),
    known_from="survey_date + INTERVAL 7 DAY",
    known_rule="tallied within a week",
    period=f"CAST({school_year_of('survey_date')} AS VARCHAR) || '-' || CAST(round AS VARCHAR)",
    use=_pupil_use("学校で実施するアンケート（児童生徒本人が回答）", basis=_BOARD + _FROM_PUPILS),
    handling="rows",
)

RST = SourceSpec(
    key="rst",
    title_ja="RST（リーディングスキルテスト）受検結果",
    holder="各学校",
    grain="pupil",
    cadence="one round a year, 小6-中3",
    description="Reading-skill 能力値 per field.",
    columns=(
        Column("test_date", "date"),
        _school(),
        _pupil(),
        _grade(),
        Column("dependency", "float", min=-4, max=4),
        Column("anaphora", "float", min=-4, max=4),
        Column("paraphrase", "float", min=-4, max=4),
        Column("inference", "float", min=-4, max=4),
        Column("image_matching", "float", min=-4, max=4),
        Column("instantiation", "float", min=-4, max=4),
    ),
    key_columns=("pupil_id", "test_date"),
    known_from="test_date + INTERVAL 30 DAY",
    known_rule="results are returned a month after the test",
    period=school_year_of("test_date"),
    use=_pupil_use("学校で実施する受検結果（実施団体から返却）"),
)

MOOD_CHECKIN = SourceSpec(
    key="mood_checkin",
    title_ja="シャボテン（心と体の健康観察）",
    holder="児童生徒（Google Forms）",
    grain="pupil",
    cadence="daily, from FY2023; one file per month",
    description="Pupils' own daily check-in: mood, body, sleep and a 'want to talk' button. "
                "Three bad days in a row is the vendor's alert rule.",
    columns=(
        Column("checkin_date", "timestamp_date"),
        _school(),
        _pupil(),
        Column("mood", "category",
               codes=(4, 3, 2, 1),
               description="4 = 晴れ … 1 = 雷"),
        Column("body", "category", codes=(3, 2, 1)),
        Column("sleep", "category",
               codes=(4, 3, 2, 1)),
        Column("want_to_talk", "bool"),
    ),
    key_columns=("pupil_id", "checkin_date"),
    known_from="checkin_date",
    known_rule="seen by the teacher the same morning",
    period="strftime(checkin_date, '%Y-%m')",
    use=_pupil_use("児童生徒本人が毎朝端末で回答（Google Forms）", basis=_BOARD + _FROM_PUPILS),
    handling="rows",
    submitted_at="checkin_date",
)

INFANT_CHECKUP = SourceSpec(
    key="infant_checkup",
    title_ja="乳幼児健康診査",
    holder="福祉保健センター",
    grain="pupil",
    cadence="4か月, 1歳6か月 and 3歳 checkups; one file per fiscal year",
    description="Whether each checkup was attended and its findings. Keyed by 宛名番号.",
    columns=(
        Column("resident_id", "resident_number", pii="pseudonymise"),
        Column("name", "str", pii="drop"),
        Column("birth_date", "date", pii="birth_month"),
        Column("checkup", "category",
               codes=("4m", "18m", "3y")),
        Column("checkup_date", "date", description="scheduled date"),
        Column("attended", "bool"),
        Column("development", "category",
               codes=("none", "observe", "refer", "treatment"), nullable=True),
        Column("language", "category", codes=("none", "observe", "refer", "treatment"), nullable=True),
        Column("sight_hearing", "category",
               codes=("none", "observe", "refer", "treatment"), nullable=True),
        Column("dental", "category", codes=("none", "observe", "refer", "treatment"), nullable=True),
        Column("referred", "bool", nullable=True),
    ),
    key_columns=("resident_id", "checkup"),
    known_from="checkup_date",
    known_rule="known on the day of the checkup",
    period=school_year_of("checkup_date"),
    use=_pupil_use("福祉保健センターの乳幼児健診記録から提供（宛名番号で照合）", basis=_WELFARE, years=16,
                   retention_ja="健診日から16年（中学校卒業まで）", sensitive=True),
)

NURSERY_ENROLLMENT = SourceSpec(
    key="nursery_enrollment",
    title_ja="保育園等入所情報",
    holder="保育幼稚園課",
    grain="pupil",
    cadence="enrolments before school age; one file per fiscal year of admission",
    description="Facility type, enrolment and leaving dates, and the admission priority index "
                "(基準指数 + 調整指数).",
    columns=(
        Column("resident_id", "resident_number", pii="pseudonymise"),
        Column("name", "str", pii="drop"),
        Column("birth_date", "date", pii="birth_month"),
        Column("facility_type", "category",
               codes=("licensed", "kodomoen", "unlicensed", "kindergarten")),
        Column("enrolled_on", "date"),
        Column("left_on", "date", nullable=True),
        Column("base_index", "int", min=0, max=100, nullable=True,
               description="blank for places without a priority ranking (幼稚園, 認可外)"),
        Column("adjustment_index", "int", min=-20, max=30),
    ),
    key_columns=("resident_id", "enrolled_on"),
    known_from="coalesce(left_on, enrolled_on)",
    known_rule="a stay is known once it has ended (or from enrolment while it lasts)",
    period=school_year_of("enrolled_on"),
    use=_pupil_use("保育幼稚園課の入所記録から提供（宛名番号で照合）", basis=_WELFARE, years=16,
                   retention_ja="退所の日（在園中は入所の日）から16年（中学校卒業まで）"),
)

SUPPORT_RECORDS = SourceSpec(
    key="support_records",
    title_ja="支援記録（ケース会議）",
    holder="教育政策室・各学校",
    grain="pupil",
    cadence="case-meeting decisions as they are made; one file per school year",
    description="Each support action decided for a pupil: when, the risk band at the time, "
                "the action and agency, and the outcome category.",
    columns=(
        Column("case_id", "str"),
        Column("decided_on", "date"),
        _school(),
        replace(_pupil(), accepts_pseudonym=True),
        Column("risk_band", "category", codes=("red", "pink", "orange", "yellow", "none")),
        Column("action", "category",
               codes=("monitoring", "home_visit", "sc_interview", "ssw", "support_classroom",
                      "npo_referral")),
        Column("agency", "category",
               codes=("teacher", "school", "school_counsellor", "social_worker", "support_centre",
                      "npo")),
        Column("outcome", "category", nullable=True,
               codes=("improved", "no_change", "worse", "ongoing")),
        Column("notes", "str", pii="drop", required=False, nullable=True),
        Column("review_on", "date", required=False, nullable=True, planned=True,
               description="when the case meeting reviews the action (entered in the portal)"),
    ),
    key_columns=("case_id",),
    known_from="decided_on",
    known_rule="recorded at the case meeting",
    period=school_year_of("decided_on"),
    use=_pupil_use("ケース会議の決定を学校・教育政策室がポータルで入力"),
    # decisions arrive one by one (the portal writes a file per entry) and a review re-sends
    # the case with its outcome: each row stands alone, keyed by 記録番号
    handling="rows",
)

# ---------------------------------------------------------------------------------------------
# School-level sources (aggregates only)
# ---------------------------------------------------------------------------------------------

SCHOOL_MASTER = SourceSpec(
    key="school_master",
    title_ja="学校一覧",
    holder="教育総務課",
    grain="school",
    cadence="as schools change",
    description="The city's schools: code, name, type and district.",
    columns=(
        _school(),
        Column("school_name", "str"),
        Column("school_type", "category",
               codes=("elementary", "junior_high")),
        Column("district", "str"),
    ),
    key_columns=("school_code",),
    known_from="DATE '2000-04-01'",
    known_rule="timeless: the list of schools is always known",
    period="'all'",
    use=_school_use("教育総務課の学校一覧", purposes=ALL_PURPOSES),
)

SCHOOL_CONTEXT = SourceSpec(
    key="school_context",
    title_ja="学校別 比率（就学援助ほか）",
    holder="学務課",
    grain="school",
    cadence="annual (as of May 1)",
    description="Context ratios per school and year: 就学援助, 児童扶養手当, 生活保護, "
                "特別支援教育, 日本語指導.",
    columns=(
        _year(),
        _school(),
        Column("enrolment", "int", min=0, max=3000),
        Column("school_aid_rate", "float", min=0, max=100, unit="%"),
        Column("child_allowance_rate", "float", min=0, max=100, unit="%"),
        Column("welfare_rate", "float", min=0, max=100, unit="%"),
        Column("special_needs_rate", "float", min=0, max=100, unit="%"),
        Column("japanese_support_rate", "float", min=0, max=100,
               unit="%"),
    ),
    key_columns=("school_year", "school_code"),
    known_from="make_date(school_year, 6, 1)",
    known_rule="counted as of May 1, published in June",
    period="CAST(school_year AS VARCHAR)",
    use=_school_use("学務課が5月1日現在で集計", purposes=ALL_PURPOSES),
)

TEACHER_SURVEY = SourceSpec(
    key="teacher_survey",
    title_ja="教員質問紙調査",
    holder="県教育委員会",
    grain="school",
    cadence="annual",
    description="School means of teaching-practice and climate items (1-4).",
    columns=(
        _year(),
        _school(),
        Column("respondents", "int", min=0, max=200),
        Column("lesson_improvement", "float", min=1, max=4),
        Column("collaboration", "float", min=1, max=4),
        Column("shared_guidance", "float", min=1, max=4),
        Column("school_climate", "float", min=1, max=4),
        Column("ict_use", "float", min=1, max=4),
    ),
    key_columns=("school_year", "school_code"),
    known_from="make_date(school_year, 7, 15)",
    known_rule="returned with the prefectural survey in mid-July",
    period="CAST(school_year AS VARCHAR)",
    use=_school_use("埼玉県教育委員会の教員質問紙調査（学校平均のみ）"),
)

TEACHER_STRESS_CHECK = SourceSpec(
    key="teacher_stress_check",
    title_ja="教職員ストレスチェック（集団分析）",
    holder="教職員課",
    grain="school",
    cadence="annual",
    description="Group analysis of the 57-item stress check: scale means and the share of "
                "high-stress staff.",
    columns=(
        _year(),
        _school(),
        Column("examinees", "int", min=0, max=200),
        Column("stressors", "float", min=1, max=4),
        Column("reactions", "float", min=1, max=4),
        Column("support", "float", min=1, max=4),
        Column("satisfaction", "float", min=1, max=4),
        Column("high_stress_rate", "float", min=0, max=100, unit="%"),
    ),
    key_columns=("school_year", "school_code"),
    known_from="make_date(school_year, 10, 1)",
    known_rule="checked in summer, group analysis returned by October",
    period="CAST(school_year AS VARCHAR)",
    use=_school_use("労働安全衛生法に基づくストレスチェックの集団分析（学校単位のみ）", years=5),
)

TEACHER_OVERTIME = SourceSpec(
    key="teacher_overtime",
    title_ja="月別時間外在校等時間",
    holder="教職員課",
    grain="school",
    cadence="monthly; one file per school year",
    description="Mean overtime hours per teacher and the share over 45 h and 80 h per month.",
    columns=(
        Column("month", "month"),
        _school(),
        Column("teachers", "int", min=0, max=200),
        Column("mean_overtime_hours", "float", min=0, max=200,
               unit="h/month"),
        Column("over_45h_rate", "float", min=0, max=100, unit="%"),
        Column("over_80h_count", "int", min=0, max=200),
    ),
    key_columns=("school_code", "month"),
    known_from="month + INTERVAL 1 MONTH + INTERVAL 14 DAY",
    known_rule="tallied by the 15th of the following month",
    period=school_year_of("month"),
    use=_school_use("教職員課の在校等時間の集計（学校単位のみ）"),
)

CATALOGUE: dict[str, SourceSpec] = {
    spec.key: spec
    for spec in (
        PUPIL_REGISTRY, ATTENDANCE_DAILY, LONG_ABSENCE_SURVEY, BULLYING_RECORDS,
        COUNSELING_RECORDS, SCHOOL_LIFE_SURVEY, HEALTH_CHECKUP, PREFECTURAL_ACHIEVEMENT,
        PREFECTURAL_QUESTIONNAIRE, NURSE_OFFICE_VISITS, AIGROW, QU_SURVEY,
        CLASS_UNDERSTANDING_SURVEY, RST, MOOD_CHECKIN, INFANT_CHECKUP, NURSERY_ENROLLMENT,
        SUPPORT_RECORDS, SCHOOL_MASTER, SCHOOL_CONTEXT, TEACHER_SURVEY, TEACHER_STRESS_CHECK,
        TEACHER_OVERTIME,
    )
}


def spec(key: str) -> SourceSpec:
    try:
        return CATALOGUE[key]
    except KeyError:
        raise KeyError(f"unknown source {key!r}; known: {', '.join(CATALOGUE)}") from None
