"""The city's schools: codes, names, districts, feeder pattern and each school's hidden nature.

Hidden per school (written to truth/school_effects.csv, never to landing):

* ``aid_rate`` — share of households in hardship in the district (what 就学援助 measures);
  pupils' own hardship is drawn from it, so school context and family hardship agree;
* ``practice_effect`` — extra yearly achievement growth (in ability SD) the school's teaching
  adds beyond its context: what a 学校カルテ should reveal among schools in hard circumstances;
* ``climate`` — standardised school climate risk: more bullying and more drift toward 不登校.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from synthcity.rng import stream
from synthcity.towns import TOWNS, Town

PREFECTURE = "11"  # 埼玉県
PUBLIC = "2"  # 設置区分: 公立


def school_code(kind: str, number: int) -> str:
    """A MEXT-style 学校コード: 学校種 (B1/C1), 都道府県 (11), 設置区分 (2), 7-digit number, check digit.

    MEXT publishes the layout and that the check digit is 'mod 10' but not its weights; ours is a
    mod-10 check with weights 3,1 over the 11 digits, so codes are self-consistent but synthetic.
    """
    body = f"{kind}1{PREFECTURE}{PUBLIC}{number:07d}"
    digits = [int(c) for c in body[1:]]
    check = (10 - sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(digits)) % 10) % 10
    return f"{body}{check}"


def _name(stems: tuple[str, ...], i: int, extra: str) -> str:
    return stems[i] if i < len(stems) else f"{extra}{i + 1}"


def build_schools(seed: int, n_elementary: int, n_junior_high: int, town: Town = TOWNS["toda"]) -> pd.DataFrame:
    """One row per school (index = school number used everywhere in the simulation)."""
    if n_elementary < 1 or n_junior_high < 1 or n_junior_high > n_elementary:
        raise ValueError("need at least one school of each type and no more junior highs than elementary schools")
    rng = stream(seed, "schools")
    feeder = (np.arange(n_elementary) * n_junior_high) // n_elementary  # ~2 elementary per junior high
    rows = []
    districts = town.districts
    towns_of = [districts[i::n_elementary] for i in range(n_elementary)] if n_elementary <= len(districts) else None
    for i in range(n_elementary):
        towns = towns_of[i] if towns_of else (districts[i % len(districts)],)
        rows.append({"school_code": school_code("B", town.elementary_number + i + 1),
                     "school_name": f"{_name(town.elementary, i, town.extra)}小学校", "school_type": "elementary",
                     "feeds": int(feeder[i]), "towns": towns})
    for j in range(n_junior_high):
        rows.append({"school_code": school_code("C", town.junior_high_number + j + 1),
                     "school_name": f"{_name(town.junior_high, j, town.extra)}中学校", "school_type": "junior_high",
                     "feeds": -1, "towns": ()})
    schools = pd.DataFrame(rows)
    schools.attrs["address_city"] = town.address_city
    elem = schools.school_type == "elementary"
    jh_index = np.flatnonzero(~elem)
    schools.loc[elem, "feeds"] = jh_index[feeder]
    schools["feeds"] = schools["feeds"].astype(int)
    n = len(schools)
    schools["size_weight"] = rng.uniform(0.7, 1.3, n)
    # District hardship: 5-30 %, mean ~14 %, spread evenly so that context really differs between schools.
    rank = rng.permutation(n)
    schools["aid_rate"] = 0.05 + 0.25 * ((rank + 0.5) / n) ** 1.6
    schools["practice_effect"] = rng.normal(0.0, 0.06, n)
    schools["climate"] = -0.4 * schools["practice_effect"] / 0.06 + 0.9 * rng.normal(0.0, 1.0, n)
    for j in jh_index:  # a junior high's context is that of the districts feeding it
        feeders = elem & (schools.feeds == j)
        w = schools.loc[feeders, "size_weight"]
        schools.loc[j, "aid_rate"] = float(np.average(schools.loc[feeders, "aid_rate"], weights=w))
        schools.loc[j, "size_weight"] = float(w.sum()) / max(1, int(feeders.sum()))
    schools["district"] = [
        "・".join(t[:3]) if st == "elementary" else f"{name}区"
        for t, st, name in zip(schools.towns, schools.school_type, schools.school_name)
    ]
    return schools
