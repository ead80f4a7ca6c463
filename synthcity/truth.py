"""The hidden truth, written to ``home/truth/`` for evaluation code only (never under landing).

* ``pupil_years.csv`` — per pupil and school year (the in-progress year included, simulated to
  its end): the latent state, p_futoukou, the realised outcome and absences.
* ``support_effects.csv`` — each action's true effect on later attendance.
* ``school_effects.csv`` — each school's hidden practice effect, climate and hardship rate.
* ``sources.json`` — what each source's signal is made of and how strong it is (for ablations).
* ``latent_model.json`` — the formula behind p_futoukou, with its coefficients.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from synthcity import latent, support
from synthcity.city import City

SOURCES = {  # source -> (signal strength, what carries it)
    "attendance_daily": ("strong", "absences rise before onset (Mondays, after holidays) and are heavy after; "
                                   "lates; 保健室/別室登校"),
    "nurse_office_visits": ("strong", "visits with headache, stomach ache, feeling unwell rise before onset "
                                      "and with bullying"),
    "mood_checkin": ("strong", "mood, body and sleep fall and 'want to talk' rises with distress; "
                               "distressed pupils skip more"),
    "qu_survey": ("strong", "承認得点 falls and 被侵害得点 rises with distress and bullying; group follows"),
    "counseling_records": ("strong", "sessions follow the drift toward 不登校, bullying and support decisions"),
    "bullying_records": ("strong", "victimisation raises p and precedes onset; 80 % of victimisations are recognised"),
    "long_absence_survey": ("label", "the 不登校 label (main_reason = futoukou), known May 1 of the next year"),
    "support_records": ("confounded", "decisions follow observed risk; actions have true effects "
                                      "(support_effects.csv)"),
    "school_life_survey": ("moderate", "items read distress, bullying and academic struggle on the survey day"),
    "class_understanding_survey": ("moderate", "understanding reads academic struggle"),
    "prefectural_achievement": ("moderate", "scores read ability (struggle is its shortfall); growth carries the "
                                            "school's practice effect"),
    "prefectural_questionnaire": ("moderate", "self-esteem etc. read distress, bullying, struggle and sleep"),
    "rst": ("moderate", "reading skill reads ability"),
    "health_checkup": ("weak", "肥満度 and untreated caries rise with family hardship"),
    "infant_checkup": ("weak", "no-shows rise with family hardship; findings slightly with later low ability"),
    "nursery_enrollment": ("weak", "adjustment index rises with hardship (ひとり親, 生活保護)"),
    "pupil_registry": ("weak", "transfers; grade; the roll itself"),
    "aigrow": ("none", "pure noise: scores independent of every risk driver, every enrolled pupil sits it"),
    "school_context": ("context", "就学援助 rate counted from pupils' hidden hardship"),
    "teacher_survey": ("context", "lesson improvement and collaboration carry the school's hidden practice effect"),
    "teacher_stress_check": ("context", "follows the school's overtime level and climate"),
    "teacher_overtime": ("context", "school overtime level, seasonal, slowly falling"),
    "school_master": ("none", "the list of schools"),
}


def pupil_years(city: City) -> pd.DataFrame:
    frames = []
    for y in city.years:
        yd = city.days[y]
        r = yd.rows
        onset = r.onset.to_numpy()
        frames.append(pd.DataFrame({
            "student_number": city.persons.student_number.to_numpy()[r.pid.to_numpy()],
            "school_year": y,
            "school_code": city.schools.school_code.to_numpy()[r.school_b.to_numpy()],
            "grade": r.grade.to_numpy(),
            "latent_risk": r.latent_risk.round(4).to_numpy(),
            "family_hardship": r.family_hardship.astype(int).to_numpy(),
            "bullied": r.bullied.astype(int).to_numpy(),
            "academic_struggle": r.academic_struggle.round(4).to_numpy(),
            "poor_sleep": r.poor_sleep.round(4).to_numpy(),
            "school_climate": r.school_climate.round(4).to_numpy(),
            "futoukou_last_year": r.futoukou_last_year.astype(int).to_numpy(),
            "p_futoukou": r.p_futoukou.round(6).to_numpy(),
            "futoukou_drawn": r.futoukou_draw.astype(int).to_numpy(),
            "futoukou": r.counted.astype(int).to_numpy(),
            "onset_date": np.where(onset >= 0, yd.cal.days[np.maximum(onset, 0)], np.datetime64("NaT")),
            "days_enrolled": r.days_enrolled.to_numpy(),
            "absent_days": r.absent_days.to_numpy(),
            "days_sick": r.days_sick.to_numpy(),
            "days_other": r.days_other.to_numpy(),
            "enrolled_at_year_end": r.at_year_end.astype(int).to_numpy(),
            "long_absence_reason": r.long_absence_reason.to_numpy(),
            "illness_long": r.illness_long.astype(int).to_numpy(),
            "support_decisions": np.bincount(yd.decisions.row.to_numpy().astype(int), minlength=len(r)),
        }))
    return pd.concat(frames, ignore_index=True)


def write_truth(folder: Path, city: City) -> pd.DataFrame:
    folder.mkdir(parents=True, exist_ok=True)
    years = pupil_years(city)
    years.to_csv(folder / "pupil_years.csv", index=False, date_format="%Y-%m-%d")
    pd.DataFrame({
        "action": support.ACTIONS, "action_ja": support.ACTION_JA, "effect_multiplier": support.EFFECT,
        "applies_to": "risk-driven daily absence probability, from the day after decided_on "
                      "to the end of that school year",
    }).to_csv(folder / "support_effects.csv", index=False)
    s = city.schools
    pd.DataFrame({
        "school_code": s.school_code, "school_name": s.school_name, "school_type": s.school_type,
        "feeds_into": np.where(s.feeds >= 0, s.school_code.to_numpy()[s.feeds.clip(lower=0)], ""),
        "hardship_rate": s.aid_rate.round(4), "practice_effect": s.practice_effect.round(4),
        "climate": s.climate.round(4),
    }).to_csv(folder / "school_effects.csv", index=False)
    _json(folder / "sources.json", {k: {"signal": v[0], "carried_by": v[1]} for k, v in SOURCES.items()})
    _json(folder / "latent_model.json", {
        "p_futoukou": "sigmoid(intercept[grade] + sum(beta[k] * x[k]))",
        "beta": latent.BETA, "intercept_by_grade": dict(zip(range(1, 10), city.latent.intercepts)),
        "grade_targets": dict(zip(range(1, 10), latent.GRADE_TARGETS)),
        "latent_risk_ar1_rho": latent.RISK_RHO, "first_junior_high_shock": latent.FIRST_JH_SHOCK,
        "illness_long": {"rate": latent.ILLNESS_LONG_RATE, "intercept": city.latent.illness_intercept,
                         "illness_coefficient": latent.ILLNESS_WEIGHT},
        "counted": "drawn futoukou, enrolled at the end of March, 30+ days absent for reasons other than illness",
    })
    return years


def _json(path: Path, value) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=2), encoding="utf-8")
