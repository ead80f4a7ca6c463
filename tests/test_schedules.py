"""The platform's clock: the school calendar, the schedules (Asia/Tokyo, on from the start), the
retraining sensor, and `toda refresh` running exactly what the nightly schedule runs."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assets import schedules
from assets.marts import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG, as_of_months
from assets.models import ABLATION_KEY, MODEL_KEY, RISK_SCORES_KEY
from assets.outputs import SUPPORT_KEY
from assets.serving import SNAPSHOT_KEY
from toda_platform.definitions import CLI_PID_TAG, build_definitions, fail_orphaned_runs, refresh
from toda_platform.school_calendar import SchoolCalendar, is_school_day
from toda_platform.warehouse import WRITER_TAG

TOKYO = dt.timezone(dt.timedelta(hours=9))


@pytest.mark.parametrize("day, school", [
    ("2026-11-02", True),   # Monday
    ("2026-11-03", False),  # 文化の日 (Tuesday)
    ("2026-05-06", False),  # 振替休日 for 憲法記念日 on a Sunday
    ("2026-09-22", False),  # 国民の休日 between 敬老の日 and 秋分の日
    ("2026-08-03", False),  # summer vacation
    ("2026-12-28", False),  # winter vacation
    ("2027-01-08", True),   # Friday after the winter vacation
    ("2027-01-11", False),  # 成人の日
    ("2027-03-26", False),  # spring vacation
    ("2026-11-07", False),  # Saturday
])
def test_school_days_of_the_calendar(day, school):
    assert is_school_day(dt.date.fromisoformat(day)) is school


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=dt.date(2010, 1, 1), max_value=dt.date(2090, 12, 31)))
def test_weekends_are_never_school_days_and_overrides_win(day):
    assert not (day.weekday() >= 5 and is_school_day(day))
    assert is_school_day(day, SchoolCalendar(open=frozenset({day})))
    assert not is_school_day(day, SchoolCalendar(closed=frozenset({day})))


def test_a_city_calendar_file_changes_the_breaks_and_closes_days(tmp_path):
    (tmp_path / "school_calendar.toml").write_text(
        'breaks = [["07-25", "08-25"], ["12-29", "01-05"]]\nclosed = ["2026-06-01"]\nopen = ["2026-10-17"]\n',
        encoding="utf-8")
    cal = SchoolCalendar.load(tmp_path)
    assert is_school_day(dt.date(2026, 7, 22), cal) and not is_school_day(dt.date(2026, 7, 22))
    assert is_school_day(dt.date(2026, 3, 26), cal)  # no spring break in this city
    assert not is_school_day(dt.date(2026, 6, 1), cal) and is_school_day(dt.date(2026, 6, 1))
    assert is_school_day(dt.date(2026, 10, 17), cal)  # 土曜授業
    assert SchoolCalendar.load(tmp_path / "none") == SchoolCalendar()


@pytest.fixture
def defs(paths):
    return build_definitions(paths)


def _tick(defs, name, when: dt.datetime):
    schedule = defs.resolve_schedule_def(name)
    with dg.build_schedule_context(scheduled_execution_time=when,
                                   resources={"toda": defs.resources["toda"]}) as ctx:
        return schedule.evaluate_tick(ctx)


def test_morning_rescoring_skips_holidays_and_vacations(defs):
    holiday = _tick(defs, "morning_rescoring", dt.datetime(2026, 11, 3, 6, 30, tzinfo=TOKYO))
    assert holiday.run_requests == [] and "no school day" in holiday.skip_message
    summer = _tick(defs, "morning_rescoring", dt.datetime(2026, 8, 3, 6, 30, tzinfo=TOKYO))
    assert summer.run_requests == [] and "2026-08-03" in summer.skip_message
    # 06:30 in Tokyo is the previous evening in UTC: the day is Tokyo's
    school = _tick(defs, "morning_rescoring", dt.datetime(2026, 11, 3, 21, 30, tzinfo=dt.timezone.utc))
    [request] = school.run_requests
    keys = as_of_months.get_partition_keys()
    assert (request.tags[ASSET_PARTITION_RANGE_START_TAG], request.tags[ASSET_PARTITION_RANGE_END_TAG]) == \
        (keys[-2], keys[-1])


def test_every_schedule_and_sensor_is_on_from_the_start_in_tokyo_time(defs):
    repo = defs.get_repository_def()
    assert {s.name for s in repo.schedule_defs} == {
        "nightly_refresh", "morning_rescoring", "yearly_retrain", "monthly_drift_report", "source_ablation",
        "weekly_support_effects", "monthly_retention"}
    for s in repo.schedule_defs:
        assert s.default_status == dg.DefaultScheduleStatus.RUNNING, s.name
        assert s.execution_timezone == "Asia/Tokyo", s.name
    for s in repo.sensor_defs:
        assert s.default_status == dg.DefaultSensorStatus.RUNNING, s.name
    crons = {s.name: s.cron_schedule for s in repo.schedule_defs}
    assert crons == {"nightly_refresh": "0 21 * * *", "morning_rescoring": "30 6 * * 1-5",
                     "yearly_retrain": "0 2 15 5 *", "monthly_drift_report": "0 6 1 * *",
                     "source_ablation": "0 1 * * 6", "weekly_support_effects": "0 3 * * 0",
                     "monthly_retention": "0 3 1 * *"}


def test_every_job_is_a_tagged_writer_and_the_ablation_runs_on_its_own(defs):
    for job in schedules.jobs:
        assert defs.resolve_job_def(job.name).tags[WRITER_TAG] == "warehouse"
    assert defs.get_repository_def().get_sensor_def("automation_sensor").run_tags[WRITER_TAG] == "warehouse"
    selected = {name: defs.resolve_job_def(name).asset_layer.selected_asset_keys
                for name in ("nightly_refresh_job", "source_ablation_job", "retrain_job")}
    all_keys = defs.resolve_asset_graph().get_all_asset_keys()
    assert selected["nightly_refresh_job"] == all_keys - {ABLATION_KEY, SUPPORT_KEY}
    assert selected["source_ablation_job"] == {ABLATION_KEY}
    assert MODEL_KEY in selected["retrain_job"] and ABLATION_KEY not in selected["retrain_job"]


def test_yearly_retrain_forces_the_model(defs):
    [request] = _tick(defs, "yearly_retrain", dt.datetime(2027, 5, 15, 2, 0, tzinfo=TOKYO)).run_requests
    assert request.run_config["ops"]["models__futoukou_risk"]["config"]["force"] is True
    assert request.tags[ASSET_PARTITION_RANGE_START_TAG] == as_of_months.get_partition_keys()[0]


def test_toda_refresh_runs_the_nightly_schedules_job_with_its_tags(defs, paths, monkeypatch):
    ran = {}

    def fake_execute(self, **kwargs):
        ran.update(job=self.name, tags=kwargs["tags"], run_config=kwargs["run_config"])

    monkeypatch.setattr(dg.JobDefinition, "execute_in_process", fake_execute)
    refresh(paths, instance=dg.DagsterInstance.ephemeral())
    tick = _tick(defs, "nightly_refresh", dt.datetime(2026, 11, 4, 21, 0, tzinfo=TOKYO))
    [request] = tick.run_requests
    assert ran["job"] == defs.resolve_schedule_def("nightly_refresh").job_name == "nightly_refresh_job"
    scheduled = {k: v for k, v in request.tags.items() if k != "dagster/schedule_name"}
    assert ran["tags"].pop(CLI_PID_TAG) == str(os.getpid())
    assert ran["tags"] == scheduled and ran["tags"][ASSET_PARTITION_RANGE_START_TAG] == "2021-04"
    assert ran["run_config"] is None and not request.run_config


@pytest.mark.parametrize("metadata, retrain", [
    ({"files_applied": dg.IntMetadataValue(1)}, True),
    ({"files_applied": 2}, True),
    ({"files_applied": dg.IntMetadataValue(0), "rows_inserted": 0}, False),
    ({}, False),
])
def test_a_survey_retrains_only_when_a_new_file_was_applied(metadata, retrain):
    assert schedules.survey_brought_files(metadata) is retrain


def test_the_survey_sensor_starts_from_the_latest_staging_then_retrains_on_a_new_file(defs):
    instance = dg.DagsterInstance.ephemeral()
    sensor = defs.get_repository_def().get_sensor_def("retrain_on_survey")
    assert sensor.job_name == "retrain_job"

    def stage(applied):
        instance.report_runless_asset_event(dg.AssetMaterialization(schedules.SURVEY_KEY,
                                                                    metadata={"files_applied": applied}))

    def tick(cursor):
        with dg.build_sensor_context(instance=instance, cursor=cursor) as ctx:
            return sensor.evaluate_tick(ctx)

    stage(1)  # `toda demo`: staged and trained in the same run
    first = tick(None)  # the UI opened after the demo: no retraining
    assert first.run_requests == [] and "latest staging" in first.skip_message and first.cursor
    stage(0)  # the nightly restaged it: nothing new
    second = tick(first.cursor)
    assert second.run_requests == [] and "without a new file" in second.skip_message
    stage(1)  # a new survey file landed and was staged ...
    stage(0)  # ... and restaged before the sensor looked: still retrains
    [request] = tick(second.cursor).run_requests
    assert request.tags[ASSET_PARTITION_RANGE_START_TAG] == as_of_months.get_partition_keys()[0]


def test_runs_left_in_progress_by_a_stopped_daemon_are_failed_at_its_start():
    instance = dg.DagsterInstance.ephemeral()
    S = dg.DagsterRunStatus

    def run(status, tags=None):
        return instance.add_run(dg.DagsterRun(job_name="nightly_refresh_job", status=status, tags=tags or {})).run_id

    daemons = run(S.STARTED)
    starting = run(S.STARTING)
    dead_cli = run(S.STARTED, {CLI_PID_TAG: "4242"})
    live_cli = run(S.STARTED, {CLI_PID_TAG: "777"})
    done = run(S.SUCCESS)
    queued = run(S.NOT_STARTED)  # waiting: the queue starts it later
    failed = fail_orphaned_runs(instance, pid_alive=lambda pid: pid == 777)
    assert set(failed) == {daemons, starting, dead_cli}
    status = {r: instance.get_run_by_id(r).status for r in (daemons, dead_cli, live_cli, done, queued)}
    assert status == {daemons: S.FAILURE, dead_cli: S.FAILURE, live_cli: S.STARTED, done: S.SUCCESS,
                      queued: S.NOT_STARTED}
    failure = instance.all_logs(daemons, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert len(failure) == 1  # what the run-failure sensor turns into an alert


def test_the_instance_config_is_rewritten_unless_someone_replaced_it(paths):
    from toda_platform.definitions import prepare_dagster_home

    config = paths.dagster_home / "dagster.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("# Written by `toda demo`. DuckDB takes one writer at a time.\nconcurrency: {}\n")
    prepare_dagster_home(paths)
    assert 'key: "toda/writer"' in config.read_text() and "max_concurrent_runs: 1" in config.read_text()
    config.write_text("# ours\nrun_coordinator: {}\n")
    prepare_dagster_home(paths)
    assert config.read_text() == "# ours\nrun_coordinator: {}\n"


@pytest.mark.parametrize("flags, ablation", [([], False), (["--with-ablation"], True)])
def test_the_demo_leaves_the_ablation_to_its_own_job_unless_asked(tmp_path, monkeypatch, flags, ablation):
    """`toda demo` runs everything but the source ablation and says how to run it; the flag adds it."""
    from click.testing import CliRunner

    import synthcity as synth
    import toda_platform.cli as cli
    import toda_platform.definitions as definitions

    asked = {}

    class Done:
        success = True

    def fake_materialise_all(paths, **kw):
        asked.update(kw)
        return Done()

    home = tmp_path / "toda"
    monkeypatch.setattr(synth, "generate_city", lambda *a, **k: None)
    monkeypatch.setattr(definitions, "materialise_all", fake_materialise_all)
    monkeypatch.setattr(cli, "_print_summary", lambda paths: None)
    monkeypatch.setenv("TODA_PSEUDONYM_KEY", "k" * 40)
    result = CliRunner().invoke(cli.main, ["demo", "--home", str(home), *flags])
    assert result.exit_code == 0, result.output
    assert asked == {"ablation": ablation}
    assert ("toda ablation --home" in result.output) is not ablation


def test_the_nightly_job_leaves_the_weekly_assets_out_and_the_demo_only_the_ablation(defs):
    everything = set(defs.resolve_asset_graph().get_all_asset_keys())
    nightly = defs.resolve_job_def(schedules.nightly_job.name).asset_layer.selected_asset_keys
    assert MODEL_KEY in nightly and RISK_SCORES_KEY in nightly and SNAPSHOT_KEY in nightly
    assert nightly == everything - {ABLATION_KEY, SUPPORT_KEY}
    assert set(schedules.EVERYTHING_BUT_ABLATION.resolve(defs.resolve_asset_graph())) == everything - {ABLATION_KEY}
    weekly = {s.name: s for s in schedules.schedules}["weekly_support_effects"]
    assert weekly.cron_schedule == "0 3 * * 0" and weekly.execution_timezone == "Asia/Tokyo"
    assert defs.resolve_job_def(weekly.job_name).asset_layer.selected_asset_keys == {SUPPORT_KEY}
