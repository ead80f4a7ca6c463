"""The one place that maps feature columns to the data source (group) they come from.

Every column of ``marts.pupil_features`` (see :mod:`ml.features`) is named ``<prefix>_…`` where
the prefix names the feature block, and each block reads one staging source
(:data:`ml.features.BLOCK_SOURCES`). The source ablation, the importance by group, the fairness
audit's context band and the Japanese reasons all go through this table.

``grade`` is an identifier column of the table and also a model input; it belongs to the
registry (the roll says which grade a pupil is in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Group:
    key: str          # the feature block of ml.features.BLOCKS
    prefix: str       # column prefix (without the underscore)
    title_ja: str     # how a teacher names the data
    title_en: str


GROUPS: tuple[Group, ...] = (
    Group("registry", "reg", "学齢簿（学年・転出入）", "pupil registry"),
    Group("attendance", "att", "出欠", "daily attendance"),
    Group("long_absence", "la", "長期欠席調査（前年度まで）", "long-absence survey (past years)"),
    Group("bullying", "bul", "いじめ認知", "bullying records"),
    Group("counselling", "cns", "教育相談", "counselling records"),
    Group("nurse", "nrs", "保健室来室", "nurse-office visits"),
    Group("support", "sup", "支援記録", "support records"),
    Group("mood", "mood", "心の健康観察", "mood check-in"),
    Group("qu", "qu", "Q-U", "Q-U survey"),
    Group("school_life", "sls", "学校生活アンケート", "school-life survey"),
    Group("class_understanding", "cus", "授業理解度アンケート", "class-understanding survey"),
    Group("health", "hlth", "健康診断", "health checkup"),
    Group("achievement", "ach", "県学力調査", "prefectural achievement test"),
    Group("questionnaire", "pq", "県学調質問紙", "prefectural questionnaire"),
    Group("rst", "rst", "リーディングスキルテスト", "reading skill test (RST)"),
    Group("aigrow", "aig", "AiGROW", "AiGROW"),
    Group("infant", "inf", "乳幼児健診", "infant checkups"),
    Group("nursery", "nur", "保育・幼稚園", "nursery enrolment"),
    Group("school_context", "ctx", "学校の状況（就学援助率など）", "school context"),
)
BY_KEY = {g.key: g for g in GROUPS}
BY_PREFIX = {g.prefix: g for g in GROUPS}
EXTRA_FEATURES = {"grade": "registry"}  # identifier columns that are also model inputs


def group_of(column: str) -> str:
    """The group key of a feature column; ``KeyError`` for a column of no known group."""
    if column in EXTRA_FEATURES:
        return EXTRA_FEATURES[column]
    # longest prefix first: "mood" before a hypothetical "m"
    for prefix in sorted(BY_PREFIX, key=len, reverse=True):
        if column.startswith(prefix + "_"):
            return BY_PREFIX[prefix].key
    raise KeyError(f"feature column {column!r} has no source group (prefixes: {sorted(BY_PREFIX)})")


def columns_by_group(columns: Iterable[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {g.key: [] for g in GROUPS}
    for c in columns:
        out[group_of(c)].append(c)
    return {k: v for k, v in out.items() if v}


def without_group(columns: Iterable[str], group: str) -> list[str]:
    return [c for c in columns if group_of(c) != group]


def only_group(columns: Iterable[str], group: str) -> list[str]:
    return [c for c in columns if group_of(c) == group]
