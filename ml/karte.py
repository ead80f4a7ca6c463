"""The 学校カルテ (``outputs.school_karte``): each school and year beside the city and its own
past, and whether it "beats the odds" on achievement growth.

**Trends.** From ``marts.school_aggregates`` (already small-cell suppressed): each figure of
:data:`TREND_CELLS` for the school, the city average of schools of the same type (小 or 中) that
year, the school's previous year and the mean of its earlier years. The city average is taken
over the *published* cells only: an average over raw figures would let a reader recover a
hidden cell by subtraction.

**Beating the odds** (a value-added model). The outcome is the growth of the same pupils year
on year: this year's 県学調 scale score of a pupil in a subject, given the same pupil's score
in that subject last year (and the mean of last year's subjects), standardised within each
year, subject and grade, with a slope on the prior per year, subject and grade; plus the
school's context that year (就学援助率, 特別支援教育対象, 日本語指導 — 児童扶養手当 and 生活保護
are left out: they move with 就学援助 almost one for one across 18 schools, and two more
school-level regressors would mostly absorb chance). The model has no school term: a
school's estimate is the mean residual of its pupils (each pupil's subjects averaged first, so
a pupil counts once), i.e. how much more its pupils grew than pupils with the same prior
attainment in schools of the same context. Unit: standard deviations of the score. Interval:
normal, from the spread of its pupils' residuals (pupils clustered over years in the pooled
estimate). Per school-year estimates and one pooled over all years; a school-year with fewer
than :data:`ml.aggregates.MIN_CELL` pupils gets no estimate. The verdict in words is given only
where the interval clears zero.

**Practices.** Which school-level practices go with beating the odds: the Pearson correlation
across schools between the pooled estimate and each practice's mean over the years (Q-U
climate, teacher-survey items, stress check, overtime), with a Fisher-z interval. This is
association across a handful of schools, worded as such — not what causes what.
"""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from ml.aggregates import MIN_CELL

Z = 1.959963984540054
TABLE = "outputs.school_karte"
PRACTICES_TABLE = "outputs.karte_practices"
CONTEXT = ("school_aid_rate", "child_allowance_rate", "welfare_rate", "special_needs_rate",
           "japanese_support_rate")

# (cell of marts.school_aggregates, label in Japanese, higher is better?)
TREND_CELLS = (
    ("attendance_rate", "出席率", True),
    ("futoukou_rate", "不登校の割合（%）", False),
    ("long_absent_rate", "長期欠席の割合（%）", False),
    ("qu_share_satisfied", "Q-U 学級生活満足群の割合", True),
    ("qu_share_needs_support", "Q-U 要支援群の割合", False),
    ("mood_mean", "心の健康観察（気分の平均）", True),
    ("ach_level_mean", "県学調 学力レベルの平均", True),
    ("ach_growth_same_pupils", "学力レベルの伸び（同じ児童生徒）", True),
    ("stress_high_stress_rate", "教員の高ストレス者の割合（%）", False),
    ("overtime_mean_hours", "教員の時間外勤務（月平均時間）", False),
)

# (cell of marts.school_aggregates, label in Japanese) — school-level practices for the association
PRACTICES = (
    ("teacher_lesson_improvement", "授業改善の取組（教員質問紙）"),
    ("teacher_collaboration", "教員同士の協働（教員質問紙）"),
    ("teacher_shared_guidance", "指導方針の共有（教員質問紙）"),
    ("teacher_school_climate", "学校の雰囲気（教員質問紙）"),
    ("teacher_ict_use", "ICTの活用（教員質問紙）"),
    ("qu_share_satisfied", "Q-U 学級生活満足群の割合"),
    ("qu_share_needs_support", "Q-U 要支援群の割合"),
    ("stress_high_stress_rate", "教員の高ストレス者の割合"),
    ("stress_support", "職場の支援（ストレスチェック）"),
    ("overtime_mean_hours", "教員の時間外勤務"),
)


# ---------------------------------------------------------------------------------------------
# Value added
# ---------------------------------------------------------------------------------------------

GROWTH_SQL = """
WITH a AS (
    SELECT pupil_id, school_year, school_code, grade, subject, avg(scale_score) AS score
    FROM staging.prefectural_achievement WHERE scale_score IS NOT NULL GROUP BY ALL
), prior_mean AS (
    SELECT pupil_id, school_year, avg(score) AS prior_mean FROM a GROUP BY ALL
), ctx AS (
    SELECT school_code, school_year, {ctx} FROM staging.school_context GROUP BY ALL
)
SELECT c.pupil_id, c.school_year, c.school_code, c.grade, c.subject, c.score,
       p.score AS prior, pm.prior_mean, {ctx_cols}
FROM a c
JOIN a p ON p.pupil_id = c.pupil_id AND p.subject = c.subject AND p.school_year = c.school_year - 1
JOIN prior_mean pm ON pm.pupil_id = c.pupil_id AND pm.school_year = c.school_year - 1
LEFT JOIN ctx ON ctx.school_code = c.school_code AND ctx.school_year = c.school_year
"""


def growth_pairs(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per pupil, subject and year with last year's score of the same pupil."""
    sql = GROWTH_SQL.format(ctx=", ".join(f"avg({c}) AS {c}" for c in CONTEXT),
                            ctx_cols=", ".join(f"ctx.{c}" for c in CONTEXT))
    return con.execute(sql).df()


def _z(x: pd.Series, groups: list[pd.Series]) -> pd.Series:
    g = x.groupby(groups)
    return (x - g.transform("mean")) / g.transform("std").replace(0, np.nan)


def residuals(pairs: pd.DataFrame) -> pd.DataFrame:
    """Each pair's residual from: score ~ prior (slope per year, subject, grade) + prior mean +
    school context, all scores standardised within year, subject and grade."""
    df = pairs.dropna(subset=["score", "prior", "prior_mean"]).copy()
    if df.empty:
        return df.assign(resid=pd.Series(dtype=float))
    keys = [df.school_year, df.subject, df.grade]
    df["y"] = _z(df.score, keys)
    df["x"] = _z(df.prior, keys)
    df["xm"] = _z(df.prior_mean, keys)
    df = df.dropna(subset=["y", "x", "xm"])
    cell = pd.factorize(df.school_year.astype(str) + "|" + df.subject.astype(str) + "|" + df.grade.astype(str))[0]
    k = cell.max() + 1
    parts = [np.eye(k)[cell], np.eye(k)[cell] * df.x.to_numpy()[:, None], df[["xm"]].to_numpy()]
    parts.append(context_index(df)[:, None])
    X = np.hstack(parts)
    beta, *_ = np.linalg.lstsq(X, df.y.to_numpy(), rcond=None)
    df["resid"] = df.y.to_numpy() - X @ beta
    return df


def context_index(df: pd.DataFrame) -> np.ndarray:
    """One number per row for the school's context: the first principal component of the
    standardised context ratios (sign: higher = more 就学援助). One regressor, not five: the
    model has no school term, so every school-level regressor is fitted on a handful of schools
    and absorbs part of their real differences (on a 6-school test city, three ratios as
    separate regressors cut the correlation of estimated and true school effects from 0.87
    without context to 0.15; this index gives 0.38 there, because there the school with the most
    就学援助 happens to have the best practice — a chance the adjustment cannot tell apart)."""
    cols = [c for c in CONTEXT if c in df]
    if not cols:
        return np.zeros(len(df))
    v = df[cols].astype(float)
    v = v.fillna(v.groupby(df.school_year).transform("mean")).fillna(v.mean()).fillna(0.0)
    z = ((v - v.mean()) / v.std().replace(0, 1.0).fillna(1.0)).to_numpy()
    if len(cols) == 1:
        return z[:, 0]
    _, _, vt = np.linalg.svd(z - z.mean(axis=0), full_matrices=False)
    pc = z @ vt[0]
    return pc if np.corrcoef(pc, z[:, 0])[0, 1] >= 0 or not np.isfinite(pc).all() else -pc


def _mean_interval(values: np.ndarray, clusters: np.ndarray | None = None) -> tuple[float, float, int]:
    """Mean, its standard error (cluster-robust when clusters are given) and the cluster count."""
    n = len(values)
    m = float(values.mean())
    if clusters is None:
        return m, float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan, n
    sums = pd.Series(values - m).groupby(clusters).sum().to_numpy()
    g = len(sums)
    se = math.sqrt(g / max(g - 1, 1) * (sums ** 2).sum()) / n if g > 1 else math.nan
    return m, se, g


def verdict_ja(low: float, high: float) -> str | None:
    """Plain words only where the interval clears zero."""
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return None
    if low > 0:
        return ("同じような状況（前の年の学力・学校の家庭環境）の学校と比べて、"
                "子どもたちの学力の伸びが大きい学校です。")
    if high < 0:
        return ("同じような状況（前の年の学力・学校の家庭環境）の学校と比べて、"
                "子どもたちの学力の伸びが小さい学校です。")
    return None


def beating_odds(pairs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per school and year, pooled per school) estimates with 95 % intervals."""
    df = residuals(pairs)
    pupil_year = df.groupby(["school_code", "school_year", "pupil_id"], as_index=False)["resid"].mean()
    rows = []
    for (school, year), g in pupil_year.groupby(["school_code", "school_year"]):
        n = len(g)
        if n < MIN_CELL:
            rows.append({"school_code": school, "school_year": year, "n_pupils": n,
                         "estimate": np.nan, "se": np.nan, "suppressed": True})
            continue
        m, se, _ = _mean_interval(g.resid.to_numpy())
        rows.append({"school_code": school, "school_year": year, "n_pupils": n, "estimate": m,
                     "se": se, "suppressed": False})
    per_year = pd.DataFrame(rows, columns=["school_code", "school_year", "n_pupils", "estimate", "se",
                                           "suppressed"])
    pooled_rows = []
    for school, g in pupil_year.groupby("school_code"):
        if g.pupil_id.nunique() < MIN_CELL:
            continue
        m, se, n = _mean_interval(g.resid.to_numpy(), g.pupil_id.to_numpy())
        pooled_rows.append({"school_code": school, "n_pupils": n, "n_years": g.school_year.nunique(),
                            "estimate": m, "se": se})
    pooled = pd.DataFrame(pooled_rows, columns=["school_code", "n_pupils", "n_years", "estimate", "se"])
    for t in (per_year, pooled):
        t["low"] = t.estimate - Z * t.se
        t["high"] = t.estimate + Z * t.se
        t["verdict_ja"] = [verdict_ja(lo, hi) for lo, hi in zip(t.low, t.high)]
    return per_year, pooled


# ---------------------------------------------------------------------------------------------
# Trends beside the city and the school's own past
# ---------------------------------------------------------------------------------------------

def trends(aggregates: pd.DataFrame) -> pd.DataFrame:
    """Per school and year: each trend cell, the city average of the same school type (over
    published cells, weighted by enrolment), the previous year and the mean of earlier years."""
    a = aggregates.sort_values(["school_code", "school_year"]).copy()
    w = a["enrolment"].astype(float).fillna(0.0) if "enrolment" in a else pd.Series(1.0, index=a.index)
    out = a[["school_code", "school_name", "school_type", "school_year", "year_complete"]].copy()
    for cell, _, _ in TREND_CELLS:
        v = a[cell].astype(float)
        shown = v.notna()
        num = (v.fillna(0) * w * shown).groupby([a.school_type, a.school_year]).transform("sum")
        den = (w * shown).groupby([a.school_type, a.school_year]).transform("sum")
        out[cell] = v
        out[f"{cell}_city"] = num / den.replace(0, np.nan)
        out[f"{cell}_prev"] = v.groupby(a.school_code).shift(1)
        past = v.groupby(a.school_code).transform(lambda s: s.expanding().mean().shift(1))
        out[f"{cell}_past_mean"] = past
        out[f"{cell}_suppressed"] = a.get(f"{cell}_suppressed", pd.Series(False, index=a.index))
    return out


def karte_table(aggregates: pd.DataFrame, per_year: pd.DataFrame, pooled: pd.DataFrame) -> pd.DataFrame:
    t = trends(aggregates)
    va = per_year.rename(columns={"estimate": "beating_odds_estimate", "low": "beating_odds_low",
                                  "high": "beating_odds_high", "verdict_ja": "beating_odds_verdict_ja",
                                  "n_pupils": "beating_odds_pupils",
                                  "suppressed": "beating_odds_suppressed"}).drop(columns="se")
    po = pooled.rename(columns={"estimate": "beating_odds_pooled_estimate",
                                "low": "beating_odds_pooled_low", "high": "beating_odds_pooled_high",
                                "verdict_ja": "beating_odds_pooled_verdict_ja",
                                "n_pupils": "beating_odds_pooled_pupils",
                                "n_years": "beating_odds_pooled_years"}).drop(columns="se")
    out = t.merge(va, on=["school_code", "school_year"], how="left").merge(po, on="school_code", how="left")
    out["beating_odds_suppressed"] = out["beating_odds_suppressed"].astype("boolean").fillna(False)
    return out.sort_values(["school_year", "school_code"]).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Practices that go with beating the odds (association)
# ---------------------------------------------------------------------------------------------

def practices_association(aggregates: pd.DataFrame, pooled: pd.DataFrame) -> pd.DataFrame:
    means = aggregates.groupby("school_code")[[c for c, _ in PRACTICES]].mean()
    est = pooled.set_index("school_code").estimate
    rows = []
    for cell, label in PRACTICES:
        both = pd.concat([means[cell], est], axis=1, join="inner").dropna()
        n = len(both)
        r = float(np.corrcoef(both.iloc[:, 0], both.iloc[:, 1])[0, 1]) if n >= 3 and both.iloc[:, 0].std() > 0 else np.nan
        lo = hi = np.nan
        if n > 3 and np.isfinite(r):
            zr, s = math.atanh(max(min(r, 0.999999), -0.999999)), 1 / math.sqrt(n - 3)
            lo, hi = math.tanh(zr - Z * s), math.tanh(zr + Z * s)
        rows.append({"practice": cell, "label_ja": label, "n_schools": n, "correlation": r,
                     "ci_low": lo, "ci_high": hi,
                     "wording_ja": association_ja(label, r, lo, hi)})
    return pd.DataFrame(rows)


def association_ja(label: str, r: float, lo: float, hi: float) -> str:
    if not np.isfinite(r):
        return f"{label}：学校数が少なく、関連を示せません。"
    if np.isfinite(lo) and lo > 0:
        s = "高い学校ほど、学力の伸びが期待を上回る傾向があります"
    elif np.isfinite(hi) and hi < 0:
        s = "高い学校ほど、学力の伸びが期待を下回る傾向があります"
    else:
        s = "学力の伸びとのはっきりした関連は見られません"
    return f"{label}：{s}（相関 {r:+.2f}。関連であり、原因とは限りません）。"


# ---------------------------------------------------------------------------------------------
# Charts (matplotlib with Japanese fonts) and the page's data
# ---------------------------------------------------------------------------------------------

def japanese_plt():
    """pyplot on the Agg backend with a Japanese font (matplotlib-fontja)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import matplotlib_fontja  # noqa: F401  (registers IPAexGothic and makes it the default)

    return plt


def school_chart(karte: pd.DataFrame, school_code: str, out_dir: Path) -> Path:
    """One PNG per school: four panels, the school against the city (same type) year by year."""
    plt = japanese_plt()
    s = karte[karte.school_code == school_code].sort_values("school_year")
    name = s.school_name.iloc[0] if len(s) else school_code
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    panels = [("futoukou_rate", "不登校の割合（%）"), ("attendance_rate", "出席率"),
              ("qu_share_satisfied", "Q-U 学級生活満足群の割合"), ("overtime_mean_hours", "教員の時間外勤務（時間/月）")]
    for ax, (cell, title) in zip(axes.ravel()[[0, 1, 3]], [panels[0], panels[1], panels[3]]):
        ax.plot(s.school_year, s[cell], "o-", color="#1f5fa8", label="本校")
        ax.plot(s.school_year, s[f"{cell}_city"], "s--", color="#999999", label="市平均（同じ校種）")
        ax.set_title(title)
        ax.set_xticks(list(s.school_year))
        ax.legend(fontsize=8)
    ax = axes[1, 0]
    ok = s.beating_odds_estimate.notna()
    ax.axhline(0, color="#999999", lw=1)
    ax.errorbar(s.school_year[ok], s.beating_odds_estimate[ok],
                yerr=[s.beating_odds_estimate[ok] - s.beating_odds_low[ok],
                      s.beating_odds_high[ok] - s.beating_odds_estimate[ok]],
                fmt="o", color="#c0392b", capsize=4)
    ax.set_title("学力の伸び：同じような状況の学校との差（標準偏差）")
    ax.set_xticks(list(s.school_year))
    fig.suptitle(f"学校カルテ　{name}", fontsize=14)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{school_code}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def board_chart(pooled: pd.DataFrame, names: dict[str, str], out_dir: Path) -> Path:
    """Every school side by side: the pooled beating-the-odds estimate with its interval."""
    plt = japanese_plt()
    p = pooled.sort_values("estimate").reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(p) + 1.5))
    colors = ["#1f5fa8" if lo > 0 else "#c0392b" if hi < 0 else "#888888" for lo, hi in zip(p.low, p.high)]
    for i, (est, lo, hi, col) in enumerate(zip(p.estimate, p.low, p.high, colors)):
        ax.errorbar([est], [i], xerr=[[est - lo], [hi - est]], fmt="o", color=col, capsize=3)
    ax.axvline(0, color="#999999", lw=1)
    ax.set_yticks(range(len(p)))
    ax.set_yticklabels([names.get(c, c) for c in p.school_code])
    ax.set_xlabel("学力の伸び：同じような状況の学校との差（標準偏差、95%区間）")
    ax.set_title("学力の伸び（全学校・全年度）　青：上回る　赤：下回る　灰：差があるとは言えない", fontsize=10)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "beating_odds.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def karte_page(con: duckdb.DuckDBPyConnection, school_code: str, reports_dir: Path | str) -> dict:
    """What the page ``/schools/<school_code>/karte/`` needs.

    ``con``: a connection to any database holding ``outputs.school_karte``,
    ``outputs.karte_practices`` and ``outputs.support_effects`` (the warehouse or a serving
    snapshot); ``reports_dir``: ``$TODA_HOME/reports``. Returns the school's rows by year
    (figures, city average, previous year, interval and verdict), the latest year's key figures
    as (label, school, city, previous year, higher-is-better) tuples, the practices'
    associations, the support effects and the chart paths (None where not drawn).
    """
    rows = con.execute(f"SELECT * FROM {TABLE} WHERE school_code = ? ORDER BY school_year",
                       [school_code]).df()
    if rows.empty:
        raise KeyError(f"no 学校カルテ for school {school_code}")
    last = rows.iloc[-1]
    key_figures = [(label, last[cell], last[f"{cell}_city"], last[f"{cell}_prev"], better)
                   for cell, label, better in TREND_CELLS]
    practices = con.execute(f"SELECT * FROM {PRACTICES_TABLE} ORDER BY abs(correlation) DESC").df()
    support = con.execute("SELECT * FROM outputs.support_effects ORDER BY action").df() \
        if _has(con, "outputs", "support_effects") else None
    chart = Path(reports_dir) / "karte" / f"{school_code}.png"
    board = Path(reports_dir) / "karte" / "beating_odds.png"
    return {"school_code": school_code, "school_name": last.school_name, "years": rows,
            "latest_year": int(last.school_year), "key_figures": key_figures,
            "verdict_ja": last.beating_odds_pooled_verdict_ja, "practices": practices,
            "support_effects": support,
            "chart": chart if chart.exists() else None, "board_chart": board if board.exists() else None}


def board_page(con: duckdb.DuckDBPyConnection, reports_dir: Path | str) -> dict:
    """What the board's page needs: every school side by side (latest year), the chart."""
    latest = con.execute(f"SELECT max(school_year) FROM {TABLE}").fetchone()[0]
    rows = con.execute(f"SELECT * FROM {TABLE} WHERE school_year = ? ORDER BY school_type, school_code",
                       [latest]).df()
    board = Path(reports_dir) / "karte" / "beating_odds.png"
    return {"school_year": latest, "schools": rows, "board_chart": board if board.exists() else None}


def _has(con, schema: str, table: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? "
                            "AND table_name = ?", [schema, table]).fetchone()[0])
