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


def test_the_snapshot_waits_for_the_new_list_not_for_a_restaged_source(tmp_path):
    """A landing restages a timeline source: the snapshot is published by the rescoring that
    follows (with the new list), not by the automation sensor with yesterday's list."""
    from assets.serving import SNAPSHOT_KEY

    defs = build_definitions(Paths.from_env(tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    graph = defs.resolve_asset_graph()
    deps = sorted(graph.get(SNAPSHOT_KEY).parent_keys, key=lambda k: k.to_user_string())
    staged = [k for k in deps if graph.get(k).group_name == "sources"]
    cursor = None

    def requested():
        nonlocal cursor
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance,
                                              asset_selection=dg.AssetSelection.assets(SNAPSHOT_KEY),
                                              cursor=cursor)
        cursor = r.cursor
        return r.total_requested

    def materialise(key):
        instance.report_runless_asset_event(dg.AssetMaterialization(key))
        for check in graph.get_check_keys_for_assets({key}):
            instance.report_runless_asset_event(dg.AssetCheckEvaluation(
                asset_key=key, check_name=check.name, passed=True, severity=dg.AssetCheckSeverity.ERROR))

    requested()  # the sensor's first tick: nothing built yet
    for key in deps:
        materialise(key)
    assert requested() == 1  # first publication once what it reads is there
    materialise(SNAPSHOT_KEY)
    assert requested() == 0

    assert len(staged) >= 5 and graph.get(SNAPSHOT_KEY).parent_keys - set(staged)
    materialise(staging_key("attendance_daily"))  # a landing restaged attendance
    assert requested() == 0  # the snapshot waits: its timelines go out with the new list
    materialise(next(k for k in deps if k.path[-1] == "risk_scores"))  # the rescoring's new list
    assert requested() == 1
    materialise(SNAPSHOT_KEY)
    assert requested() == 0
    materialise(next(k for k in deps if k.path[-1] == "school_karte"))  # an output still triggers it
    assert requested() == 1
