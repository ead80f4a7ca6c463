"""The source catalogue: one declarative spec per dataset a department exports.

A spec is the contract between three parties: the synthetic city (which writes files the way
the department does), the ingestion factory (which reads them into ``staging.<key>``) and the
quality suites (which check them). Adding a source means adding a spec here, not code.

Each column says: its canonical English name, the Japanese headers that map to it (the first
is the one the department's system writes), its kind, its allowed values or range, and — for
personal identifiers — what happens to it on the way in:

* ``pseudonymise``: the number is replaced by a keyed HMAC (see ``pseudonym.py``);
* ``drop``: never read into the warehouse (addresses, free text);
* ``identity``: never read into the warehouse either; the registry's names, kana and seat numbers
  go to the identity store (``identity.py``), the one place the portal re-attaches them;
* ``birth_month``: a birth date is cut to its year and month.

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
    headers: tuple[str, ...]
    kind: Kind
    description: str = ""
    required: bool = True  # the header must be in the file
    nullable: bool = False  # a blank cell is allowed
    values: Mapping[str, object] | None = None  # for category / multi / bool
    min: float | None = None
    max: float | None = None
    unit: str | None = None
    pii: Pii | None = None
    # A category filled in by hand (a sub-reason typed by a teacher): a value outside ``values``
    # is free text that may name a child, so it is counted and never stored, instead of
    # rejecting the file.
    unmapped: Literal["error", "count"] = "error"
    # headers under which a pupil number arrives already pseudonymised (the portal's 仮名ID: it
    # never holds a 学籍番号); a file has either the number or the pseudonym, never both
    pseudonym_headers: tuple[str, ...] = ()
    planned: bool = False  # a date set for the future (a review date): not an event, no export bound

    @property
    def header(self) -> str:
        """The header as the department's system writes it."""
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
        if self.kind == "category" and self.values and all(
            isinstance(v, int) and not isinstance(v, bool) for v in self.values.values()
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
    """How the department's system writes the file (the synthetic city imitates this)."""

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
_BOARD = ("戸田市教育委員会が、学校教育に関する所掌事務（地方教育行政の組織及び運営に関する法律第21条）"
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
    export: ExportStyle
    use: Use  # purposes, legal basis, retention (see Use)
    constants: Mapping[str, object] = field(default_factory=dict)  # domain facts for checks
    handling: Handling = "coverage"
    # for "rows": the column whose raw text orders duplicate submissions (a form's timestamp);
    # without it the later line of the file wins
    submitted_at: str | None = None

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

def _pupil(headers=("学籍番号", "児童生徒番号", "生徒番号", "児童番号")) -> Column:
    return Column(
        "pupil_id", tuple(headers), "pupil_number", pii="pseudonymise",
        description="学籍番号 from the 校務支援 system; kept across moves between city schools",
    )


def _school(headers=("学校コード", "学校番号")) -> Column:
    return Column("school_code", tuple(headers), "school_code",
                  description="MEXT 学校コード (B… elementary, C… junior high)")


def _grade(nullable=False) -> Column:
    return Column("grade", ("学年",), "grade", nullable=nullable, min=1, max=9,
                  description="city-wide school year: 小1-小6 = 1-6, 中1-中3 = 7-9")


def _year(headers=("年度",)) -> Column:
    return Column("school_year", tuple(headers), "school_year", min=2000, max=2100,
                  description="school year (April-March) named by its starting calendar year")


def _likert(name, header, lo=1, hi=4, nullable=True, description="") -> Column:
    return Column(name, (header,), "int", min=lo, max=hi, nullable=nullable,
                  description=description or f"{lo}-{hi} rating")


YES_NO = {"有": True, "あり": True, "はい": True, "○": True, "〇": True, "1": True, "Y": True,
          "無": False, "なし": False, "いいえ": False, "×": False, "0": False, "N": False}
SEX = {"男": "M", "男子": "M", "M": "M", "1": "M", "女": "F", "女子": "F", "F": "F", "2": "F"}
ROUND = {"1": 1, "2": 2, "3": 3, "第1回": 1, "第2回": 2, "第3回": 3, "1回": 1, "2回": 2, "3回": 3,
         "前期": 1, "後期": 2, "6月": 1, "11月": 2}
SUBJECTS = {"国語": "japanese", "算数": "math", "数学": "math", "英語": "english",
            "理科": "science", "社会": "social_studies"}
RISK_BANDS = {"赤": "red", "ピンク": "pink", "橙": "orange", "オレンジ": "orange", "黄": "yellow",
              "なし": "none", "-": "none"}
FINDING = {"所見なし": "none", "異常なし": "none", "経過観察": "observe", "要観察": "observe",
           "要精密": "refer", "要精密検査": "refer", "要医療": "treatment"}


def _round() -> Column:
    return Column("round", ("回", "実施回"), "category", values=ROUND,
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
        Column("resident_id", ("宛名番号",), "resident_number", pii="pseudonymise",
               description="住民基本台帳 number: links the 学齢簿 to welfare records (infant "
                           "checkups, nursery); pseudonymised with the same key"),
        # names are optional: the warehouse never needs them, the portal's identity store does
        Column("name", ("氏名", "児童生徒氏名"), "str", pii="identity", required=False, nullable=True),
        Column("kana", ("ふりがな", "氏名カナ", "フリガナ"), "str", pii="identity", required=False,
               nullable=True),
        Column("birth_date", ("生年月日",), "date", pii="birth_month",
               description="kept as the first day of the birth month (age in months is all "
                           "features need)"),
        Column("sex", ("性別",), "category", values=SEX),
        _school(),
        _grade(),
        Column("class_name", ("組", "学級"), "str", description="class within the grade"),
        Column("seat_number", ("出席番号",), "int", pii="identity", required=False, nullable=True,
               description="not needed for analysis and a quasi-identifier: identity store only"),
        Column("address", ("住所",), "str", pii="drop", required=False, nullable=True),
        Column("enrolled_on", ("転入日", "転入学日"), "date", nullable=True,
               description="date of transfer in during the year (blank: enrolled from April)"),
        Column("left_on", ("転出日", "転出学日"), "date", nullable=True,
               description="date of transfer out during the year (blank: stayed)"),
    ),
    key_columns=("school_year", "pupil_id", "school_code"),
    known_from="coalesce(enrolled_on, make_date(school_year, 4, 1))",
    known_rule="the roll is known on April 1 of its year; a pupil who transfers in is known "
               "from the transfer date (a transfer-out date is only usable once it has passed)",
    period="CAST(school_year AS VARCHAR)",
    export=ExportStyle(encoding="cp932", file_cadence="school_year", file_name="学齢簿_{period}.csv",
                       date_format="wareki_letter", grade_format="bare_within_school",
                       fullwidth_digits=True, trailing_blank_lines=2),
    use=_pupil_use("学務課の学齢簿システムから年度ごとに出力"),
)

SUB_REASONS = {
    "発熱": "fever", "熱": "fever", "風邪": "cold", "かぜ": "cold", "通院": "clinic", "受診": "clinic",
    "体調不良": "unwell", "頭痛": "headache", "腹痛": "stomach_ache", "インフルエンザ": "influenza",
    "感染症": "infection", "家庭の事情": "family", "家事都合": "family", "私用": "personal",
    "登校しぶり": "reluctant", "親族の葬儀": "funeral", "忌引": "funeral",
}

ATTENDANCE_STATUS = {
    "出": "present", "出席": "present",
    "病": "absent_sick", "欠席(病気)": "absent_sick", "病欠": "absent_sick",
    "事": "absent_other", "欠席(事故)": "absent_other", "事故欠": "absent_other",
    "停": "suspended", "出席停止": "suspended",
    "忌": "mourning", "忌引": "mourning",
    "チ": "late", "遅": "late", "遅刻": "late",
    "早": "early_leave", "早退": "early_leave",
}

ATTENDANCE_DAILY = SourceSpec(
    key="attendance_daily",
    title_ja="出欠情報",
    holder="各学校（校務支援システム）",
    grain="pupil",
    cadence="daily records, one city-wide file per month",
    description="One row per pupil and school day: present, absent (sick / other reasons), "
                "suspended, mourning, late or early leave, with 保健室登校/別室登校 flags.",
    columns=(
        Column("date", ("日付", "出欠日"), "date"),
        _school(),
        _pupil(),
        Column("status", ("出欠", "出欠区分"), "category", values=ATTENDANCE_STATUS,
               description="欠席(事故) = absent for reasons other than illness"),
        Column("room", ("登校形態",), "category", nullable=True, required=False,
               values={"保健室登校": "nurse_room", "保健室": "nurse_room",
                       "別室登校": "separate_room", "別室": "separate_room"},
               description="present, but in the nurse's room or a separate room"),
        Column("sub_reason", ("理由", "欠席理由"), "category", nullable=True, required=False,
               values=SUB_REASONS, unmapped="count",
               description="optional sub-reason, typed by the teacher: only the catalogue's codes "
                           "are kept; other text (a note that may name a child) is counted, not stored"),
    ),
    key_columns=("pupil_id", "date"),
    known_from="date",
    known_rule="a day's attendance is known that evening",
    period="strftime(date, '%Y-%m')",
    export=ExportStyle(encoding="utf-8-sig", file_cadence="monthly", file_name="出欠_{period}.csv",
                       date_format="slash"),
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
        Column("absent_days", ("欠席日数", "欠席日数計"), "int", min=30, max=250, unit="days"),
        Column("days_illness", ("病気",), "int", min=0, max=250, unit="days"),
        Column("days_economic", ("経済的理由",), "int", min=0, max=250, unit="days"),
        Column("days_futoukou", ("不登校",), "int", min=0, max=250, unit="days"),
        Column("days_covid", ("新型コロナウイルスの感染回避",), "int", min=0, max=250,
               unit="days", nullable=True, required=False, description="counted from 2020"),
        Column("days_other", ("その他",), "int", min=0, max=250, unit="days"),
        Column("main_reason", ("主たる理由", "理由区分"), "category",
               values={"病気": "illness", "経済的理由": "economic", "不登校": "futoukou",
                       "新型コロナウイルスの感染回避": "covid", "その他": "other"},
               description="the reason the pupil is counted under (MEXT): the label is "
                           "main_reason = 'futoukou'"),
    ),
    key_columns=("school_year", "pupil_id", "school_code"),
    known_from="make_date(school_year + 1, 5, 1)",
    known_rule="the survey of year Y is compiled in April of Y+1: known from May 1 of Y+1",
    period="CAST(school_year AS VARCHAR)",
    export=ExportStyle(encoding="cp932", file_cadence="school_year",
                       file_name="長期欠席調査_{period}.csv", grade_format="kanji", total_row=True),
    use=_pupil_use("文部科学省の調査のため学校が作成する報告から年度ごとに出力"),
)

BULLYING_FORMS = {
    "冷やかし・からかい・悪口": "teasing", "冷やかしやからかい、悪口や脅し文句、嫌なことを言われる": "teasing",
    "仲間はずれ・無視": "exclusion", "仲間はずれ、集団による無視をされる": "exclusion",
    "軽くぶつかる・叩く": "light_violence", "ひどくぶつかる": "violence",
    "金品たかり": "extortion", "金品を隠す・盗む・壊す": "property",
    "嫌なこと・危険なことをされる": "coerced", "PC・携帯での誹謗中傷": "online",
}

BULLYING_RECORDS = SourceSpec(
    key="bullying_records",
    title_ja="いじめに関する記録",
    holder="学務課・各学校",
    grain="pupil",
    cadence="incidents as recognised, one file per school year",
    description="One row per pupil involved in a recognised incident, with role, forms, how "
                "it was found and whether it is resolved.",
    columns=(
        Column("incident_id", ("認知番号", "事案番号"), "str"),
        Column("recognised_on", ("認知日",), "date"),
        _school(),
        _pupil(),
        _grade(),
        Column("role", ("立場",), "category", values={"被害": "victim", "加害": "perpetrator"}),
        Column("forms", ("態様",), "multi", values=BULLYING_FORMS,
               description="several forms, separated by ／"),
        Column("found_by", ("発見のきっかけ",), "category",
               values={"アンケート調査": "survey", "アンケート": "survey",
                       "本人からの訴え": "self_report", "学級担任が発見": "teacher",
                       "保護者からの訴え": "parent", "他の児童生徒からの情報": "peer",
                       "その他": "other"}),
        Column("resolved", ("解消状況",), "category",
               values={"解消": "resolved", "解消している": "resolved", "取組中": "ongoing",
                       "解消に向けて取組中": "ongoing"}),
        Column("notes", ("備考", "概要"), "str", pii="drop", required=False, nullable=True,
               description="free text may name children: never read"),
    ),
    key_columns=("incident_id", "pupil_id"),
    known_from="recognised_on + INTERVAL 14 DAY",
    known_rule="recognised incidents reach the board with the school's report, within two weeks",
    period=school_year_of("recognised_on"),
    export=ExportStyle(encoding="cp932", file_cadence="school_year",
                       file_name="いじめ認知_{period}.csv", date_format="wareki_kanji",
                       grade_format="kanji"),
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
        Column("session_id", ("記録番号",), "str"),
        Column("session_date", ("相談日",), "date"),
        _school(),
        _pupil(),
        Column("counsellor", ("相談員種別", "対応者"), "category",
               values={"SC": "school_counsellor", "スクールカウンセラー": "school_counsellor",
                       "SSW": "social_worker", "スクールソーシャルワーカー": "social_worker",
                       "教育相談員": "education_counsellor"}),
        Column("topic", ("主訴", "相談内容"), "category",
               values={"不登校": "non_attendance", "友人関係": "friends", "家庭": "family",
                       "学習": "study", "心身の不調": "health", "いじめ": "bullying",
                       "進路": "career", "その他": "other"}),
        Column("referred_by", ("相談経路",), "category",
               values={"本人": "self", "保護者": "parent", "担任": "teacher",
                       "養護教諭": "nurse", "関係機関": "agency"}),
        Column("linked_agency", ("関係機関連携",), "bool", values=YES_NO),
        Column("notes", ("記録", "相談記録"), "str", pii="drop", required=False, nullable=True),
    ),
    key_columns=("session_id",),
    known_from="session_date",
    known_rule="a session is recorded the day it is held",
    period=school_year_of("session_date"),
    export=ExportStyle(encoding="utf-8-sig", file_cadence="school_year",
                       file_name="教育相談_{period}.csv", date_format="iso"),
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
        Column("survey_date", ("実施日",), "date"),
        _school(),
        _pupil(),
        _grade(),
        _round(),
        _likert("q_friends", "友達と仲良く過ごせている"),
        _likert("q_teacher", "先生に相談できる"),
        _likert("q_study", "勉強がわかる"),
        _likert("q_safe", "学校は安心できる場所だ"),
        _likert("q_enjoy", "学校に行くのが楽しい"),
    ),
    key_columns=("pupil_id", "survey_date"),
    known_from="survey_date + INTERVAL 14 DAY",
    known_rule="answers are tallied and returned two weeks after the survey day",
    period=f"CAST({school_year_of('survey_date')} AS VARCHAR) || '-' || CAST(round AS VARCHAR)",
    export=ExportStyle(encoding="cp932", file_cadence="round",
                       file_name="学校生活アンケート_{period}.csv", date_format="wareki_letter_padded",
                       grade_format="kanji"),
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
        Column("checkup_date", ("実施日", "健診日"), "date"),
        _school(),
        _pupil(),
        _grade(),
        Column("sex", ("性別",), "category", values=SEX),
        Column("height_cm", ("身長",), "float", min=90, max=200, unit="cm"),
        Column("weight_kg", ("体重",), "float", min=8, max=150, unit="kg"),
        Column("obesity_index", ("肥満度",), "float", min=-60, max=150, unit="%",
               description="(実測 − 標準体重)/標準体重 × 100"),
        Column("vision_right", ("視力右", "視力（右）"), "category", nullable=True,
               values={"A": "A", "B": "B", "C": "C", "D": "D"}),
        Column("vision_left", ("視力左", "視力（左）"), "category", nullable=True,
               values={"A": "A", "B": "B", "C": "C", "D": "D"}),
        Column("caries", ("むし歯",), "category",
               values={"なし": "none", "処置完了": "treated", "未処置あり": "untreated"}),
        Column("dmf", ("DMF歯数", "DMFT"), "int", min=0, max=28, nullable=True),
    ),
    key_columns=("pupil_id", "checkup_date"),
    known_from="checkup_date + INTERVAL 7 DAY",
    known_rule="results are entered within a week of the checkup",
    period=school_year_of("checkup_date"),
    export=ExportStyle(encoding="utf-8-sig", file_cadence="school_year",
                       file_name="健康診断_{period}.csv", date_format="iso", grade_format="kanji"),
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
        Column("survey_date", ("実施日",), "date"),
        _school(),
        _pupil(),
        _grade(),
        Column("subject", ("教科",), "category", values=SUBJECTS),
        Column("level", ("学力レベル",), "int", min=1, max=12),
        Column("scale_score", ("スコア", "IRTスコア"), "float", min=0, max=1000),
    ),
    key_columns=("school_year", "pupil_id", "subject"),
    known_from="make_date(school_year, 7, 15)",
    known_rule="the prefecture returns April's results to schools in mid-July",
    period="CAST(school_year AS VARCHAR)",
    export=ExportStyle(encoding="utf-8-sig", file_cadence="school_year",
                       file_name="県学調_学力_{period}.csv", date_format="iso",
                       grade_format="kanji"),
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
        Column("self_esteem", ("自己肯定感",), "float", min=1, max=4),
        Column("self_efficacy", ("自己効力感",), "float", min=1, max=4),
        Column("self_control", ("自制心",), "float", min=1, max=4),
        Column("diligence", ("勤勉性",), "float", min=1, max=4),
        Column("learning_strategies", ("学習方略",), "float", min=1, max=4),
    ),
    key_columns=("school_year", "pupil_id"),
    known_from="make_date(school_year, 7, 15)",
    known_rule="returned with the achievement results in mid-July",
    period="CAST(school_year AS VARCHAR)",
    export=ExportStyle(encoding="utf-8-sig", file_cadence="school_year",
                       file_name="県学調_質問紙_{period}.csv", grade_format="kanji"),
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
        Column("visit_date", ("来室日",), "date"),
        Column("visit_time", ("来室時刻",), "time"),
        _school(),
        _pupil(),
        _grade(),
        Column("symptom", ("症状", "主訴"), "category",
               values={"頭痛": "headache", "腹痛": "stomach_ache", "気分不良": "unwell",
                       "けが": "injury", "発熱": "fever", "その他": "other"}),
        Column("temperature", ("体温",), "float", min=34, max=42, unit="°C", nullable=True),
        Column("rest_minutes", ("休養時間",), "int", min=0, max=60, unit="min"),
        Column("went_home", ("早退",), "bool", values=YES_NO),
    ),
    key_columns=("pupil_id", "visit_date", "visit_time"),
    known_from="visit_date",
    known_rule="a visit is logged the day it happens",
    period="strftime(visit_date, '%Y-%m')",
    export=ExportStyle(encoding="cp932", file_cadence="monthly", file_name="保健室来室_{period}.csv",
                       date_format="wareki_kanji", grade_format="kanji", total_row=True,
                       trailing_blank_lines=1),
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
        Column("test_date", ("受験日",), "date"),
        _school(),
        _pupil(),
        _grade(),
        Column("collaboration", ("協働性",), "float", min=0, max=100),
        Column("problem_setting", ("課題設定力",), "float", min=0, max=100),
        Column("creativity", ("創造性",), "float", min=0, max=100),
        Column("flexibility", ("柔軟性",), "float", min=0, max=100),
        Column("empathy", ("共感力",), "float", min=0, max=100),
        Column("self_management", ("自己管理",), "float", min=0, max=100),
        Column("psychological_safety", ("心理的安全性",), "float", min=0, max=100),
        Column("self_affirmation", ("自己肯定感",), "float", min=0, max=100),
    ),
    key_columns=("pupil_id", "test_date"),
    known_from="test_date + INTERVAL 30 DAY",
    known_rule="the vendor returns results a month after the test",
    period=school_year_of("test_date"),
    export=ExportStyle(encoding="utf-8-sig", file_cadence="school_year",
                       file_name="AiGROW_{period}.csv", date_format="iso",
                       grade_format="within_school"),
    use=_pupil_use("学校で実施する受験結果（事業者から返却）"),
)

QU_GROUPS = {"学級生活満足群": "satisfied", "満足群": "satisfied",
             "非承認群": "unrecognised", "侵害行為認知群": "infringed",
             "学級生活不満足群": "dissatisfied", "不満足群": "dissatisfied",
             "要支援群": "needs_support"}

QU_SURVEY = SourceSpec(
    key="qu_survey",
    title_ja="Q-U（楽しい学校生活を送るためのアンケート）",
    holder="各学校",
    grain="pupil",
    cadence="two rounds a year (June, November)",
    description="承認得点 and 被侵害得点 (sums of 10 five-point items), the resulting group, "
                "and 学校生活意欲 areas.",
    columns=(
        Column("survey_date", ("実施日",), "date"),
        _school(),
        _pupil(),
        _grade(),
        Column("class_name", ("組",), "str"),
        _round(),
        Column("approval", ("承認得点",), "int", min=10, max=50),
        Column("infringement", ("被侵害得点",), "int", min=10, max=50),
        Column("group", ("群", "判定群"), "category", values=QU_GROUPS,
               description="要支援群 is the most severe part of 学級生活不満足群"),
        Column("motivation_friends", ("友人関係",), "int", min=3, max=12),
        Column("motivation_study", ("学習意欲",), "int", min=3, max=12),
        Column("motivation_teacher", ("教師との関係",), "int", min=3, max=12),
        Column("motivation_class", ("学級との関係",), "int", min=3, max=12),
        Column("motivation_career", ("進路意識",), "int", min=3, max=12, nullable=True,
               required=False, description="junior high only"),
    ),
    key_columns=("pupil_id", "survey_date"),
    known_from="survey_date + INTERVAL 21 DAY",
    known_rule="the publisher scores the sheets and returns results three weeks later",
    period=f"CAST({school_year_of('survey_date')} AS VARCHAR) || '-' || CAST(round AS VARCHAR)",
    export=ExportStyle(encoding="cp932", file_cadence="round", file_name="QU_{period}.csv",
                       date_format="slash", grade_format="kanji"),
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
        Column("survey_date", ("実施日",), "date"),
        _school(),
        _pupil(),
        _grade(),
        _round(),
        Column("subject", ("教科",), "category", values=SUBJECTS),
        Column("understanding", ("理解度", "授業がわかる"), "int", min=1, max=4),
    ),
    key_columns=("pupil_id", "survey_date", "subject"),
    known_from="survey_date + INTERVAL 7 DAY",
    known_rule="tallied within a week",
    period=f"CAST({school_year_of('survey_date')} AS VARCHAR) || '-' || CAST(round AS VARCHAR)",
    export=ExportStyle(encoding="cp932", file_cadence="round",
                       file_name="授業理解_{period}.csv", date_format="slash",
                       grade_format="citywide"),
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
        Column("test_date", ("受検日",), "date"),
        _school(),
        _pupil(),
        _grade(),
        Column("dependency", ("係り受け",), "float", min=-4, max=4),
        Column("anaphora", ("照応",), "float", min=-4, max=4),
        Column("paraphrase", ("同義文判定",), "float", min=-4, max=4),
        Column("inference", ("推論",), "float", min=-4, max=4),
        Column("image_matching", ("イメージ同定",), "float", min=-4, max=4),
        Column("instantiation", ("具体例同定",), "float", min=-4, max=4),
    ),
    key_columns=("pupil_id", "test_date"),
    known_from="test_date + INTERVAL 30 DAY",
    known_rule="results are returned a month after the test",
    period=school_year_of("test_date"),
    export=ExportStyle(encoding="utf-8-sig", file_cadence="school_year", file_name="RST_{period}.csv",
                       date_format="iso", grade_format="kanji"),
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
        Column("checkin_date", ("タイムスタンプ",), "timestamp_date"),
        _school(),
        _pupil(headers=("学籍番号", "出席番号・学籍番号")),
        Column("mood", ("今日の心の天気",), "category",
               values={"晴れ": 4, "くもり": 3, "雨": 2, "雷": 1},
               description="4 = 晴れ … 1 = 雷"),
        Column("body", ("体の調子",), "category", values={"よい": 3, "ふつう": 2, "わるい": 1}),
        Column("sleep", ("昨日はよく眠れましたか",), "category",
               values={"よく眠れた": 4, "眠れた": 3, "あまり眠れなかった": 2, "眠れなかった": 1}),
        Column("want_to_talk", ("先生と話したいですか",), "bool",
               values={"はい": True, "話したい": True, "いいえ": False, "大丈夫": False}),
    ),
    key_columns=("pupil_id", "checkin_date"),
    known_from="checkin_date",
    known_rule="seen by the teacher the same morning",
    period="strftime(checkin_date, '%Y-%m')",
    export=ExportStyle(encoding="utf-8", file_cadence="monthly",
                       file_name="シャボテン_{period}.csv", date_format="form_timestamp",
                       fullwidth_digits=True),
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
        Column("resident_id", ("宛名番号",), "resident_number", pii="pseudonymise"),
        Column("name", ("氏名",), "str", pii="drop"),
        Column("birth_date", ("生年月日",), "date", pii="birth_month"),
        Column("checkup", ("健診種別",), "category",
               values={"4か月": "4m", "4か月児": "4m", "1歳6か月": "18m", "1歳6か月児": "18m",
                       "3歳": "3y", "3歳児": "3y"}),
        Column("checkup_date", ("健診日",), "date", description="scheduled date"),
        Column("attended", ("受診状況",), "bool",
               values={"受診": True, "受診済": True, "未受診": False}),
        Column("development", ("発達",), "category", values=FINDING, nullable=True),
        Column("language", ("言語",), "category", values=FINDING, nullable=True),
        Column("sight_hearing", ("視聴覚",), "category", values=FINDING, nullable=True),
        Column("dental", ("歯科",), "category", values=FINDING, nullable=True),
        Column("referred", ("要精密",), "bool", values=YES_NO, nullable=True),
    ),
    key_columns=("resident_id", "checkup"),
    known_from="checkup_date",
    known_rule="known on the day of the checkup",
    period=school_year_of("checkup_date"),
    export=ExportStyle(encoding="cp932", file_cadence="school_year",
                       file_name="乳幼児健診_{period}.csv", date_format="wareki_kanji"),
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
        Column("resident_id", ("宛名番号",), "resident_number", pii="pseudonymise"),
        Column("name", ("児童氏名",), "str", pii="drop"),
        Column("birth_date", ("生年月日",), "date", pii="birth_month"),
        Column("facility_type", ("施設種別",), "category",
               values={"認可保育所": "licensed", "認定こども園": "kodomoen",
                       "認可外保育施設": "unlicensed", "幼稚園": "kindergarten"}),
        Column("enrolled_on", ("入所日",), "date"),
        Column("left_on", ("退所日",), "date", nullable=True),
        Column("base_index", ("基準指数",), "int", min=0, max=100, nullable=True,
               description="blank for places without a priority ranking (幼稚園, 認可外)"),
        Column("adjustment_index", ("調整指数",), "int", min=-20, max=30),
    ),
    key_columns=("resident_id", "enrolled_on"),
    known_from="coalesce(left_on, enrolled_on)",
    known_rule="a stay is known once it has ended (or from enrolment while it lasts)",
    period=school_year_of("enrolled_on"),
    export=ExportStyle(encoding="utf-8-sig", file_cadence="school_year",
                       file_name="保育入所_{period}.csv", date_format="wareki_letter"),
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
        Column("case_id", ("記録番号",), "str"),
        Column("decided_on", ("決定日", "会議日"), "date"),
        _school(),
        replace(_pupil(), pseudonym_headers=("仮名ID",)),
        Column("risk_band", ("リスク区分",), "category", values=RISK_BANDS),
        Column("action", ("支援内容",), "category",
               values={"見守り": "monitoring", "家庭訪問": "home_visit", "SC面談": "sc_interview",
                       "SSW連携": "ssw", "適応指導教室": "support_classroom",
                       "NPO紹介": "npo_referral"}),
        Column("agency", ("担当",), "category",
               values={"学級担任": "teacher", "学校": "school", "SC": "school_counsellor",
                       "SSW": "social_worker", "教育支援センター": "support_centre",
                       "NPO": "npo"}),
        Column("outcome", ("経過",), "category", nullable=True,
               values={"改善": "improved", "変化なし": "no_change", "悪化": "worse",
                       "継続中": "ongoing"}),
        Column("notes", ("記録", "備考"), "str", pii="drop", required=False, nullable=True),
        Column("review_on", ("見直し日",), "date", required=False, nullable=True, planned=True,
               description="when the case meeting reviews the action (entered in the portal)"),
    ),
    key_columns=("case_id",),
    known_from="decided_on",
    known_rule="recorded at the case meeting",
    period=school_year_of("decided_on"),
    export=ExportStyle(encoding="utf-8-sig", file_cadence="school_year",
                       file_name="支援記録_{period}.csv", date_format="iso"),
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
        Column("school_name", ("学校名",), "str"),
        Column("school_type", ("学校種",), "category",
               values={"小": "elementary", "小学校": "elementary", "中": "junior_high",
                       "中学校": "junior_high"}),
        Column("district", ("学区", "地区"), "str"),
    ),
    key_columns=("school_code",),
    known_from="DATE '2000-04-01'",
    known_rule="timeless: the list of schools is always known",
    period="'all'",
    export=ExportStyle(encoding="cp932", file_cadence="once", file_name="学校一覧.csv"),
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
        Column("enrolment", ("児童生徒数",), "int", min=0, max=3000),
        Column("school_aid_rate", ("就学援助率",), "float", min=0, max=100, unit="%"),
        Column("child_allowance_rate", ("児童扶養手当受給率",), "float", min=0, max=100, unit="%"),
        Column("welfare_rate", ("生活保護率",), "float", min=0, max=100, unit="%"),
        Column("special_needs_rate", ("特別支援教育対象率",), "float", min=0, max=100, unit="%"),
        Column("japanese_support_rate", ("日本語指導が必要な割合",), "float", min=0, max=100,
               unit="%"),
    ),
    key_columns=("school_year", "school_code"),
    known_from="make_date(school_year, 6, 1)",
    known_rule="counted as of May 1, published in June",
    period="CAST(school_year AS VARCHAR)",
    export=ExportStyle(encoding="cp932", file_cadence="school_year",
                       file_name="学校別比率_{period}.csv", total_row=True),
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
        Column("respondents", ("回答教員数",), "int", min=0, max=200),
        Column("lesson_improvement", ("授業改善",), "float", min=1, max=4),
        Column("collaboration", ("教員間の協働",), "float", min=1, max=4),
        Column("shared_guidance", ("生徒指導方針の共有",), "float", min=1, max=4),
        Column("school_climate", ("学校風土",), "float", min=1, max=4),
        Column("ict_use", ("ICT活用",), "float", min=1, max=4),
    ),
    key_columns=("school_year", "school_code"),
    known_from="make_date(school_year, 7, 15)",
    known_rule="returned with the prefectural survey in mid-July",
    period="CAST(school_year AS VARCHAR)",
    export=ExportStyle(encoding="utf-8-sig", file_cadence="school_year",
                       file_name="教員質問紙_{period}.csv"),
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
        Column("examinees", ("受検者数",), "int", min=0, max=200),
        Column("stressors", ("ストレス要因",), "float", min=1, max=4),
        Column("reactions", ("心身の反応",), "float", min=1, max=4),
        Column("support", ("周囲のサポート",), "float", min=1, max=4),
        Column("satisfaction", ("満足度",), "float", min=1, max=4),
        Column("high_stress_rate", ("高ストレス者割合",), "float", min=0, max=100, unit="%"),
    ),
    key_columns=("school_year", "school_code"),
    known_from="make_date(school_year, 10, 1)",
    known_rule="checked in summer, group analysis returned by October",
    period="CAST(school_year AS VARCHAR)",
    export=ExportStyle(encoding="cp932", file_cadence="school_year",
                       file_name="ストレスチェック_{period}.csv"),
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
        Column("month", ("年月",), "month"),
        _school(),
        Column("teachers", ("教員数",), "int", min=0, max=200),
        Column("mean_overtime_hours", ("平均時間外在校等時間",), "float", min=0, max=200,
               unit="h/month"),
        Column("over_45h_rate", ("45時間超の割合",), "float", min=0, max=100, unit="%"),
        Column("over_80h_count", ("80時間超の人数",), "int", min=0, max=200),
    ),
    key_columns=("school_code", "month"),
    known_from="month + INTERVAL 1 MONTH + INTERVAL 14 DAY",
    known_rule="tallied by the 15th of the following month",
    period=school_year_of("month"),
    export=ExportStyle(encoding="cp932", file_cadence="school_year",
                       file_name="時間外勤務_{period}.csv", date_format="wareki_kanji"),
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
