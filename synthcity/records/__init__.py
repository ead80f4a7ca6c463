"""Record builders: one function per catalogue source, turning the simulated city into rows.

A builder yields DataFrames with the catalogue's canonical column names and values (codes,
dates, grades 1-9); it never formats anything and never looks at ``today`` — the writer does
both. Builders draw their own noise from their own streams, so each source is independent.
"""

from __future__ import annotations

from typing import Callable, Iterable

import pandas as pd

from synthcity.city import City
from synthcity.records import cases, daily_sources, early_years, health, registry, school_level, surveys

Builder = Callable[[City], Iterable[pd.DataFrame]]

BUILDERS: dict[str, Builder] = {
    "pupil_registry": registry.pupil_registry,
    "attendance_daily": daily_sources.attendance_daily,
    "long_absence_survey": daily_sources.long_absence_survey,
    "bullying_records": cases.bullying_records,
    "counseling_records": cases.counseling_records,
    "school_life_survey": surveys.school_life_survey,
    "health_checkup": health.health_checkup,
    "prefectural_achievement": surveys.prefectural_achievement,
    "prefectural_questionnaire": surveys.prefectural_questionnaire,
    "nurse_office_visits": daily_sources.nurse_office_visits,
    "aigrow": surveys.aigrow,
    "qu_survey": surveys.qu_survey,
    "class_understanding_survey": surveys.class_understanding_survey,
    "rst": surveys.rst,
    "mood_checkin": daily_sources.mood_checkin,
    "infant_checkup": early_years.infant_checkup,
    "nursery_enrollment": early_years.nursery_enrollment,
    "support_records": cases.support_records,
    "school_master": school_level.school_master,
    "school_context": school_level.school_context,
    "teacher_survey": school_level.teacher_survey,
    "teacher_stress_check": school_level.teacher_stress_check,
    "teacher_overtime": school_level.teacher_overtime,
}
