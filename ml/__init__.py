"""Pure functions of the platform's analytics: no Dagster here.

``asof``       the as-of dates (first school day of each month May–March, and the latest data)
``features``   the integrated pupil table, strictly point-in-time
``labels``     the cohort and the 不登校 label
``aggregates`` one row per school and school year, with small-cell suppression
"""
