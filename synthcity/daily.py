"""One school year, day by day: attendance, case-meeting support and nurse-office visits.

Everything is a (pupils × school days) matrix, drawn with common random numbers: a uniform per
pupil-day decides absence against thresholds, so support that lowers a probability after its
decision date turns some later absences into presence and changes nothing before it. Case
meetings therefore see exactly the absences that happened before them.

A pupil drawn 不登校 (latent.py) has an onset day. In the weeks before it the early signs grow
(``ramp``): absences, more on Mondays and after holidays, lates, nurse visits with headache or
stomach ache, falling mood. After it absence is heavy (``q`` per day), and some present days are
spent in the nurse's room or a separate room. A drawn pupil whose absences for reasons other
than illness would still stay under 30 days gets the shortfall after onset, so p_futoukou really
is the probability of being counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from synthcity import support
from synthcity.calendar import DEFAULT, SchoolCalendar, SchoolYear, school_year
from synthcity.latent import Latent
from synthcity.population import Population
from synthcity.rng import stream

PRESENT, SICK, OTHER, SUSPENDED, MOURNING, LATE, EARLY = range(7)
STATUS_CODES = ("present", "absent_sick", "absent_other", "suspended", "mourning", "late", "early_leave")
REASONS = ("", "発熱", "風邪", "通院", "体調不良", "頭痛", "腹痛", "家庭の事情", "私用", "登校しぶり",
           "インフルエンザ", "感染症", "親族の葬儀")
SYMPTOMS = ("headache", "stomach_ache", "unwell", "injury", "fever", "other")

_SICK_SEASON = {4: 0.8, 5: 0.9, 6: 1.0, 7: 0.9, 8: 1.0, 9: 0.9, 10: 1.0, 11: 1.1, 12: 1.4, 1: 1.8, 2: 1.7, 3: 1.0}
_ONSET_MONTH = {4: 0.8, 5: 1.6, 6: 1.3, 7: 0.8, 8: 0.0, 9: 1.5, 10: 1.0, 11: 0.8, 12: 0.5, 1: 0.6, 2: 0.3, 3: 0.1}
_BULLY_MONTH = {4: 0.6, 5: 1.0, 6: 1.3, 7: 1.0, 8: 0.0, 9: 1.0, 10: 1.3, 11: 1.3, 12: 0.8, 1: 0.8, 2: 0.9, 3: 0.5}
_FLU_MONTH = {12: 0.6, 1: 1.0, 2: 0.8}
_FUTOUKOU_DAYS_MIN = 30


@dataclass
class YearDays:
    """The simulated school year. Row i is one pupil (two spells if they moved school)."""

    year: int
    cal: SchoolYear
    rows: pd.DataFrame  # pid, grade, school_a, school_b, move_day, start, end + the latent state
    status: np.ndarray  # int8 (rows × days), -1 when not enrolled
    room: np.ndarray  # int8: 0 in class, 1 保健室登校, 2 別室登校
    reason: np.ndarray  # int8, index into REASONS
    distress: np.ndarray  # float32: the deterministic part of how the pupil feels that day
    decisions: pd.DataFrame  # row, day, action, band, outcome, outcome_known (date of the review)
    nurse: pd.DataFrame  # row, day, minute, symptom, temperature, rest, went_home

    @property
    def enrolled(self) -> np.ndarray:
        return self.status >= 0

    def _column(self, name: str) -> np.ndarray:
        """One column of ``rows`` as an array, kept: the records ask for a few columns of a few
        rows thousands of times, and ``rows.iloc[...]`` copied every column each time (a third
        of the generator's time)."""
        cache = self.__dict__.setdefault("_columns", {})
        if name not in cache:
            cache[name] = self.rows[name].to_numpy()
        return cache[name]

    def _on(self, day, rows, before: str, after: str) -> np.ndarray:
        move, a, b = self._column("move_day"), self._column(before), self._column(after)
        if rows is not None:
            move, a, b = move[rows], a[rows], b[rows]
        return np.where(day < move, a, b)

    def school_on(self, day: np.ndarray | int, rows: np.ndarray | None = None) -> np.ndarray:
        return self._on(day, rows, "school_a", "school_b")

    def class_on(self, day: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return self._on(day, rows, "class_no", "class_b")

    def attending(self) -> np.ndarray:
        """In school that day (present, late or leaving early)."""
        return np.isin(self.status, (PRESENT, LATE, EARLY))

    def count(self, *codes: int) -> np.ndarray:
        return np.isin(self.status, codes).sum(axis=1)


def _year_rows(population: Population, latent: Latent, y: int, D: int, prev: YearDays | None) -> pd.DataFrame:
    sp = population.spells[population.spells.school_year == y].sort_values(["pid", "start"])
    first = sp.drop_duplicates("pid", keep="first").set_index("pid")
    last = sp.drop_duplicates("pid", keep="last").set_index("pid")
    rows = pd.DataFrame({
        "pid": first.index.to_numpy(), "grade": first.grade.to_numpy(),
        "school_a": first.school.to_numpy(), "school_b": last.school.to_numpy(),
        "move_day": np.where(first.school.to_numpy() != last.school.to_numpy(), last.start.to_numpy(), D),
        "start": first.start.to_numpy(), "end": last.end.to_numpy(),
        "class_no": first.class_no.to_numpy(), "class_b": last.class_no.to_numpy(),
        "seat": first.seat.to_numpy(),
    })
    rows = rows.sort_values(["school_a", "grade", "class_no", "seat"], kind="stable").reset_index(drop=True)
    state = latent.year_state(rows.pid.to_numpy(), rows.grade.to_numpy())
    rows = pd.concat([rows, state.drop(columns=["pid", "grade", "school_year", "school"])], axis=1)
    # What the school knows from last year's survey: counted 不登校 while in the city.
    counted_last_year = np.zeros(len(rows), bool)
    if prev is not None:
        counted = prev.rows.loc[prev.rows.counted, "pid"].to_numpy()
        counted_last_year = np.isin(rows.pid.to_numpy(), counted)
    rows["known_last_year"] = counted_last_year
    return rows


def _sample_days(rng, weights: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A day in [lo, hi] per row, drawn with the given day weights (uniform if they are all 0)."""
    cum = np.concatenate([[0.0], np.cumsum(weights + 1e-9)])
    a, b = cum[lo], cum[hi + 1]
    return np.clip(np.searchsorted(cum, a + rng.random(len(lo)) * (b - a), side="right") - 1, lo, hi)


def _window(D: int, who: np.ndarray, first: np.ndarray, length: np.ndarray) -> np.ndarray:
    """(rows × days) mask of a run of ``length`` school days from ``first`` for the rows in ``who``."""
    t = np.arange(D)[None, :]
    return who[:, None] & (t >= first[:, None]) & (t < (first + length)[:, None])


def _pick(rng, probs: np.ndarray, size: int) -> np.ndarray:
    return rng.choice(len(probs), size=size, p=np.asarray(probs) / np.sum(probs))


def simulate_year(seed: int, y: int, population: Population, latent: Latent, prev: YearDays | None,
                  calendar: SchoolCalendar = DEFAULT) -> YearDays:
    rng = stream(seed, "days", y)
    cal = school_year(y, calendar)
    D = cal.n
    rows = _year_rows(population, latent, y, D, prev)
    n = len(rows)
    t = np.arange(D)
    start, end = rows.start.to_numpy(), rows.end.to_numpy()
    enrolled = (t[None, :] >= start[:, None]) & (t[None, :] <= end[:, None])
    month = cal.months
    day_factor = (1 + 0.6 * (cal.gap_before >= 3) + 0.8 * (cal.gap_before >= 7)).astype(np.float32)
    junior = rows.grade.to_numpy() >= 7
    p_year = rows.p_futoukou.to_numpy()
    drawn = rows.futoukou_draw.to_numpy()
    hardship = rows.family_hardship.to_numpy()
    risk = rows.latent_risk.to_numpy()

    # Bullying: the day the victimisation starts, and how it weighs on the following weeks.
    bullied = rows.bullied.to_numpy() > 0
    bully_day = np.full(n, -1)
    bw = np.array([_BULLY_MONTH[m] for m in month])
    bully_day[bullied] = _sample_days(rng, bw, start[bullied], end[bullied])
    since = t[None, :] - bully_day[:, None]
    bully_act = np.where(bullied[:, None] & (since >= 0), np.exp(-since / 25.0), 0.0).astype(np.float32)

    # Onset of 不登校 for drawn pupils.
    onset = np.full(n, -1)
    hi = np.maximum(start, np.minimum(end, D - 45))
    onset[drawn] = _sample_days(rng, np.array([_ONSET_MONTH[m] for m in month]), start[drawn], hi[drawn])
    after_bully = drawn & bullied
    onset[after_bully] = np.minimum(bully_day[after_bully] + rng.integers(5, 40, after_bully.sum()),
                                    np.maximum(hi[after_bully], bully_day[after_bully]))
    continuing = drawn & rows.futoukou_last_year.to_numpy()
    onset[continuing] = np.minimum(start[continuing] + rng.geometric(0.3, continuing.sum()) - 1, hi[continuing])
    ramp_len = np.where(continuing, 5, rng.integers(20, 61, n))
    q = np.where(continuing, rng.beta(7, 1.8, n), np.where(junior, rng.beta(3.6, 1.9, n), rng.beta(3.2, 2.1, n)))
    before = (onset[:, None] - t[None, :]).astype(np.float32)
    ramp = np.where(drawn[:, None] & (before > 0), np.clip(1 - before / ramp_len[:, None], 0, 1) ** 1.5, 0)
    post = drawn[:, None] & (before <= 0)

    # Daily probabilities.
    season = np.array([_SICK_SEASON[m] for m in month])
    p_sick = (0.014 * np.exp(0.45 * rows.illness.to_numpy()))[:, None] * season[None, :]
    block_len = rng.integers(32, 91, n)
    block_start = start + (rng.random(n) * np.maximum(end - start - block_len, 0)).astype(int)
    in_block = _window(D, rows.illness_long.to_numpy(), block_start, block_len)
    p_sick = np.where(in_block, 0.93, p_sick).astype(np.float32)
    economic = rows.economic.to_numpy()
    p_base = (0.0015 + 0.002 * hardship + 0.25 * economic)[:, None].astype(np.float32)
    grey = (0.25 * p_year)[:, None] + 0.03 * bully_act
    p_risk = np.where(post, np.minimum(q[:, None] * (0.85 + 0.15 * day_factor[None, :]), 0.97),
                      (grey + 0.3 * ramp) * day_factor[None, :]).astype(np.float32)
    somatic = np.where(post, 0.12, 0.4)

    # Episodes that are not absences: 出席停止 (flu) and 忌引.
    episode = np.zeros((n, D), np.int8)
    flu = rng.random(n) < np.where(junior, 0.05, 0.08)
    flu_day = _sample_days(rng, np.array([_FLU_MONTH.get(m, 0.0) for m in month]), start, end)
    flu_len = rng.integers(3, 6, n)
    episode[_window(D, flu, flu_day, flu_len)] = SUSPENDED
    mourn = rng.random(n) < 0.008
    episode[_window(D, mourn, rng.integers(0, D, n), rng.integers(1, 4, n))] = MOURNING
    episode[~enrolled] = 0

    u1 = rng.random((n, D), dtype=np.float32)
    thr_other = p_sick + p_base

    def absent(multiplier: np.ndarray) -> np.ndarray:
        return enrolled & (episode == 0) & (u1 < thr_other + p_risk * multiplier)

    multiplier, decisions = _case_meetings(seed, y, cal, rows, absent)

    status = np.full((n, D), PRESENT, np.int8)
    u2 = rng.random((n, D), dtype=np.float32)
    risk_absent = (u1 >= thr_other) & (u1 < thr_other + p_risk * multiplier)
    status[u1 < p_sick] = SICK
    status[(u1 >= p_sick) & (u1 < thr_other)] = OTHER
    status[risk_absent] = np.where(u2[risk_absent] < np.broadcast_to(somatic, (n, D))[risk_absent], SICK, OTHER)
    status[episode > 0] = episode[episode > 0]
    u3 = rng.random((n, D), dtype=np.float32)
    p_late = 0.004 + 0.012 * np.maximum(rows.poor_sleep.to_numpy(), 0)[:, None] + 0.06 * ramp + 0.05 * post
    present = status == PRESENT
    status[present & (u3 < p_late)] = LATE
    status[present & (u3 >= p_late) & (u3 < p_late + 0.0015)] = EARLY
    status[~enrolled] = -1
    _top_up(status, drawn, onset, end)

    reason = _reasons(rng, status, risk_absent, in_block, post, episode)
    distress = (0.45 * risk[:, None] + 0.35 * rows.poor_sleep.to_numpy()[:, None] + 0.7 * bully_act
                + 1.6 * ramp + 1.8 * post).astype(np.float32)
    attending = np.isin(status, (PRESENT, LATE, EARLY))
    room = np.zeros((n, D), np.int8)
    u4 = rng.random((n, D), dtype=np.float32)
    p_room = np.where(post, 0.45, np.where(ramp > 0.5, 0.08, np.where(p_year[:, None] > 0.15, 0.01, 0.0)))
    in_room = attending & (u4 < p_room)
    room[in_room] = np.where(u4[in_room] < p_room[in_room] / 2, 1, 2)

    nurse = _nurse_visits(rng, status, room, rows, ramp, post, bully_act, junior)
    went_home = nurse[nurse.went_home]
    status[went_home.row.to_numpy(), went_home.day.to_numpy()] = EARLY

    rows["bully_day"] = bully_day
    rows["onset"] = onset
    rows["ramp_start"] = np.where(drawn, onset - ramp_len, -1)
    days = YearDays(y, cal, rows, status, room, reason, distress, decisions, nurse)
    _summarise(days)
    return days


def _case_meetings(seed: int, y: int, cal: SchoolYear, rows: pd.DataFrame, absent):
    """Monthly case meetings; returns the absence multiplier matrix and the decisions."""
    rng = stream(seed, "support", y)
    n, D = len(rows), cal.n
    multiplier = np.ones((n, D), np.float32)
    school_offset = rng.integers(0, 3, int(rows[["school_a", "school_b"]].max().max()) + 1)
    last_action = np.full(n, -1)
    last_day = np.full(n, -10_000)
    decided: list[pd.DataFrame] = []
    hardship = rows.family_hardship.to_numpy()
    start, end = rows.start.to_numpy(), rows.end.to_numpy()
    for m in support.MEETING_MONTHS:
        base = cal.index_on_or_after(date(y + (m < 4), m, 12))
        if cal.months[base] != m:
            continue
        school = np.where(base < rows.move_day.to_numpy(), rows.school_a.to_numpy(), rows.school_b.to_numpy())
        day = np.minimum(base + school_offset[school], D - 1)
        cum = np.concatenate([np.zeros((n, 1), int), np.cumsum(absent(multiplier), axis=1)], axis=1)
        so_far = cum[np.arange(n), day]
        recent = so_far - cum[np.arange(n), np.maximum(day - 20, 0)]
        band = support.observed_band(recent, so_far, day - start, rows.known_last_year.to_numpy())
        eligible = (band >= 0) & (start <= day - 10) & (end >= day)
        u = rng.random(n)
        first = eligible & (last_action < 0) & (u < support.DECIDE_SHARE)
        escalate = (eligible & (band == 3) & np.isin(last_action, support.LIGHT_ACTIONS)
                    & (day - last_day >= 40) & (u < support.ESCALATE_SHARE))
        take = np.flatnonzero(first | escalate)
        if not len(take):
            continue
        action = support.choose_actions(rng, band[take], hardship[take])
        for i, a, d in zip(take, action, day[take]):
            multiplier[i, d + 1:] = support.EFFECT[a]
        last_action[take], last_day[take] = action, day[take]
        decided.append(pd.DataFrame({"row": take, "day": day[take], "action": action, "band": band[take]}))
    decisions = (pd.concat(decided, ignore_index=True) if decided
                 else pd.DataFrame({"row": [], "day": [], "action": [], "band": []}, dtype=int))
    _outcomes(decisions, absent(multiplier), cal)
    return multiplier, decisions


def _outcomes(decisions: pd.DataFrame, absent: np.ndarray, cal: SchoolYear) -> None:
    """経過 after 60 days: improved / no change / worse, comparing 20 school days either side."""
    outcome, known = [], []
    for r, d in zip(decisions.row.to_numpy(), decisions.day.to_numpy()):
        before = absent[r, max(0, d - 20):d].mean() if d > 0 else 0.0
        after_days = absent[r, d + 1:d + 21]
        if len(after_days) < 10:
            outcome.append("ongoing")
        else:
            after = after_days.mean()
            outcome.append("improved" if after <= 0.6 * before and before > 0
                           else "worse" if after >= before + 0.15 else "no_change")
        known.append(cal.days[d] + np.timedelta64(60, "D"))
    decisions["outcome"] = outcome
    decisions["outcome_known"] = np.array(known, dtype="datetime64[D]")


def _top_up(status: np.ndarray, drawn: np.ndarray, onset: np.ndarray, end: np.ndarray) -> None:
    """Make every drawn pupil's non-illness absences reach 30 days after onset, if enrolment allows."""
    other = (status == OTHER).sum(axis=1)
    for i in np.flatnonzero(drawn & (other < _FUTOUKOU_DAYS_MIN)):
        days = np.flatnonzero(np.isin(status[i, onset[i]:end[i] + 1], (PRESENT, LATE, EARLY))) + onset[i]
        status[i, days[: _FUTOUKOU_DAYS_MIN - other[i]]] = OTHER


def _reasons(rng, status, risk_absent, in_block, post, episode) -> np.ndarray:
    """The optional 理由 a teacher types: what the family said when they phoned in."""
    n, D = status.shape
    reason = np.zeros((n, D), np.int8)
    idx = {r: i for i, r in enumerate(REASONS)}

    def fill(mask, choices, probs):
        k = int(mask.sum())
        if k:
            reason[mask] = np.array([idx[c] for c in choices], np.int8)[_pick(rng, probs, k)]

    sick = status == SICK
    fill(sick & ~risk_absent & ~in_block, ("発熱", "風邪", "通院", "体調不良", ""), (35, 25, 10, 20, 10))
    fill(sick & in_block, ("通院", "体調不良", ""), (50, 20, 30))
    fill(sick & risk_absent, ("頭痛", "腹痛", "体調不良", ""), (30, 30, 30, 10))
    other = status == OTHER
    fill(other & ~risk_absent, ("家庭の事情", "私用", ""), (50, 20, 30))
    fill(other & risk_absent & ~post, ("家庭の事情", "体調不良", ""), (25, 25, 50))
    fill(other & post, ("登校しぶり", "家庭の事情", ""), (15, 15, 70))
    fill(episode == SUSPENDED, ("インフルエンザ", "感染症"), (70, 30))
    fill(episode == MOURNING, ("親族の葬儀", ""), (60, 40))
    return reason


def _nurse_visits(rng, status, room, rows, ramp, post, bully_act, junior) -> pd.DataFrame:
    """At most one visit per pupil-day on days the pupil is in class."""
    n, D = status.shape
    base = np.where(junior, 0.008, 0.011)[:, None]
    extra = (0.12 * ramp + 0.10 * post + 0.03 * bully_act + 0.25 * rows.p_futoukou.to_numpy()[:, None]
             + 0.004 * np.maximum(rows.latent_risk.to_numpy(), 0)[:, None])
    v = base + extra
    visit = np.isin(status, (PRESENT, LATE)) & (room == 0) & (rng.random((n, D), dtype=np.float32) < v)
    r, d = np.nonzero(visit)
    k = len(r)
    risk_driven = rng.random(k) < (extra[r, d] / v[r, d])
    jh = junior[r]
    symptom = np.where(
        risk_driven, _pick(rng, (35, 32, 25, 0, 0, 8), k),
        np.where(jh, _pick(rng, (20, 15, 14, 35, 8, 8), k), _pick(rng, (14, 13, 12, 45, 8, 8), k)))
    fever = symptom == 4
    injury = symptom == 3
    temperature = np.where(fever, rng.uniform(37.5, 39.2, k), np.clip(rng.normal(36.6, 0.3, k), 35.8, 37.4))
    temperature = np.where(injury & (rng.random(k) < 0.7), np.nan, np.round(temperature, 1))
    rest = np.where(injury, rng.choice([0, 5, 10], k), np.where(
        fever, rng.choice([10, 15, 20, 30], k),
        np.where(risk_driven, rng.integers(3, 13, k) * 5, rng.integers(1, 7, k) * 5)))
    home_p = np.array([0.12, 0.12, 0.2, 0.03, 0.75, 0.05])[symptom] + 0.05 * risk_driven
    minute = np.where(risk_driven, rng.integers(8 * 60 + 30, 11 * 60, k), rng.integers(8 * 60 + 40, 15 * 60 + 20, k))
    return pd.DataFrame({"row": r, "day": d, "minute": minute, "symptom": symptom,
                         "temperature": temperature, "rest": rest, "went_home": rng.random(k) < home_p})


def _summarise(days: YearDays) -> None:
    """Per-pupil totals and the long-absence outcome the survey will report."""
    rows, D = days.rows, days.cal.n
    rows["days_enrolled"] = days.enrolled.sum(axis=1)
    rows["days_sick"] = days.count(SICK)
    rows["days_other"] = days.count(OTHER)
    rows["absent_days"] = rows.days_sick + rows.days_other
    rows["at_year_end"] = rows.end.to_numpy() == D - 1
    long = rows.at_year_end & (rows.absent_days >= 30)
    rows["counted"] = long & rows.futoukou_draw & (rows.days_other >= _FUTOUKOU_DAYS_MIN)
    reason = np.where(rows.counted, "futoukou", np.where(
        rows.economic, "economic", np.where(rows.days_sick >= rows.days_other, "illness", "other")))
    rows["long_absence_reason"] = np.where(long, reason, "none")
