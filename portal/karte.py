"""What the 学校カルテ, support-effects and screen pages show, in words and formatted numbers.

The figures come from the page functions of ``ml.karte``, ``ml.support_effects`` and
``ml.hardship`` run on the serving snapshot (which carries their ``outputs.*`` tables); this
module only chooses what a reader who is not a data expert sees first and how each number is
written. Plain functions, no Django: tested with the pages.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache

import pandas as pd

from ml.aggregates import MIN_CELL
from ml.karte import TREND_CELLS

SUPPRESSED = "非公表（10人未満）"
NONE = "—"
LABELS = {cell: label for cell, label, _ in TREND_CELLS}
# the four figures shown first (the chart's panels); the other six are one click away
HEADLINE = ("futoukou_rate", "attendance_rate", "qu_share_satisfied", "overtime_mean_hours")
# how each cell is written: (multiplier, decimals, unit)
FORMATS = {
    "attendance_rate": (100, 1, "%"), "qu_share_satisfied": (100, 1, "%"),
    "qu_share_needs_support": (100, 1, "%"), "futoukou_rate": (1, 2, "%"),
    "long_absent_rate": (1, 2, "%"), "stress_high_stress_rate": (1, 1, "%"),
    "mood_mean": (1, 2, "（4段階）"), "ach_level_mean": (1, 2, ""),
    "ach_growth_same_pupils": (1, 2, ""), "overtime_mean_hours": (1, 1, "時間"),
}
NO_CLEAR_DIFFERENCE = ("同じような状況の学校と比べて、はっきりした差があるとは言えません"
                       "（95%区間が0をまたいでいます）。")
ASSOCIATION_NOTE = ("学校どうしを比べた「関連」です。どの取組が学力の伸びを生んだか（原因）を"
                    "示すものではありません。")


def _finite(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x)) and not pd.isna(x)


def fmt(cell: str, value) -> str:
    if not _finite(value):
        return NONE
    mult, dec, unit = FORMATS.get(cell, (1, 2, ""))
    return f"{float(value) * mult:.{dec}f}{unit}"


def signed(x, dec: int = 2) -> str:
    return f"{float(x):+.{dec}f}" if _finite(x) else NONE


def ratio(x) -> str:
    return f"{float(x):.2f}倍" if _finite(x) else NONE


@dataclass(frozen=True)
class Figure:
    cell: str
    label: str
    year: int | None
    year_complete: bool
    value: str
    city: str
    prev: str
    past: str
    suppressed: bool


def newest_first(rows: pd.DataFrame) -> list[dict]:
    return rows.sort_values("school_year", ascending=False).to_dict("records")


def figure(years: list[dict], cell: str) -> Figure:
    """The newest year in which ``cell`` is published or suppressed (a school year in progress
    has no 不登校 figure yet: the survey comes after it ends), beside the city and the past.
    ``years``: one school's karte rows, newest first (:func:`newest_first`)."""
    for r in years:
        suppressed, value = bool(r[f"{cell}_suppressed"]), r[cell]
        if suppressed or _finite(value):
            return Figure(cell, LABELS[cell], int(r["school_year"]), bool(r["year_complete"]),
                          SUPPRESSED if suppressed else fmt(cell, value), fmt(cell, r[f"{cell}_city"]),
                          fmt(cell, r[f"{cell}_prev"]), fmt(cell, r[f"{cell}_past_mean"]), suppressed)
    return Figure(cell, LABELS[cell], None, True, NONE, NONE, NONE, NONE, False)


def interval(est, low, high) -> str:
    if not _finite(est):
        return NONE
    return f"{signed(est, 3)}（95%区間 {signed(low, 3)} 〜 {signed(high, 3)}）"


def odds_word(low, high) -> str:
    """Three words for the board's table; only an interval clear of zero says above or below."""
    if _finite(low) and low > 0:
        return "上回る"
    if _finite(high) and high < 0:
        return "下回る"
    return "差があるとは言えない" if _finite(low) else NONE


def school_view(page: dict) -> dict:
    """From ``ml.karte.karte_page``: the headline figures, the rest, beating the odds (pooled and
    by year), the practices split into clear associations and the rest."""
    years: pd.DataFrame = page["years"]
    last = years.sort_values("school_year").iloc[-1]
    newest = newest_first(years)
    by_year = [{"year": int(r.school_year), "pupils": r.beating_odds_pupils,
                "suppressed": bool(r.beating_odds_suppressed),
                "text": interval(r.beating_odds_estimate, r.beating_odds_low, r.beating_odds_high),
                "verdict": r.beating_odds_verdict_ja if isinstance(r.beating_odds_verdict_ja, str) else None}
               for r in years.itertuples() if _finite(r.beating_odds_estimate) or r.beating_odds_suppressed]
    practices = page["practices"]
    clear = practices[(practices.ci_low > 0) | (practices.ci_high < 0)]
    return {
        "school_code": page["school_code"], "school_name": page["school_name"],
        "latest_year": page["latest_year"], "year_complete": bool(last.year_complete),
        "headline": [figure(newest, c) for c in HEADLINE],
        "others": [figure(newest, c) for c, _, _ in TREND_CELLS if c not in HEADLINE],
        "odds": {"text": interval(last.beating_odds_pooled_estimate, last.beating_odds_pooled_low,
                                  last.beating_odds_pooled_high),
                 "years": int(last.beating_odds_pooled_years) if _finite(last.beating_odds_pooled_years) else None,
                 "pupils": int(last.beating_odds_pooled_pupils) if _finite(last.beating_odds_pooled_pupils) else None,
                 "verdict": page["verdict_ja"] if isinstance(page["verdict_ja"], str) else None,
                 "estimated": _finite(last.beating_odds_pooled_estimate),
                 "by_year": by_year},
        "practices_clear": list(clear.wording_ja),
        "practices_other": list(practices.drop(clear.index).wording_ja),
    }


def effects_view(page: dict) -> dict:
    """From ``ml.support_effects.effects_page``: one row per action that was decided."""
    t: pd.DataFrame = page["effects"]
    rows = [{"action": r.action_ja, "n": f"{int(r.n_supported):,}", "naive": ratio(r.naive_effect),
             "adjusted": ratio(r.adjusted_effect),
             "interval": f"{ratio(r.ci_low)} 〜 {ratio(r.ci_high)}",
             "verdict": r.verdict_ja if isinstance(r.verdict_ja, str) else
             "同じような状況の子どもと比べて、はっきりした差は見られません。"}
            for r in t.itertuples() if r.n_supported]
    return {"rows": rows, "why": page["why_naive_differs_ja"],
            "never": [r.action_ja for r in t.itertuples() if not r.n_supported]}


def board_rows(karte: pd.DataFrame, names: dict[str, str]) -> list[dict]:
    """Every school side by side: beating the odds (pooled) and the headline figures."""
    by_school: dict[str, list[dict]] = {}
    for r in newest_first(karte):  # one conversion: per-school frames convert slowly
        by_school.setdefault(r["school_code"], []).append(r)
    out = []
    for code in sorted(by_school):
        recs = by_school[code]
        last = recs[0]
        est, low, high = (last[f"beating_odds_pooled_{k}"] for k in ("estimate", "low", "high"))
        out.append({"school_code": code, "school_name": names.get(code, last["school_name"]),
                    "school_type": last["school_type"], "odds": signed(est, 3),
                    "odds_ci": f"{signed(low, 3)} 〜 {signed(high, 3)}" if _finite(est) else "",
                    "odds_word": odds_word(low, high),
                    "figures": [figure(recs, c) for c in HEADLINE]})
    return out


def board_headline(rows: list[dict]) -> list[dict]:
    """The board table's column heads: each headline figure with the year most schools show."""
    out = []
    for i, cell in enumerate(HEADLINE):
        years = [r["figures"][i] for r in rows if r["figures"][i].year]
        common = max(years, key=lambda f: sum(g.year == f.year for g in years)) if years else None
        out.append({"label": LABELS[cell], "year": common.year if common else None,
                    "complete": common.year_complete if common else True})
    return out


def listed(pupils: pd.DataFrame, screened: int, *, top_share: float, min_score: float) -> pd.DataFrame:
    """The screen's rows a person is asked to look at: rank within the school's top share
    (ties included: ``rank_in_school`` gives equal scores one rank) and score at least min."""
    cut = max(1, math.ceil(top_share * screened))
    return pupils[(pupils.rank_in_school <= cut) & (pupils.screen_score >= min_score)]


def screen_counts(counts: list[dict]) -> list[dict]:
    """The board's view of the screen: per school, how many pupils reach the listing score,
    with counts under the small-cell threshold hidden."""
    return [{**c, "shown": c["n_listed"] >= MIN_CELL or c["n_listed"] == 0,
             "share": f"{100 * c['n_listed'] / c['n_screened']:.1f}%" if c["n_screened"] else NONE}
            for c in counts]


@lru_cache(maxsize=1)
def _indicators() -> dict[str, tuple[str, str]]:
    from ml.hardship import load_spec

    return {i.key: (i.label, i.why) for i in load_spec().indicators}


def indicators_in_words(keys_json: str | None) -> list[dict]:
    """The fired indicators (``indicators_json``: keys, strongest first) as label and reason. A
    key the indicator file no longer has is shown as its key (the list predates the change)."""
    known = _indicators()
    return [{"label": known.get(k, (k, ""))[0], "why": known.get(k, (k, ""))[1]}
            for k in json.loads(keys_json or "[]")]
