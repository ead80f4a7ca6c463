"""Reasons in plain Japanese from LightGBM contributions (``pred_contrib``).

For each pupil, the features whose contribution raised the risk most become up to five reasons,
each with the pupil's value and a comparison a teacher can read against the pupil's grade in the
same cohort on the same day, e.g. ``直近30日の欠席 5日（学年平均の約3倍）``.

Feature names are composed from :mod:`ml.features` blocks (``<prefix>_<window>_<measure>``), so
the labels are composed the same way: a window phrase (直近30日, 今年度, 昨年度 …) and a measure
phrase with its unit. :func:`label_ja` falls back to the source's name and the raw column name
for a column it does not know — the test suite checks every real feature column has a label.

Redundant reasons are skipped: one reason per measure across windows (直近30日の欠席 and
直近90日の欠席 say the same thing) and at most two per source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from ml.feature_groups import BY_KEY, group_of

WINDOWS = {"d30": "直近30日", "d60_30": "その前の30日", "d90": "直近90日", "ytd": "今年度",
           "prev": "昨年度"}

# measure -> (label, unit); the window phrase is put in front
ATT = {
    "days": ("の出欠記録日数", "日"), "absent": ("の欠席", "日"), "absent_sick": ("の病気欠席", "日"),
    "absent_other": ("の病気以外の欠席", "日"), "late": ("の遅刻", "回"),
    "early_leave": ("の早退", "回"), "nurse_room": ("の保健室登校", "日"),
    "separate_room": ("の別室登校", "日"), "suspended": ("の出席停止", "日"),
    "mourning": ("の忌引", "日"), "reluctant": ("の登校しぶりによる欠席", "日"),
    "monday_absent": ("の月曜日の欠席", "日"), "after_break_absent": ("の休み明けの欠席", "日"),
    "absent_rate": ("の欠席率", "%"), "missing": ("の出欠記録なし", ""),
}
ATT_SPECIAL = {
    "att_trend_absent_d30": ("直近30日の欠席の増え方（その前の30日との差）", "日"),
    "att_mom_absent_rate_change": ("先月の欠席率の変化（前月との差）", "ポイント"),
    "att_current_absent_streak": ("現在の連続欠席", "日"),
    "att_ytd_max_absent_streak": ("今年度の最長連続欠席", "日"),
}
LA = {
    "la_prev_missing": ("昨年度の長期欠席調査がまだない", ""),
    "la_prev_listed": ("昨年度 長期欠席者として計上", ""),
    "la_prev_futoukou": ("昨年度 不登校として計上", ""),
    "la_prev_absent_days": ("昨年度の欠席日数（長期欠席調査）", "日"),
    "la_prev_days_futoukou": ("昨年度の不登校による欠席日数", "日"),
    "la_years_futoukou_before": ("これまでに不登校として計上された年数", "年"),
    "la_years_listed_before": ("これまでに長期欠席者として計上された年数", "年"),
    "la_survey_years_known": ("長期欠席調査のある年数", "年"),
}
BUL = {"victim": ("のいじめ被害", "件"), "perpetrator": ("のいじめ加害", "件"),
       "victim_exclusion": ("のいじめ被害（仲間外れ）", "件"),
       "victim_violence": ("のいじめ被害（暴力）", "件"),
       "victim_online": ("のいじめ被害（ネット）", "件"), "missing": ("のいじめ記録なし", "")}
CNS_TOPICS = {"non_attendance": "不登校", "friends": "友人関係", "family": "家庭", "study": "学習",
              "health": "健康", "bullying": "いじめ"}
CNS = {"sessions": ("の教育相談", "回"), "by_social_worker": ("のSSWとの相談", "回"),
       "referred_by_nurse": ("の養護教諭からつないだ相談", "回"),
       "referred_by_parent": ("の保護者からの相談", "回"),
       "self_referred": ("の本人からの相談", "回"),
       "linked_agency": ("の関係機関と連携した相談", "回"), "missing": ("の教育相談記録なし", ""),
       **{f"topic_{k}": (f"の教育相談（{v}）", "回") for k, v in CNS_TOPICS.items()}}
NRS_SYMPTOMS = {"headache": "頭痛", "stomach_ache": "腹痛", "unwell": "体調不良", "injury": "けが",
                "fever": "発熱", "other": "その他"}
NRS = {"visits": ("の保健室来室", "回"), "went_home": ("の保健室からの早退", "回"),
       "morning": ("の朝（10時前）の保健室来室", "回"), "rest_minutes": ("の保健室での休養", "分"),
       "missing": ("の保健室来室記録なし", ""),
       **{k: (f"の保健室来室（{v}）", "回") for k, v in NRS_SYMPTOMS.items()}}
NRS_SPECIAL = {"nrs_trend_visits_d30": ("保健室来室の増え方（直近30日とその前の30日の差）", "回")}
SUP_ACTIONS = {"monitoring": "見守り", "home_visit": "家庭訪問", "sc_interview": "SC面談",
               "ssw": "SSW対応", "support_classroom": "教育支援教室", "npo_referral": "NPO紹介"}
SUP = {"decisions": ("の支援の決定", "件"), "missing": ("の支援記録なし", ""),
       **{k: (f"の支援（{v}）", "件") for k, v in SUP_ACTIONS.items()}}
SUP_SPECIAL = {"sup_ever_decisions": ("これまでの支援の決定", "件"),
               "sup_last_risk_band": ("前回の支援会議のリスク区分（0なし〜4赤）", "")}
MOOD = {"checkins": ("の心の健康観察の回答", "回"), "bad_days": ("の気分が「雨・雷」の日", "日"),
        "want_to_talk": ("の「話を聞いてほしい」", "回"), "mood_mean": ("の気分の平均（5段階）", ""),
        "body_mean": ("の体調の平均（5段階）", ""), "sleep_mean": ("の睡眠の平均（5段階）", ""),
        "missing": ("の心の健康観察の記録なし", ""), "response_rate": ("の心の健康観察の回答率", "%"),
        "max_bad_streak": ("の気分が悪い日の最長連続", "日"),
        "bad_streak_alerts": ("の「3日連続で気分が悪い」アラート", "回")}
MOOD_SPECIAL = {"mood_trend_d30": ("気分の変化（直近30日とその前の30日の差）", ""),
                "mood_current_bad_streak": ("気分が悪い日の連続（現在）", "日"),
                "mood_ytd_max_bad_streak": ("今年度の気分が悪い日の最長連続", "日"),
                "mood_ytd_bad_streak_alerts": ("今年度の「3日連続で気分が悪い」アラート", "回")}
QU_GROUPS = {"satisfied": "学級生活満足群", "unrecognised": "非承認群", "infringed": "侵害行為認知群",
             "dissatisfied": "学級生活不満足群", "needs_support": "要支援群"}
QU_MOTIVATION = {"friends": "友人関係", "study": "学習意欲", "teacher": "教師との関係",
                 "class": "学級との関係", "career": "進路意識"}
LATEST = {
    "qu": ("Q-U", {"approval": ("承認得点", "点"), "infringement": ("被侵害得点", "点"),
                   "group_severity": ("群の深刻度（0満足〜3要支援）", ""),
                   **{f"group_{k}": (f"「{v}」", "") for k, v in QU_GROUPS.items()},
                   **{f"motivation_{k}": (f"学校生活意欲（{v}）", "点") for k, v in QU_MOTIVATION.items()}}),
    "sls": ("学校生活アンケート", {"friends": ("（友だち）", "点"), "teacher": ("（先生）", "点"),
                                   "study": ("（勉強）", "点"), "safe": ("（安心）", "点"),
                                   "enjoy": ("（楽しさ）", "点"), "mean": ("の平均", "点")}),
    "cus": ("授業理解度アンケート", {"mean": ("の平均", "点"), "min": ("の最低", "点")}),
    "hlth": ("健康診断", {"obesity_index": ("の肥満度", "%"),
                          "obesity_band": ("の肥満度区分（-1やせ〜3高度）", ""),
                          "vision_worst": ("の視力（悪い方、0=A〜3=D）", ""),
                          "caries_untreated": ("で未処置のむし歯", ""), "dmf": ("のむし歯経験歯数", "本")}),
    "ach": ("県学力調査", {"level_mean": ("の平均レベル", ""), "level_japanese": ("の国語レベル", ""),
                           "level_math": ("の算数・数学レベル", ""), "level_english": ("の英語レベル", ""),
                           "level_jm": ("の国語・算数数学レベル", ""), "years_old": ("の経過年数", "年"),
                           "grade_not_surveyed": ("の対象外の学年", "")}),
    "pq": ("県学調質問紙", {"self_esteem": ("の自己肯定感", ""), "self_efficacy": ("の自己効力感", ""),
                            "self_control": ("の自己制御", ""), "diligence": ("の勤勉性", ""),
                            "learning_strategies": ("の学習方略", ""), "years_old": ("の経過年数", "年"),
                            "grade_not_surveyed": ("の対象外の学年", "")}),
    "rst": ("RST", {"dependency": ("（係り受け）", ""), "anaphora": ("（照応）", ""),
                    "paraphrase": ("（同義文判定）", ""), "inference": ("（推論）", ""),
                    "image_matching": ("（イメージ同定）", ""), "instantiation": ("（具体例同定）", ""),
                    "mean": ("の平均能力値", ""), "grade_not_surveyed": ("の対象外の学年", "")}),
    "aig": ("AiGROW", {"collaboration": ("（協働性）", ""), "problem_setting": ("（課題設定力）", ""),
                       "creativity": ("（創造性）", ""), "flexibility": ("（柔軟性）", ""),
                       "empathy": ("（共感性）", ""), "self_management": ("（自己管理力）", ""),
                       "psychological_safety": ("（心理的安全性）", ""),
                       "self_affirmation": ("（自己肯定感）", ""),
                       "grade_not_surveyed": ("の対象外の学年", "")}),
}
OTHER = {
    "inf_missing": ("乳幼児健診の記録なし", ""), "inf_checkups": ("乳幼児健診の記録", "回"),
    "inf_attended": ("乳幼児健診の受診", "回"), "inf_missed": ("乳幼児健診の未受診", "回"),
    "inf_development_refer": ("乳幼児健診で発達・ことばの要精密・要治療", "回"),
    "inf_development_observe": ("乳幼児健診で発達・ことばの経過観察", "回"),
    "inf_other_refer": ("乳幼児健診で視聴覚・歯科の要精密・要治療", "回"),
    "inf_referred": ("乳幼児健診からの紹介", "回"),
    "nur_missing": ("保育・幼稚園の記録なし", ""), "nur_stays": ("保育・幼稚園の在籍", "回"),
    "nur_months": ("保育・幼稚園の在籍期間", "か月"), "nur_first_age_months": ("入園時の月齢", "か月"),
    "nur_max_base_index": ("保育の基本指数", ""), "nur_max_adjustment_index": ("保育の調整指数", ""),
    "nur_last_licensed": ("最後の在籍が認可保育所", ""), "nur_last_kodomoen": ("最後の在籍が認定こども園", ""),
    "nur_last_unlicensed": ("最後の在籍が認可外保育施設", ""),
    "nur_last_kindergarten": ("最後の在籍が幼稚園", ""),
    "ctx_school_aid_rate": ("学校の就学援助率", "%"), "ctx_child_allowance_rate": ("学校の児童扶養手当受給率", "%"),
    "ctx_welfare_rate": ("学校の生活保護率", "%"), "ctx_special_needs_rate": ("学校の特別支援学級在籍率", "%"),
    "ctx_japanese_support_rate": ("学校の日本語指導率", "%"), "ctx_enrolment": ("学校の在籍者数", "人"),
    "ctx_years_old": ("学校の状況データの経過年数", "年"), "ctx_missing": ("学校の状況データなし", ""),
    "reg_female": ("女子", ""), "reg_age_months": ("月齢", "か月"), "reg_junior_high": ("中学生", ""),
    "reg_transferred_in_this_year": ("今年度の転入", ""), "reg_schools_this_year": ("今年度の在籍校数", "校"),
    "reg_in_city_prev_year": ("昨年度 市内に在籍", ""), "reg_years_in_city_before": ("市内に在籍した年数", "年"),
    "reg_class_size": ("学級の人数", "人"), "grade": ("学年", ""),
}
PERCENT = {"att_d30_absent_rate", "att_d90_absent_rate", "att_ytd_absent_rate", "att_prev_absent_rate",
           "mood_d30_response_rate", "ctx_school_aid_rate", "ctx_child_allowance_rate",
           "ctx_welfare_rate", "ctx_special_needs_rate", "ctx_japanese_support_rate"}


def _windowed(column: str, prefix: str, table: dict) -> tuple[str, str] | None:
    rest = column[len(prefix) + 1:]
    for w in sorted(WINDOWS, key=len, reverse=True):
        if rest.startswith(w + "_"):
            measure = rest[len(w) + 1:]
            if measure in table:
                label, unit = table[measure]
                return WINDOWS[w] + label, unit
    return None


def label_ja(column: str) -> tuple[str, str, bool]:
    """(Japanese label, unit, known) of a feature column."""
    for special in (ATT_SPECIAL, NRS_SPECIAL, SUP_SPECIAL, MOOD_SPECIAL, LA, OTHER):
        if column in special:
            return (*special[column], True)
    for prefix, table in (("att", ATT), ("bul", BUL), ("cns", CNS), ("nrs", NRS), ("sup", SUP),
                          ("mood", MOOD)):
        if column.startswith(prefix + "_"):
            hit = _windowed(column, prefix, table)
            if hit:
                return (*hit, True)
    for prefix, (name, table) in LATEST.items():
        if column.startswith(prefix + "_"):
            rest = column[len(prefix) + 1:]
            if rest == "missing":
                return f"{name}の記録なし", "", True
            if rest == "change_missing":
                return f"{name}の前回の記録なし", "", True
            if rest == "days_since":
                return f"{name}の実施からの日数", "日", True
            if rest.startswith("change_") and rest[7:] in table:
                label, unit = table[rest[7:]]
                return f"{name}{label}の前回からの変化", unit, True
            if rest in table:
                label, unit = table[rest]
                return f"{name}{label}", unit, True
    try:
        source = BY_KEY[group_of(column)].title_ja
    except KeyError:
        source = ""
    return f"{source}（{column}）" if source else column, "", False


def measure_key(column: str) -> str:
    """The measure a column counts, without its window: one reason per measure."""
    parts = column.split("_")
    out = [p for p in parts if p not in ("d30", "d90", "ytd", "prev", "d60", "30")]
    return "_".join(out)


def _fmt(v: float, unit: str, column: str, digits: int = 1) -> str:
    if column in PERCENT:
        return f"{v * 100:.{max(digits - 1, 0)}f}%" if v < 0.1 else f"{v * 100:.0f}%"
    if abs(v - round(v)) < 1e-6:
        return f"{int(round(v))}{unit}"
    if abs(v) < 0.1:  # a grade mean of 0.02 visits is not "0.0"
        return f"{v:.2f}{unit}"
    return f"{v:.{digits}f}{unit}"


def _is_flag(values: pd.Series) -> bool:
    v = values.dropna().unique()
    return len(v) <= 2 and set(np.round(v, 6)) <= {0.0, 1.0}


@dataclass(frozen=True)
class Reason:
    feature: str
    value: float | None
    contribution: float
    text: str


def reason_text(column: str, value, grade_mean, *, flag: bool) -> str:
    label, unit, _ = label_ja(column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{label}: 記録なし"
    v = float(value)
    if flag:
        share = "" if grade_mean is None or math.isnan(grade_mean) else \
            f"（学年で{grade_mean * 100:.0f}%）"
        return (label if v >= 0.5 else f"{label}: いいえ") + (share if v >= 0.5 else "")
    text = f"{label} {_fmt(v, unit, column)}"
    if grade_mean is None or math.isnan(grade_mean):
        return text
    m = float(grade_mean)
    # "about 3 times the grade's mean" reads well; "122 times" a mean of 0.02 days does not:
    # from 10 times on, the mean itself is shown
    if m > 0 and v > 0 and 1.5 <= v / m < 10:
        r = v / m
        ratio = f"{r:.0f}" if r >= 3 else f"{r:.1f}"
        return f"{text}（学年平均の約{ratio}倍）"
    return f"{text}（学年平均 {_fmt(m, unit, column, digits=1)}）"


def explain(contrib: np.ndarray, frame: pd.DataFrame, features: Sequence[str], *,
            grade_means: pd.DataFrame | None = None, top: int = 5, min_contribution: float = 0.05,
            per_group: int = 2) -> list[list[Reason]]:
    """Up to ``top`` reasons per row: features with the largest positive contributions.

    ``contrib``: LightGBM ``pred_contrib`` (n × features + 1). ``grade_means``: mean of each
    feature per grade (index grade); by default computed from ``frame`` itself.
    """
    features = list(features)
    if grade_means is None:
        grade_means = reference_means(frame, features)
    # a yes/no column: no unit and only 0/1 values (a count that happens to be 0/1 keeps its unit)
    flags = {c: (c in frame and label_ja(c)[1] == "" and _is_flag(frame[c])) for c in features}
    grades = frame["grade"].to_numpy() if "grade" in frame else np.zeros(len(frame))
    values = frame.reindex(columns=features).to_numpy(dtype=float)
    out: list[list[Reason]] = []
    c = np.asarray(contrib)[:, :len(features)]
    order = np.argsort(-c, axis=1)
    for i in range(len(frame)):
        reasons, measures, per = [], set(), {}
        for j in order[i]:
            if c[i, j] < min_contribution or len(reasons) >= top:
                break
            col = features[j]
            mk, grp = measure_key(col), group_of(col)
            if mk in measures or per.get(grp, 0) >= per_group:
                continue
            v = values[i, j]
            gm = grade_means[col].get(grades[i], np.nan) if col in grade_means else np.nan
            text = reason_text(col, None if np.isnan(v) else v, gm, flag=flags[col])
            reasons.append(Reason(col, None if np.isnan(v) else float(v), float(c[i, j]), text))
            measures.add(mk)
            per[grp] = per.get(grp, 0) + 1
        out.append(reasons)
    return out


def reference_means(frame: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    """Mean of each feature per grade (NULLs ignored): the teacher's comparison."""
    cols = [c for c in features if c in frame.columns and c != "grade"]
    return frame.groupby("grade")[cols].mean()
