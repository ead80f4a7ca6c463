"""Before school: 乳幼児健診 and 保育園等入所, held by welfare departments and keyed by 宛名番号.

Only children born in the city have them. Both are weak signals by design: families in hardship
miss more checkups and get a higher admission adjustment index (ひとり親, 生活保護), and early
development findings are slightly more common among children who later struggle academically.
"""

from __future__ import annotations

from datetime import date
from typing import Iterator

import numpy as np
import pandas as pd

from synthcity.calendar import holidays
from synthcity.city import City
from synthcity.rng import stream

# (code, earliest and latest age in days at the checkup, base no-show rate)
CHECKUPS = (("4m", 120, 150, 0.04), ("18m", 548, 575, 0.06), ("3y", 1218, 1260, 0.08))
FACILITIES = ("licensed", "kodomoen", "kindergarten", "unlicensed", "none")


def _early_state(city: City) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """City-born persons, their family hardship and their ability in 小1."""
    born = city.persons[city.persons.born_in_city]
    first_grade = city.latent.chain.iloc[born.index.to_numpy() * 9]
    return born, first_grade.family_hardship.to_numpy(), first_grade.ability.to_numpy()


def _finding(rng, k: int, observe, refer) -> np.ndarray:
    u = rng.random(k)
    return np.where(u < refer, "refer", np.where(u < refer + observe, "observe", "none")).astype(object)


def infant_checkup(city: City) -> Iterator[pd.DataFrame]:
    born, hardship, ability = _early_state(city)
    rng = stream(city.seed, "infant")
    birth = born.birth_date.to_numpy().astype("datetime64[D]")
    years = range(int(birth.min().astype(object).year), int(birth.max().astype(object).year) + 5)
    closed = np.array(sorted(d for y in years for d in holidays(y)), dtype="datetime64[D]")
    k = len(born)
    frames = []
    for code, lo, hi, no_show in CHECKUPS:
        scheduled = birth + rng.integers(lo, hi + 1, k).astype("timedelta64[D]")
        held = np.busday_offset(scheduled, 0, roll="forward", weekmask="0111000", holidays=closed)
        attended = rng.random(k) >= no_show * (1 + 1.5 * hardship)
        late_developer = np.clip(-ability - 1, 0, 1)
        findings = {
            "development": _finding(rng, k, 0.06 + 0.05 * late_developer, 0.015),
            "language": (_finding(rng, k, 0.08 + 0.06 * late_developer, 0.01) if code != "4m"
                         else np.full(k, None, dtype=object)),
            "sight_hearing": _finding(rng, k, 0.03, 0.01),
            "dental": (_finding(rng, k, 0.05 + 0.05 * hardship, 0.01) if code != "4m"
                       else np.full(k, None, dtype=object)),
        }
        referred = np.zeros(k, bool)
        for values in findings.values():
            referred |= values == "refer"
        frame = pd.DataFrame({
            "resident_id": born.resident_number.to_numpy(), "name": born.name.to_numpy(),
            "birth_date": birth, "checkup": code, "checkup_date": held, "attended": attended,
        })
        for name, values in findings.items():
            frame[name] = np.where(attended, values, None)
        frame["referred"] = pd.array(np.where(attended, referred, pd.NA), dtype="boolean")
        frames.append(frame)
    yield pd.concat(frames, ignore_index=True).sort_values(["checkup_date", "resident_id"], kind="stable")


def _dates(years, months, day: int) -> np.ndarray:
    months = np.broadcast_to(months, np.shape(years))
    return np.array([date(int(y), int(m), day) for y, m in zip(years, months)], dtype="datetime64[D]")


def nursery_enrollment(city: City) -> Iterator[pd.DataFrame]:
    born, hardship, _ = _early_state(city)
    rng = stream(city.seed, "nursery")
    k = len(born)
    entry = born.entry_year.to_numpy()  # April of 小1
    birth_year = entry - 7  # school year of birth: born April 2 of this year - April 1 of the next
    single = rng.random(k) < np.where(hardship > 0, 0.5, 0.05)
    probs = np.where(hardship[:, None] > 0, [0.65, 0.10, 0.15, 0.05, 0.05], [0.50, 0.10, 0.30, 0.05, 0.05])
    facility = (rng.random(k)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
    class_age = np.where(facility == 2, rng.choice([3, 4], k, p=[0.85, 0.15]),  # 幼稚園 from 年少 (or 年中)
                         rng.choice([0, 1, 2], k, p=[0.3, 0.4, 0.3]))
    start_year = birth_year + 1 + class_age
    start_month = np.where((facility != 2) & (rng.random(k) < 0.2), rng.integers(5, 13, k), 4)
    enrolled_on = _dates(start_year, start_month, 1)
    left_on = _dates(entry, 3, 31)
    # Some children switch: the first stay ends in March, a kindergarten or kodomoen place follows.
    switch = (facility <= 1) & (class_age <= 1) & (rng.random(k) < 0.12)
    switch_year = start_year + rng.integers(1, 3, k)
    first_left = np.where(switch, _dates(switch_year, 3, 31), left_on)
    stays = pd.DataFrame({"i": np.arange(k), "facility": facility, "enrolled_on": enrolled_on, "left_on": first_left})
    second = pd.DataFrame({"i": np.flatnonzero(switch), "facility": rng.choice([1, 2], int(switch.sum())),
                           "enrolled_on": _dates(switch_year[switch], 4, 1),
                           "left_on": left_on[switch]})
    stays = pd.concat([stays, second], ignore_index=True)
    stays = stays[stays.facility < 4]
    i = stays.i.to_numpy()
    f = stays.facility.to_numpy()
    n = len(stays)
    indexed = f <= 1  # only licensed places are allocated by the priority index
    base = np.where(single[i], rng.integers(45, 51, n) * 2, rng.integers(30, 51, n) + rng.integers(20, 51, n))
    adjustment = (20 * single[i] + 10 * ((hardship[i] > 0) & (rng.random(n) < 0.3))
                  + 5 * (rng.random(n) < 0.3) - 5 * (rng.random(n) < 0.1))
    frame = pd.DataFrame({
        "resident_id": born.resident_number.to_numpy()[i], "name": born.name.to_numpy()[i],
        "birth_date": born.birth_date.to_numpy()[i], "facility_type": np.array(FACILITIES, dtype=object)[f],
        "enrolled_on": stays.enrolled_on.to_numpy(), "left_on": stays.left_on.to_numpy(),
        "left_on__known": stays.left_on.to_numpy(),
        "base_index": np.where(indexed, np.clip(base, 0, 100), 0),
        "adjustment_index": np.where(indexed, np.clip(adjustment, -20, 30), 0),
    })
    yield frame.sort_values(["enrolled_on", "resident_id"], kind="stable")
