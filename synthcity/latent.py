"""The hidden state of every pupil and the true probability of 不登校 it implies.

Each person gets a chain over the nine school years (小1-中3), also for the years they spend
outside the city or outside the history window, so a pupil's past is never cut short:

* ``latent_risk`` r: AR(1) across years (rho = 0.8), with an extra shock at 中1 (中1ギャップ);
* ``family_hardship`` h (0/1): drawn from the district's hardship rate (就学援助 rate);
* ``ability`` theta: achievement in ability SD, growing with the school's hidden practice effect
  and slowed by hardship and risk; ``academic_struggle`` is its (standardised) shortfall;
* ``poor_sleep``, ``bullied`` (victimised this year), ``school_climate`` of the pupil's school;
* ``illness`` propensity: drives sick days and long absence for illness, never 不登校.

The probability of being counted 不登校 in a year is explicit::

    p = sigmoid(c[grade] + sum(BETA[k] * x[k]))

where the grade intercepts c are solved so that the mean p of each grade equals the national
rate (GRADE_TARGETS). A Bernoulli draw with p decides the year's outcome; the daily simulation
then makes that pupil's absences cross 30 days for reasons other than illness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from synthcity.population import Population
from synthcity.rng import stream

# Mean probability of being counted 不登校, by city-wide school year 1-9 (MEXT FY2023 shape):
# elementary mean 2.14 %, junior high mean 6.71 %, a jump at 中1 and the peak at 中3.
GRADE_TARGETS = (0.0070, 0.0115, 0.0165, 0.0225, 0.0305, 0.0404, 0.0560, 0.0690, 0.0763)
BETA = {
    "latent_risk": 1.0,
    "bullied": 0.9,
    "family_hardship": 0.45,
    "academic_struggle": 0.5,
    "poor_sleep": 0.3,
    "school_climate": 0.25,
    "futoukou_last_year": 2.4,
}
RISK_RHO = 0.8
FIRST_JH_SHOCK = 1.3  # innovation scale at 中1
BULLIED_BY_GRADE = (0.10, 0.12, 0.12, 0.11, 0.10, 0.09, 0.07, 0.05, 0.035)
ILLNESS_LONG_RATE = 0.0095  # long absence for illness (30+ sick days), besides 不登校
ILLNESS_WEIGHT = 0.9  # how much the illness propensity raises the odds of a long illness
ECONOMIC_RATE_IF_HARDSHIP = 0.001


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def solve_intercept(eta: np.ndarray, target: float) -> float:
    """The c with mean(sigmoid(c + eta)) = target (bisection; the mean is monotone in c)."""
    lo, hi = -20.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if sigmoid(mid + eta).mean() < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass
class Latent:
    chain: pd.DataFrame  # one row per (pid, grade 1-9): the state, p and the draws
    intercepts: list[float]  # c per grade
    illness_intercept: float

    def year_state(self, pids: np.ndarray, grades: np.ndarray) -> pd.DataFrame:
        """The chain rows for given (pid, grade) pairs, in that order."""
        return self.chain.iloc[pids * 9 + grades - 1].reset_index(drop=True)


def build_latent(seed: int, population: Population, schools: pd.DataFrame) -> Latent:
    rng = stream(seed, "latent")
    persons, spells = population.persons, population.spells
    n = len(persons)
    grades = np.arange(1, 10)
    year = persons.entry_year.to_numpy()[:, None] + grades[None, :] - 1

    # The school of record for each year: the first city school that year, else the district's.
    district = persons.district_school.to_numpy()
    school = np.where(grades[None, :] <= 6, district[:, None], schools.feeds.to_numpy()[district][:, None])
    first = spells.sort_values("start").drop_duplicates(["pid", "school_year"])
    rows, cols = first.pid.to_numpy(), first.grade.to_numpy() - 1
    school[rows, cols] = first.school.to_numpy()

    aid = schools.aid_rate.to_numpy()[district]
    hardship = (rng.random(n) < aid).astype(float)
    illness = rng.normal(0, 1, n)
    sleep_trait = rng.normal(0, 1, n)
    climate = schools.climate.to_numpy()[school]
    practice = schools.practice_effect.to_numpy()[school]

    risk = np.empty((n, 9))
    risk[:, 0] = rng.normal(0, 1, n)
    for g in range(1, 9):
        shock = FIRST_JH_SHOCK if g == 6 else 1.0
        risk[:, g] = RISK_RHO * risk[:, g - 1] + np.sqrt(1 - RISK_RHO**2) * shock * rng.normal(0, 1, n)

    theta = np.empty((n, 9))
    theta[:, 0] = rng.normal(0, 1, n) - 0.3 * hardship
    for g in range(1, 9):
        theta[:, g] = (theta[:, g - 1] + practice[:, g] - 0.06 * hardship - 0.06 * risk[:, g - 1]
                       + rng.normal(0, 0.2, n))
    drift = np.empty((n, 9))
    drift[:, 0] = rng.normal(0, 1, n)
    for g in range(1, 9):
        drift[:, g] = 0.7 * drift[:, g - 1] + np.sqrt(1 - 0.49) * rng.normal(0, 1, n)
    struggle = _standardise(-0.7 * _standardise(theta) + 0.25 * hardship[:, None] + 0.5 * drift)
    sleep = _standardise(0.55 * sleep_trait[:, None] + 0.3 * risk + 0.25 * (grades >= 7)[None, :]
                         + 0.6 * rng.normal(0, 1, (n, 9)))
    bullied_logit = np.log(np.array(BULLIED_BY_GRADE) / (1 - np.array(BULLIED_BY_GRADE)))
    bullied = (rng.random((n, 9)) < sigmoid(bullied_logit[None, :] + 0.45 * risk + 0.3 * climate
                                            - 0.1)).astype(float)

    p = np.empty((n, 9))
    futoukou = np.zeros((n, 9), dtype=bool)
    last = np.zeros(n)
    intercepts = []
    for g in range(9):
        eta = (BETA["latent_risk"] * risk[:, g] + BETA["bullied"] * bullied[:, g]
               + BETA["family_hardship"] * hardship + BETA["academic_struggle"] * struggle[:, g]
               + BETA["poor_sleep"] * sleep[:, g] + BETA["school_climate"] * climate[:, g]
               + BETA["futoukou_last_year"] * last)
        c = solve_intercept(eta, GRADE_TARGETS[g])
        intercepts.append(c)
        p[:, g] = sigmoid(c + eta)
        futoukou[:, g] = rng.random(n) < p[:, g]
        last = futoukou[:, g].astype(float)

    ill_eta = ILLNESS_WEIGHT * illness
    c_ill = solve_intercept(ill_eta, ILLNESS_LONG_RATE)
    illness_long = (rng.random((n, 9)) < sigmoid(c_ill + ill_eta)[:, None]) & ~futoukou
    economic = (rng.random((n, 9)) < ECONOMIC_RATE_IF_HARDSHIP * hardship[:, None]) & ~futoukou & ~illness_long

    chain = pd.DataFrame({
        "pid": np.repeat(np.arange(n), 9),
        "grade": np.tile(grades, n),
        "school_year": year.ravel(),
        "school": school.ravel(),
        "latent_risk": risk.ravel(),
        "family_hardship": np.repeat(hardship, 9),
        "illness": np.repeat(illness, 9),
        "ability": theta.ravel(),
        "academic_struggle": struggle.ravel(),
        "poor_sleep": sleep.ravel(),
        "bullied": bullied.ravel(),
        "school_climate": climate.ravel(),
        "futoukou_last_year": np.concatenate([np.zeros((n, 1), bool), futoukou[:, :-1]], axis=1).ravel(),
        "p_futoukou": p.ravel(),
        "futoukou_draw": futoukou.ravel(),
        "illness_long": illness_long.ravel(),
        "economic": economic.ravel(),
    })
    return Latent(chain, intercepts, c_ill)


def _standardise(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=0)) / x.std(axis=0)
