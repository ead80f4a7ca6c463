"""The 学校カルテ, the support effects and the hardship screen against the synthetic city's
truth (evaluation only).

    .venv/bin/python bench/outputs_vs_truth.py [--home .toda]

Like bench/model_quality.py, this reads ``$TODA_HOME/truth``, which no asset ever reads. After
``outputs/school_karte``, ``outputs/support_effects`` and ``outputs/hardship_screen`` have been
materialised it reports:

* **Beating the odds**: the correlation (Pearson and Spearman) across schools between the pooled
  value-added estimate and the true practice effect (``truth/school_effects.csv``); the same
  for the per-year estimates (mean over years); how many schools are misclassified — a verdict
  ("above"/"below" the odds, interval clear of zero) against the sign of the true effect, and
  the sign of the estimate against the sign of the truth over all schools.
* **Support**: per action the naive, adjusted and true effect (``truth/support_effects.csv``,
  the multiplier on the risk-driven absence probability) side by side, whether the adjusted
  interval holds the truth and whether the direction (below/above 1) is right.
* **Screen**: recall of truly hard-pressed families (``family_hardship`` of the screened year)
  in the top 5 % and 10 % of the screen, against a random list (recall = the share listed);
  ties in the score are broken at random, so recall is its expectation over tie-breaks.

Writes ``$TODA_HOME/reports/outputs_vs_truth.json`` and prints tables.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def recall_at(score, positive, share: float) -> tuple[float, float]:
    """(recall, precision) of the top ``share`` by score, ties broken at random (expected)."""
    import numpy as np
    import pandas as pd

    df = pd.DataFrame({"s": np.asarray(score, float), "y": np.asarray(positive, bool)})
    k = int(round(share * len(df)))
    if k == 0 or not df.y.any():
        return float("nan"), float("nan")
    g = df.groupby("s", sort=True).agg(n=("y", "size"), pos=("y", "sum")).iloc[::-1]
    taken, hits = 0, 0.0
    for n, pos in zip(g.n, g.pos):
        take = min(n, k - taken)
        hits += pos * take / n
        taken += take
        if taken >= k:
            break
    return hits / df.y.sum(), hits / k


def beating_odds(con, truth) -> dict:
    import numpy as np
    import pandas as pd

    karte = con.execute("SELECT * FROM outputs.school_karte").df()
    effects = pd.read_csv(truth / "school_effects.csv")
    pooled = karte.drop_duplicates("school_code")[[
        "school_code", "beating_odds_pooled_estimate", "beating_odds_pooled_low",
        "beating_odds_pooled_high", "beating_odds_pooled_pupils"]].merge(effects, on="school_code")
    pooled = pooled.dropna(subset=["beating_odds_pooled_estimate"])
    est, true = pooled.beating_odds_pooled_estimate, pooled.practice_effect
    above, below = pooled.beating_odds_pooled_low > 0, pooled.beating_odds_pooled_high < 0
    per_year = karte.dropna(subset=["beating_odds_estimate"]).merge(effects, on="school_code")
    yearly = [float(np.corrcoef(g.beating_odds_estimate, g.practice_effect)[0, 1])
              for _, g in per_year.groupby("school_year") if len(g) >= 3]
    return {
        "schools": len(pooled),
        "pearson": float(np.corrcoef(est, true)[0, 1]),
        "spearman": float(est.rank().corr(true.rank())),
        "per_year_pearson_mean": float(np.mean(yearly)) if yearly else None,
        "per_year_pearson": yearly,
        "verdict_above": int(above.sum()), "verdict_below": int(below.sum()),
        "verdict_misclassified": int(((above & (true <= 0)) | (below & (true >= 0))).sum()),
        "sign_misclassified": int((np.sign(est) != np.sign(true)).sum()),
        "table": pooled[["school_code", "school_name", "beating_odds_pooled_estimate",
                         "beating_odds_pooled_low", "beating_odds_pooled_high",
                         "practice_effect", "hardship_rate"]].round(4).to_dict("records"),
    }


def support(con, truth) -> dict:
    import numpy as np
    import pandas as pd

    est = con.execute("SELECT * FROM outputs.support_effects").df()
    true = pd.read_csv(truth / "support_effects.csv")[["action", "effect_multiplier"]]
    t = est.merge(true, on="action", how="left")
    t["truth_inside"] = (t.ci_low <= t.effect_multiplier) & (t.effect_multiplier <= t.ci_high)
    t["naive_truth_inside"] = (t.naive_ci_low <= t.effect_multiplier) & (t.effect_multiplier <= t.naive_ci_high)
    # right direction: on the same side of 1 as the truth (no effect: the interval holds 1)
    t["direction_right"] = np.where(t.effect_multiplier < 1, t.adjusted_effect < 1,
                                    np.where(t.effect_multiplier > 1, t.adjusted_effect > 1,
                                             (t.ci_low <= 1) & (1 <= t.ci_high)))
    cols = ["action", "action_ja", "n_supported", "n_unmatched", "naive_effect", "naive_ci_low",
            "naive_ci_high", "adjusted_effect", "ci_low", "ci_high", "effect_multiplier",
            "truth_inside", "direction_right", "naive_truth_inside", "balance_pre_ratio"]
    return {"actions": len(t), "truth_inside": int(t.truth_inside.sum()),
            "direction_right": int(t.direction_right.sum()),
            "naive_truth_inside": int(t.naive_truth_inside.sum()),
            "table": t[cols].round(3).to_dict("records")}


def screen(con, truth, paths) -> dict:
    import pandas as pd

    from toda_platform.pseudonym import load_key, pseudonymise

    latest = con.execute("SELECT max(as_of_date) FROM outputs.hardship_screen").fetchone()[0]
    s = con.execute("SELECT pupil_id, screen_score FROM outputs.hardship_screen WHERE as_of_date = ?",
                    [latest]).df()
    year = latest.year if latest.month >= 4 else latest.year - 1
    py = pd.read_csv(truth / "pupil_years.csv", dtype={"student_number": str},
                     usecols=["student_number", "school_year", "family_hardship"])
    py = py[py.school_year == year]
    key = load_key(paths.pseudonym_key_file)
    py["pupil_id"] = [pseudonymise(key, n) for n in py.student_number]
    j = s.merge(py[["pupil_id", "family_hardship"]], on="pupil_id", how="inner")
    out = {"as_of_date": str(latest), "screened": len(s), "matched_to_truth": len(j),
           "hardship_share": float(j.family_hardship.mean())}
    for share in (0.05, 0.10):
        r, p = recall_at(j.screen_score, j.family_hardship > 0, share)
        out[f"recall_top{int(share * 100)}"] = r
        out[f"precision_top{int(share * 100)}"] = p
        out[f"random_recall_top{int(share * 100)}"] = share
        out[f"random_precision_top{int(share * 100)}"] = float(j.family_hardship.mean())
    return out


def evaluate(home: str | os.PathLike | None = None) -> dict:
    import duckdb

    from toda_platform.settings import Paths

    paths = Paths.from_env(home)
    truth = paths.truth
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        result = {"beating_odds": beating_odds(con, truth), "support": support(con, truth),
                  "screen": screen(con, truth, paths)}
    finally:
        con.close()
    out = paths.reports / "outputs_vs_truth.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    return result


def main() -> None:
    import pandas as pd

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--home", default=None, help="TODA_HOME (default: $TODA_HOME or ./.toda)")
    r = evaluate(ap.parse_args().home)
    pd.set_option("display.width", 200)
    b = r["beating_odds"]
    print(f"Beating the odds ({b['schools']} schools): Pearson {b['pearson']:.3f}, Spearman "
          f"{b['spearman']:.3f}; per-year Pearson mean {b['per_year_pearson_mean'] or float('nan'):.3f}; verdicts "
          f"{b['verdict_above']} above / {b['verdict_below']} below, misclassified "
          f"{b['verdict_misclassified']}; sign wrong {b['sign_misclassified']} of {b['schools']}")
    print(pd.DataFrame(b["table"]).to_string(index=False))
    s = r["support"]
    print(f"\nSupport: truth inside the adjusted interval {s['truth_inside']}/{s['actions']}, "
          f"right direction {s['direction_right']}/{s['actions']}, truth inside the naive "
          f"interval {s['naive_truth_inside']}/{s['actions']}")
    print(pd.DataFrame(s["table"]).to_string(index=False))
    c = r["screen"]
    print(f"\nScreen ({c['as_of_date']}, {c['matched_to_truth']} pupils, "
          f"{c['hardship_share']:.1%} in hardship): recall top 5 % {c['recall_top5']:.3f} "
          f"(random 0.05), top 10 % {c['recall_top10']:.3f} (random 0.10); precision top 5 % "
          f"{c['precision_top5']:.3f}, top 10 % {c['precision_top10']:.3f} (random {c['hardship_share']:.3f})")


if __name__ == "__main__":
    main()
