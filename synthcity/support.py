"""Case meetings: who gets support, which action, and what each action truly does.

Every month (May-February) each school's case meeting looks at what it can see — absences so
far this year, absences in the last 20 school days, and whether the pupil was counted 不登校
last year — and decides support for some flagged pupils. Higher observed risk gets more
intensive actions, so support is confounded with risk: comparing supported and unsupported
pupils naively makes support look harmful.

The true effect of an action multiplies the pupil's risk-driven daily absence probability
(not genuine illness) from the day after the decision to the end of the school year; the latest
action replaces an earlier one.
"""

from __future__ import annotations

import numpy as np

ACTIONS = ("monitoring", "home_visit", "sc_interview", "ssw", "support_classroom", "npo_referral")
ACTION_JA = ("見守り", "家庭訪問", "SC面談", "SSW連携", "適応指導教室", "NPO紹介")
EFFECT = np.array([1.00, 0.85, 0.80, 0.75, 0.65, 0.85])  # multiplier on risk-driven absence
AGENCY = ("teacher", "school", "school_counsellor", "social_worker", "support_centre", "npo")
BANDS = ("yellow", "orange", "pink", "red")
# P(action | band): rows yellow, orange, pink, red.
ACTION_PROBS = np.array([
    [0.60, 0.15, 0.20, 0.05, 0.00, 0.00],
    [0.30, 0.25, 0.30, 0.10, 0.03, 0.02],
    [0.10, 0.25, 0.30, 0.20, 0.10, 0.05],
    [0.05, 0.20, 0.15, 0.25, 0.25, 0.10],
])
MEETING_MONTHS = (5, 6, 7, 9, 10, 11, 12, 1, 2)
DECIDE_SHARE = 0.5  # of flagged pupils without support, the share a meeting takes on
ESCALATE_SHARE = 0.5
LIGHT_ACTIONS = (0, 1, 2)


def observed_band(recent: np.ndarray, so_far: np.ndarray, elapsed: np.ndarray,
                  known_last_year: np.ndarray) -> np.ndarray:
    """Band index 0-3 from what a school sees, -1 when the pupil is not flagged.

    ``recent`` = absences in the last 20 school days, ``so_far`` = this year's absences over
    ``elapsed`` school days, ``known_last_year`` = counted 不登校 in last year's survey.
    """
    rate = so_far / np.maximum(elapsed, 1)
    band = np.full(len(recent), -1)
    band[(recent >= 5) | ((so_far >= 8) & (rate >= 0.1))] = 0
    band[(recent >= 7) | ((so_far >= 10) & (rate >= 0.14))] = 1
    band[(recent >= 9) | ((so_far >= 12) & (rate >= 0.2)) | known_last_year] = 2
    band[(recent >= 13) | ((so_far >= 20) & (rate >= 0.3))] = 3
    return band


def choose_actions(rng: np.random.Generator, band: np.ndarray, hardship: np.ndarray) -> np.ndarray:
    """An action per decided pupil; hardship doubles the weight of SSW (social work)."""
    probs = ACTION_PROBS[band].copy()
    probs[:, 3] *= np.where(hardship > 0, 2.0, 1.0)
    probs /= probs.sum(axis=1, keepdims=True)
    u = rng.random(len(band))[:, None]
    return (u > np.cumsum(probs, axis=1)).sum(axis=1).clip(0, len(ACTIONS) - 1)
