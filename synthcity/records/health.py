"""学校健診: height, weight, 肥満度, vision and teeth, measured in April-June.

肥満度 is computed exactly as schools do, from the rounded height and weight and the
catalogue's 標準体重 = a × 身長 − b for the pupil's sex and age. The age is the age on April 1 of
the school year (学校保健統計's convention), which is grade + 5 for every pupil, so a quality
check can recompute 肥満度 from 性別 and 学年 alone. Hardship weakly raises 肥満度 and untreated
caries (a weak signal, as in the literature).
"""

from __future__ import annotations

from datetime import date
from typing import Iterator

import numpy as np
import pandas as pd

from toda_platform.catalogue import HEALTH_CHECKUP
from synthcity.city import City
from synthcity.rng import stream

# Mean height (cm) by age on April 1, and its SD (学校保健統計, rounded).
HEIGHT = {"M": {6: 116.7, 7: 122.6, 8: 128.3, 9: 133.8, 10: 139.3, 11: 145.5, 12: 152.8, 13: 160.0, 14: 165.3},
          "F": {6: 115.8, 7: 121.7, 8: 127.5, 9: 133.5, 10: 140.3, 11: 146.8, 12: 151.9, 13: 154.9, 14: 156.6}}
HEIGHT_SD = {6: 4.9, 7: 5.1, 8: 5.4, 9: 5.8, 10: 6.3, 11: 7.1, 12: 7.6, 13: 7.0, 14: 6.2}
CHECKUP_FROM = (4, 18)


def standard_weight(height: np.ndarray, sex: np.ndarray, age: np.ndarray) -> np.ndarray:
    """標準体重 = a × 身長 − b from the catalogue's table, by sex and age in years."""
    table = HEALTH_CHECKUP.constants["standard_weight"]
    ab = np.array([table[s][int(a)] for s, a in zip(sex, age)]).reshape(-1, 2)
    return ab[:, 0] * height - ab[:, 1]


def obesity_index(weight: np.ndarray, height: np.ndarray, sex: np.ndarray, age: np.ndarray) -> np.ndarray:
    """(実測体重 − 標準体重) / 標準体重 × 100."""
    standard = standard_weight(height, sex, age)
    return (weight - standard) / standard * 100


def health_checkup(city: City) -> Iterator[pd.DataFrame]:
    persons = city.persons
    lasting = stream(city.seed, "growth").normal(0, 1, (len(persons), 3))  # height, build, myopia
    for y in city.years:
        rng = stream(city.seed, "health", y)
        yd = city.days[y]
        rows = yd.rows
        n = len(rows)
        grade = rows.grade.to_numpy()
        # Each school examines its grades over the first weeks; a pupil absent that day comes
        # to the next make-up day the pupil attends.
        first = yd.cal.index_on_or_after(date(y, *CHECKUP_FROM))
        planned = first + (rows.school_a.to_numpy() * 3 + grade * 4) % 35
        attending = yd.attending()
        day = np.full(n, -1)
        for i in range(n):
            later = np.flatnonzero(attending[i, planned[i]:planned[i] + 20])
            if len(later):
                day[i] = planned[i] + later[0]
        seen = np.flatnonzero(day >= 0)
        r, d = seen, day[seen]
        pid = rows.pid.to_numpy()[r]
        sex = persons.sex.to_numpy()[pid]
        g = grade[r]
        age = g + 5
        hardship = rows.family_hardship.to_numpy()[r]
        k = len(r)
        mean_h = np.array([HEIGHT[s][a] for s, a in zip(sex, age)])
        sd_h = np.array([HEIGHT_SD[a] for a in age])
        height = (mean_h + sd_h * (lasting[pid, 0] + rng.normal(0, 0.15, k))).round(1)
        obesity = np.clip(-3 + 9 * (lasting[pid, 1] + rng.normal(0, 0.3, k)) + 4 * hardship, -35, 80)
        weight = (standard_weight(height, sex, age) * (1 + obesity / 100)).round(1)
        myopia = lasting[pid, 2] + 0.22 * (g - 5) + rng.normal(0, 0.35, k)
        right = np.digitize(myopia + rng.normal(0, 0.3, k), [0.6, 1.2, 1.8])
        left = np.digitize(myopia + rng.normal(0, 0.3, k), [0.6, 1.2, 1.8])
        bands = np.array(["A", "B", "C", "D"], dtype=object)
        not_measured = rng.random(k) < 0.01
        caries_u = rng.random(k)
        untreated = caries_u < 0.12 * (1 + 1.4 * hardship) * np.where(g <= 6, 1.0, 0.8)
        treated = ~untreated & (caries_u < 0.12 * (1 + 1.4 * hardship) + 0.25)
        caries = np.where(untreated, "untreated", np.where(treated, "treated", "none"))
        dmf = np.where(untreated, rng.integers(1, 7, k), np.where(treated, rng.integers(1, 5, k), 0))
        school = yd.school_on(d, r)
        frame = pd.DataFrame({
            "checkup_date": yd.cal.days[d],
            "school_code": city.codes(school),
            "pupil_id": city.numbers(pid),
            "grade": g,
            "sex": sex,
            "height_cm": height,
            "weight_kg": weight,
            "obesity_index": obesity_index(weight, height, sex, age).round(1),
            "vision_right": np.where(not_measured, None, bands[right]),
            "vision_left": np.where(not_measured, None, bands[left]),
            "caries": caries,
            "dmf": pd.array(np.where(rng.random(k) < 0.02, pd.NA, dmf), dtype="Int64"),
        })
        yield frame.iloc[np.lexsort((rows.seat.to_numpy()[r], rows.class_no.to_numpy()[r], g, school, d))]
