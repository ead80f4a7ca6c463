"""marts/school_aggregates follows its sources (automation condition), but only past their
blocking checks; the automation sensor that evaluates it is on from the start."""

from __future__ import annotations

import dagster as dg

from assets.marts import AGGREGATES_KEY
from assets.sources import staging_key
from ml import aggregates
from toda_platform.definitions import build_definitions
from toda_platform.settings import Paths


def test_school_aggregates_follow_a_restaged_source_once_its_blocking_check_passed(tmp_path):
    defs = build_definitions(Paths.from_env(tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    selection = dg.AssetSelection.assets(AGGREGATES_KEY)
    deps = [staging_key(k) for k in aggregates.SOURCES_READ]

    def evaluate(cursor=None):
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance,
                                              asset_selection=selection, cursor=cursor)
        return r.total_requested, r.cursor

    def stage(key, passed=True):
        instance.report_runless_asset_event(dg.AssetMaterialization(key))
        instance.report_runless_asset_event(dg.AssetCheckEvaluation(
            asset_key=key, check_name="table_valid", passed=passed,
            severity=dg.AssetCheckSeverity.ERROR))

    n, cursor = evaluate()
    assert n == 0  # nothing staged yet
    for key in deps:
        stage(key)
    instance.report_runless_asset_event(dg.AssetMaterialization(AGGREGATES_KEY))
    n, cursor = evaluate(cursor)
    assert n == 0  # all built, nothing newer than the aggregates

    stage(deps[0])  # the landing sensor restaged a source, its check passed
    n, cursor = evaluate(cursor)
    assert n == 1
    instance.report_runless_asset_event(dg.AssetMaterialization(AGGREGATES_KEY))
    n, cursor = evaluate(cursor)
    assert n == 0

    stage(deps[1], passed=False)  # a restaged source whose blocking check failed
    n, cursor = evaluate(cursor)
    assert n == 0


def test_the_automation_sensor_is_on_by_default():
    repo = build_definitions().get_repository_def()
    sensor = repo.get_sensor_def("automation_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert "default_automation_condition_sensor" not in {s.name for s in repo.sensor_defs}
