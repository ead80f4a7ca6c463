"""The effect of support (``outputs.support_effects``): does a case meeting's action lower the
non-illness absences that follow it?

Design: **weighting within strata of what the case meeting saw** (subclassification on the
observed signals, the ATT), one "trial" per case meeting.

* A case meeting is a (school, decision date) found in ``support_records``. Every pupil enrolled
  at that school that day who has not yet been supported this school year is a candidate: the
  pupils decided for at that meeting (their first decision of the year) are *supported*, the
  others are *not supported at that time*.
* What the meeting saw is computed as it stood on the day, from attendance rows known before
  the decision date (``known_date < decided_on``, the pipeline's point-in-time rule): absences
  in the last 20 school days, absences so far this school year and their rate, whether the pupil
  was counted 不登校 in last year's survey (known from May 1), and the hardship screen of the
  month's as-of date (ml/hardship.py) as the hardship signal.
* Candidates are grouped into strata of those signals (the recent absences one by one, the
  year so far and its rate in round-number bands — fine enough that the city's own banding rule
  (黄/橙/ピンク/赤) is constant inside a stratum). Inside a stratum, who is supported is a matter of
  the meeting's capacity, not of the pupil's hidden risk: the not-supported candidates are
  reweighted to the supported ones' distribution over strata (weight = supported / not
  supported in the stratum), which estimates the effect on those who were supported. A
  supported pupil whose stratum has no comparable pupil is matched in a coarser one (see
  :func:`strata`); ``n_unmatched`` counts those left over.
* Outcome: the daily non-illness absence rate (``absent_other`` per school day, 出席停止 and 忌引
  excluded) over the next :data:`WINDOW` school days after the decision. A not-supported
  candidate who is supported at a later meeting inside the window is counted only up to that
  decision (its later days are not "untreated").
* Effect = rate(supported) / weighted rate(not supported): below 1 means fewer absences.
  The **naive** effect compares the supported with every not-supported pupil of the same
  meetings, unweighted. Intervals: percentile bootstrap over pupils (all rows of a resampled
  pupil move together), the strata weights recomputed in every resample.

Why not difference-in-differences: pupils are chosen *because* their absences just rose, and
for many the rise is the start of a 不登校 trajectory, so supported and comparison pupils do not
share a trend (the supported would look worse after, whatever the support did) and a spike
partly regresses by itself (Ashenfelter's dip). Comparing pupils of the same meeting and the
same recent history removes both, as long as the meeting's choice among such pupils is not
driven by something it saw and we do not: ``balance_pre_ratio`` (the same estimator on the 20
school days *before* the decision) is the check that comes with every row.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

DESIGN = "strata_weighting_att"  # weighting within strata of what the meeting saw
WINDOW = 20           # school days after the decision that make up the outcome
PRE_WINDOW = 20       # school days before it: what "recent" means at the meeting
N_BOOT = 200
ACTIONS = ("monitoring", "home_visit", "sc_interview", "ssw", "support_classroom", "npo_referral")
ACTION_JA = {"monitoring": "見守り", "home_visit": "家庭訪問", "sc_interview": "SC面談",
             "ssw": "SSW連携", "support_classroom": "適応指導教室", "npo_referral": "NPO紹介"}

# Round-number bands of what the meeting saw: the absences of the last 20 school days one by one
# up to 10 (meetings look at exactly that count), then 10-12, 13-15, 16+; the year so far and
# its rate in bands.
RECENT_EDGES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 16)
SO_FAR_EDGES = (0, 3, 5, 8, 10, 12, 15, 20, 30)
RATE_EDGES = (0.0, 0.05, 0.10, 0.14, 0.20, 0.30)
HARDSHIP_FLAG = 2.0   # screen score from which the hardship signal counts as present


# ---------------------------------------------------------------------------------------------
# Candidates at each meeting (SQL in DuckDB)
# ---------------------------------------------------------------------------------------------

CANDIDATES_SQL = """
WITH day AS (
    SELECT pupil_id, school_code, date,
           year(date) - CASE WHEN month(date) < 4 THEN 1 ELSE 0 END AS sy,
           CAST(status IN ('absent_sick', 'absent_other') AS INTEGER) AS absent,
           CAST(status = 'absent_other' AS INTEGER) AS nonill,
           CAST(status NOT IN ('suspended', 'mourning') AS INTEGER) AS at_risk
    FROM staging.attendance_daily
), att AS (         -- the pupil's school days of the year, numbered, with running totals
    SELECT *, row_number() OVER w AS n, sum(absent) OVER w AS c_abs,
           sum(nonill) OVER w AS c_non, sum(at_risk) OVER w AS c_risk,
           count(*) OVER (PARTITION BY pupil_id, sy) AS last_n
    FROM day WINDOW w AS (PARTITION BY pupil_id, sy ORDER BY date ROWS UNBOUNDED PRECEDING)
), sup AS (
    SELECT pupil_id, school_code, decided_on, action,
           year(decided_on) - CASE WHEN month(decided_on) < 4 THEN 1 ELSE 0 END AS sy
    FROM staging.support_records
), first_sup AS (   -- each pupil's first decision of the school year (later ones escalate)
    SELECT pupil_id, sy, min(decided_on) AS first_on, arg_min(action, decided_on) AS first_action
    FROM sup GROUP BY ALL
), meetings AS (
    SELECT DISTINCT school_code, decided_on, sy FROM sup
), cand AS (        -- on the roll that day (an attendance row), not yet supported this year
    SELECT m.school_code, m.decided_on, m.sy, a.pupil_id, a.n AS i, a.last_n,
           a.c_abs - a.absent AS so_far, a.c_non - a.nonill AS non_so_far,
           a.c_risk - a.at_risk AS risk_so_far, a.c_non AS non_i, a.c_risk AS risk_i,
           f.first_on, f.first_action
    FROM meetings m
    JOIN att a ON a.school_code = m.school_code AND a.date = m.decided_on
    LEFT JOIN first_sup f ON f.pupil_id = a.pupil_id AND f.sy = m.sy
    WHERE f.first_on IS NULL OR f.first_on >= m.decided_on
), ends AS (        -- a later first decision ends the untreated days (its own day included)
    SELECT c.*, least(c.i + {window}, c.last_n,
                      CASE WHEN c.first_on > c.decided_on THEN coalesce(f.n, c.i) END) AS e
    FROM cand c
    ASOF LEFT JOIN att f ON f.pupil_id = c.pupil_id AND f.sy = c.sy AND f.date <= c.first_on
)
SELECT e.school_code, e.decided_on, e.sy AS school_year, e.pupil_id,
       coalesce(e.first_on = e.decided_on, false) AS supported,
       CASE WHEN e.first_on = e.decided_on THEN e.first_action END AS action,
       e.so_far - coalesce(b.c_abs, 0) AS recent,
       e.non_so_far - coalesce(b.c_non, 0) AS pre_nonill,
       e.risk_so_far - coalesce(b.c_risk, 0) AS pre_days,
       e.so_far, e.i - 1 AS elapsed,
       coalesce(p.c_non, e.non_i) - e.non_i AS post_nonill,
       coalesce(p.c_risk, e.risk_i) - e.risk_i AS post_days,
       coalesce(la.futoukou, false) AS futoukou_last_year
FROM ends e
LEFT JOIN att b ON b.pupil_id = e.pupil_id AND b.sy = e.sy AND b.n = e.i - 1 - {pre}
LEFT JOIN att p ON p.pupil_id = e.pupil_id AND p.sy = e.sy AND p.n = e.e
LEFT JOIN (         -- last year's survey, known from May 1 (before any meeting of the year)
    SELECT pupil_id, school_year + 1 AS sy, min(known_date) AS known_date,
           bool_or(main_reason = 'futoukou') AS futoukou
    FROM staging.long_absence_survey GROUP BY ALL
) la ON la.pupil_id = e.pupil_id AND la.sy = e.sy AND la.known_date < e.decided_on
"""

def candidates(con: duckdb.DuckDBPyConnection, hardship: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (meeting, candidate pupil) with what the meeting saw and what followed.

    Only attendance rows dated before the decision describe the meeting's view; a day's
    attendance is known that evening, so that is the knowledge-date rule. ``hardship`` (columns
    ``pupil_id``, ``as_of_date``, ``screen_score``) adds the screen of the latest as-of date not
    after the decision, when given.
    """
    frame = con.execute(CANDIDATES_SQL.format(pre=PRE_WINDOW, window=WINDOW)).df()
    frame["decided_on"] = pd.to_datetime(frame["decided_on"])
    frame["hardship_score"] = 0.0
    if hardship is not None and len(hardship) and len(frame):
        h = hardship[["pupil_id", "as_of_date", "screen_score"]].copy()
        h["as_of_date"] = pd.to_datetime(h["as_of_date"])
        f = frame.reset_index().sort_values("decided_on")
        joined = pd.merge_asof(f, h.sort_values("as_of_date"), left_on="decided_on",
                               right_on="as_of_date", by="pupil_id", direction="backward",
                               allow_exact_matches=True)
        frame.loc[joined["index"].to_numpy(), "hardship_score"] = joined["screen_score"].fillna(0).to_numpy()
    return frame


# ---------------------------------------------------------------------------------------------
# The estimator (pure numpy/pandas)
# ---------------------------------------------------------------------------------------------

def strata(frame: pd.DataFrame) -> np.ndarray:
    """Integer strata per row from what the meeting saw, finest first (levels × rows).

    A supported pupil is compared within the finest stratum that has comparable pupils: all
    signals; then without the hardship flag (it steers which action, hardly whether); then
    without the rate band as well. Rarer histories would otherwise drop out of the estimate."""
    recent = np.digitize(frame["recent"].to_numpy(), RECENT_EDGES)
    so_far = np.digitize(frame["so_far"].to_numpy(), SO_FAR_EDGES[1:])
    rate = np.digitize(frame["so_far"].to_numpy() / np.maximum(frame["elapsed"].to_numpy(), 1),
                       RATE_EDGES[1:])
    last = frame["futoukou_last_year"].to_numpy().astype(int)
    hard = (frame.get("hardship_score", pd.Series(0.0, index=frame.index)).to_numpy()
            >= HARDSHIP_FLAG).astype(int)
    coarse = (recent * 20 + so_far) * 2 + last
    codes = [(coarse * 10 + rate) * 2 + hard, coarse * 10 + rate, coarse]
    return np.vstack([np.unique(code, return_inverse=True)[1].reshape(-1) for code in codes])


@dataclass
class Prepared:
    """Arrays for one action: supported-with-it rows against not-supported rows."""

    treated: np.ndarray      # bool per row
    stratum: np.ndarray      # int per level and row (finest level first)
    pupil: np.ndarray        # int per row (the bootstrap unit)
    y: np.ndarray            # post non-illness absences
    days: np.ndarray         # post school days at risk
    y_pre: np.ndarray
    days_pre: np.ndarray
    n_pupils: int


def prepare(frame: pd.DataFrame, action: str) -> Prepared:
    rows = frame[(frame["action"] == action) | ~frame["supported"].astype(bool)]
    pupils = pd.factorize(frame["pupil_id"])[0]
    return Prepared(
        treated=(rows["action"] == action).to_numpy(),
        stratum=strata(rows) if len(rows) else np.zeros((3, 0), int), pupil=pupils[frame.index.get_indexer(rows.index)],
        y=rows["post_nonill"].to_numpy(float), days=rows["post_days"].to_numpy(float),
        y_pre=rows["pre_nonill"].to_numpy(float), days_pre=rows["pre_days"].to_numpy(float),
        n_pupils=int(pupils.max() + 1) if len(pupils) else 0)


QUANTITIES = 5   # per row: 1 (the weight itself), y, days, y_pre, days_pre
CHUNK = 25       # resamples whose stratum sums are computed at once (bounds the memory)


def _by_pupil(p: Prepared):
    """The rows summed per pupil: a sparse pupils × (2 × 5 × strata) matrix of the sums of
    (1, y, days, y_pre, days_pre) over each pupil's supported rows (first half) and comparable
    rows (second half) in each finest stratum. A resample's stratum sums are then one product
    with the pupils' multiplicities instead of a pass over every row (the multiplicities and the
    outcomes are integers, so the sums are exact either way)."""
    from scipy import sparse

    k = int(p.stratum[0].max()) + 1 if p.stratum.shape[1] else 0
    side = (~p.treated).astype(np.int64)
    values = np.stack([np.ones(len(p.y)), p.y, p.days, p.y_pre, p.days_pre])
    cols = (side * QUANTITIES + np.arange(QUANTITIES)[:, None]) * k + p.stratum[0]
    pupils = np.broadcast_to(p.pupil, values.shape)
    return sparse.csr_matrix((values.ravel(), (pupils.ravel(), cols.ravel())),
                             shape=(p.n_pupils, 2 * QUANTITIES * k)).T.tocsr()


def _ratios(p: Prepared, counts: np.ndarray, by_pupil=None) -> np.ndarray:
    """(naive, adjusted, adjusted on the pre-period, supported weight left unmatched) per row of
    pupil multiplicities ``counts`` (resamples × pupils; a row of ones for the data itself).

    The strata weights, per resample: a supported row is matched in the finest level of its
    strata that has comparable weight; the comparable rows of a stratum are reweighted by
    (matched supported weight / comparable weight) in it. The coarser levels group the finest
    strata, so everything follows from the finest strata's sums (:func:`_by_pupil`)."""
    from scipy import sparse

    by_pupil = _by_pupil(p) if by_pupil is None else by_pupil
    sums = np.asarray(by_pupil @ counts.T).T.reshape(len(counts), 2, QUANTITIES, -1)
    sup, com = sums[:, 0], sums[:, 1]                        # (resamples, 5, strata)
    n = len(counts)
    w_sup, w_com = np.zeros((n, QUANTITIES)), np.zeros((n, QUANTITIES))
    left = np.ones((n, sup.shape[-1]), bool)                 # supported strata not yet matched
    for level in p.stratum:                                  # finest first
        parent = np.zeros(sup.shape[-1], np.int64)
        parent[p.stratum[0]] = level                         # finest stratum -> this level's
        k = int(parent.max()) + 1 if len(parent) else 0
        # summing the finest strata into this level's: a sparse product (a dense one-hot
        # matrix goes through BLAS threads, slow on a busy machine)
        group = sparse.csr_matrix((np.ones(len(parent)), (parent, np.arange(len(parent)))),
                                  shape=(k, len(parent)))

        def by_level(x):
            # explicit row count: with no strata at all (a tiny city) reshape cannot infer -1
            rows = x.reshape(int(np.prod(x.shape[:-1])), x.shape[-1])
            return np.asarray(group @ rows.T).T.reshape(*x.shape[:-1], k)

        com_l = by_level(com)                                # (resamples, 5, strata of the level)
        has = com_l[:, 0] > 0
        ok = left & has[:, parent]
        sup_ok = sup * ok[:, None, :]
        n_t = by_level(sup_ok[:, 0])
        reweight = n_t / np.where(has, com_l[:, 0], 1.0)     # 0 where nothing is comparable
        w_com += (com_l * reweight[:, None, :]).sum(-1)
        w_sup += sup_ok.sum(-1)
        left &= ~ok

    def ratio(a, b, y, days):
        with np.errstate(all="ignore"):
            rt = a[:, y] / np.maximum(a[:, days], 1e-12)
            rc = b[:, y] / np.maximum(b[:, days], 1e-12)
            return np.where(rc > 0, rt / rc, np.nan)

    all_sup, all_com = sup.sum(-1), com.sum(-1)
    return np.column_stack([ratio(all_sup, all_com, 1, 2), ratio(w_sup, w_com, 1, 2),
                            ratio(w_sup, w_com, 3, 4), (sup[:, 0] * left).sum(-1)])


@dataclass
class Effect:
    action: str
    n_supported: int
    n_comparable: int
    n_unmatched: int
    naive_effect: float
    adjusted_effect: float
    ci_low: float
    ci_high: float
    naive_ci_low: float
    naive_ci_high: float
    balance_pre_ratio: float
    n_boot: int


def estimate(frame: pd.DataFrame, action: str, *, n_boot: int = N_BOOT, seed: int = 0,
             level: float = 0.95) -> Effect:
    """Naive and adjusted effect of ``action`` with percentile bootstrap intervals over pupils."""
    p = prepare(frame, action)
    by_pupil = _by_pupil(p)
    naive, adjusted, pre, unmatched = _ratios(p, np.ones((1, p.n_pupils)), by_pupil)[0]
    n_t = int(p.treated.sum())
    rng = np.random.default_rng(seed)
    boots = np.full((n_boot, 2), np.nan)
    for b in range(0, n_boot if n_t else 0, CHUNK):  # the draws of one resample after another
        counts = rng.multinomial(p.n_pupils, np.full(p.n_pupils, 1.0 / p.n_pupils),
                                 size=min(CHUNK, n_boot - b))
        boots[b:b + len(counts)] = _ratios(p, counts.astype(float), by_pupil)[:, :2]
    a = (1 - level) / 2
    with np.errstate(all="ignore"):
        lo = np.nanquantile(boots, a, axis=0) if n_t else [np.nan, np.nan]
        hi = np.nanquantile(boots, 1 - a, axis=0) if n_t else [np.nan, np.nan]
    return Effect(action, n_t, int((~p.treated).sum()), int(unmatched), naive, adjusted,
                  float(lo[1]), float(hi[1]), float(lo[0]), float(hi[0]), pre, n_boot)


def estimate_all(frame: pd.DataFrame, *, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """One row per action in :data:`ACTIONS` (those never decided get n_supported = 0, NaN)."""
    out = [estimate(frame, a, n_boot=n_boot, seed=seed + i).__dict__ for i, a in enumerate(ACTIONS)]
    table = pd.DataFrame(out)
    table.insert(1, "action_ja", table["action"].map(ACTION_JA))
    table["verdict_ja"] = [verdict_ja(r) for r in table.itertuples()]
    return table


def verdict_ja(r) -> str | None:
    """A plain sentence only where the interval clears 1."""
    if not (r.n_supported and np.isfinite(r.ci_low) and np.isfinite(r.ci_high)):
        return None
    pct = round(abs(1 - r.adjusted_effect) * 100)
    if r.ci_high < 1:
        return (f"{ACTION_JA[r.action]}の後、同じような状況で支援を受けなかった児童生徒と比べて"
                f"病気以外の欠席が約{pct}%少なくなっています。")
    if r.ci_low > 1:
        return (f"{ACTION_JA[r.action]}の後、同じような状況で支援を受けなかった児童生徒と比べて"
                f"病気以外の欠席が約{pct}%多くなっています。")
    return None


WHY_DIFFERENT_JA = ("単純な比較（支援あり対なし）では、支援は欠席が増え始めた子どもに選ばれるため、"
                    "支援そのものの効果と関係なく「支援を受けた子の方が欠席が多い」と見えます。"
                    "調整後の値は、ケース会議の時点で同じような欠席状況だった子ども同士を比べたものです。")


def effects_chart(table: pd.DataFrame, out_dir) -> "Path":
    """Naive beside adjusted effect per action (log scale, 1 = no difference), with intervals."""
    from pathlib import Path

    from ml.karte import japanese_plt

    plt = japanese_plt()
    t = table[table.n_supported > 0].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(t) + 1.8))
    y = np.arange(len(t))
    ax.errorbar(t.naive_effect, y + 0.15, xerr=[t.naive_effect - t.naive_ci_low, t.naive_ci_high - t.naive_effect],
                fmt="s", color="#999999", capsize=3, label="単純な比較（支援あり対なし）")
    ax.errorbar(t.adjusted_effect, y - 0.15, xerr=[t.adjusted_effect - t.ci_low, t.ci_high - t.adjusted_effect],
                fmt="o", color="#1f5fa8", capsize=3, label="調整後（同じような状況の子どもと比較）")
    ax.axvline(1, color="#333333", lw=1)
    ax.set_xscale("log")
    ax.set_yticks(y)
    ax.set_yticklabels([f"{a}（{n}人）" for a, n in zip(t.action_ja, t.n_supported)])
    ax.set_xlabel("支援後20日間の病気以外の欠席率の比（1未満＝欠席が減った、対数目盛）")
    ax.set_title("支援の効果", fontsize=12)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "support_effects.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def effects_page(con: duckdb.DuckDBPyConnection, reports_dir) -> dict:
    """What the board's page (and the karte's support panel) needs: the table, naive beside
    adjusted, the sentence on why they differ, and the chart's path (None if not drawn).
    ``con``: any database holding ``outputs.support_effects``; ``reports_dir``:
    ``$TODA_HOME/reports``."""
    from pathlib import Path

    table = con.execute("SELECT * FROM outputs.support_effects").df()
    chart = Path(reports_dir) / "support" / "support_effects.png"
    return {"effects": table, "why_naive_differs_ja": WHY_DIFFERENT_JA,
            "chart": chart if chart.exists() else None}
