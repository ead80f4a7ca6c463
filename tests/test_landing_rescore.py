"""A landing becomes a new list without waiting for the schedule: the debounce of the rescoring
after the landing sensor's runs (toda_platform/landing_rescore.py) and its sensor."""

from __future__ import annotations

import dagster as dg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assets.marts import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG, as_of_months
from assets.models import RISK_SCORES_KEY
from assets.sensors import AFTER_LANDING_TAG, LANDING_TAG, list_sources
from assets.scope import Scope
from toda_platform import landing_rescore
from toda_platform.landing_rescore import MAX_RETRIES, QUIET_ENV, LandingRun, ListRun, decide, decide_retry
from toda_platform.warehouse import WRITER_TAG

QUIET, LONGEST, TICK = 180.0, 1800.0, 30.0
LIST = {"attendance_daily", "mood_checkin", "nurse_office_visits", "pupil_registry"}


def run(i: int, ended: float, *sources: str, took: float = 60.0) -> LandingRun:
    return LandingRun(f"run{i}", ended - took, ended, frozenset(sources or ("attendance_daily",)))


def simulate(noticed: list[float], until: float, took: list[float] | None = None) -> list[float]:
    """The sensor ticking every 30 s from 0 to ``until`` over landing runs asked for at
    ``noticed`` and taking ``took`` seconds (a run is active until it ends, then visible): when
    it asked for a rescoring."""
    cursor, asked, now = None, [], 0.0
    took = took or [60.0] * len(noticed)
    landings = [run(i, n + t, took=t) for i, (n, t) in enumerate(zip(noticed, took))]
    while now <= until:
        d = decide([r for r in landings if r.ended_at <= now], cursor, now=now, relevant=LIST,
                   landing_active=any(r.noticed_at <= now < r.ended_at for r in landings),
                   quiet=QUIET, longest_wait=LONGEST)
        if d.request:
            asked.append(now)
        cursor, now = d.cursor, now + TICK
    return asked


def test_nothing_new_asks_for_nothing():
    d = decide([run(1, 100.0)], 100.0, now=1000.0, relevant=LIST)
    assert not d.request and d.cursor == 100.0 and "no landing run" in d.reason


def test_a_settled_landing_asks_once_with_its_run_as_key():
    landings = [run(1, 100.0, "mood_checkin"), run(2, 150.0, "attendance_daily", "teacher_survey")]
    d = decide(landings, None, now=150.0 - 60.0 + QUIET, relevant=LIST, quiet=QUIET)
    assert d.request and d.run_key == "rescore:run2" and d.cursor == 150.0
    assert d.sources == ("attendance_daily", "mood_checkin")  # teacher_survey: not read by the list
    again = decide(landings, d.cursor, now=1000.0, relevant=LIST, quiet=QUIET)
    assert not again.request


def test_it_waits_for_quiet_and_for_a_landing_run_still_going():
    landings = [run(1, 100.0)]
    early = decide(landings, 0.0, now=100.0 - 60.0 + QUIET - 1, relevant=LIST, quiet=QUIET)
    assert not early.request and early.cursor == 0.0 and "settle" in early.reason
    busy = decide(landings, 0.0, now=100.0 + QUIET + 60, relevant=LIST, quiet=QUIET, landing_active=True)
    assert not busy.request and busy.cursor == 0.0 and "landing run is queued or running" in busy.reason


def test_landings_the_list_does_not_read_move_the_cursor_only():
    d = decide([run(1, 100.0, "teacher_survey")], 0.0, now=1000.0, relevant=LIST)
    assert not d.request and d.cursor == 100.0


def test_a_list_built_since_or_a_rebuild_waiting_in_the_queue_covers_the_landing():
    built = decide([run(1, 100.0)], 0.0, now=1000.0, relevant=LIST, list_built_at=120.0)
    assert not built.request and built.cursor == 120.0
    queued = decide([run(1, 100.0)], 0.0, now=1000.0, relevant=LIST, rescoring_queued=True)
    assert not queued.request and queued.cursor == 100.0 and "queued" in queued.reason


def test_six_files_over_ten_minutes_give_one_rescoring_soon_after_the_last():
    # a file every two minutes, each noticed by the landing sensor a minute later and staged by
    # its own run of 75 s
    noticed = [60.0 + 120.0 * k for k in range(6)]
    asked = simulate(noticed, until=3600.0, took=[75.0] * 6)
    assert len(asked) == 1
    assert noticed[-1] + QUIET <= asked[0] <= noticed[-1] + QUIET + TICK


def test_a_steady_trickle_gets_a_list_within_the_longest_wait():
    noticed = [60.0 * k for k in range(1, 90)]  # a landing run every minute for an hour and a half
    asked = simulate(noticed, until=7200.0, took=[30.0] * len(noticed))
    assert asked and asked[0] <= noticed[0] + 30.0 + LONGEST + TICK
    assert all(b - a >= LONGEST - TICK for a, b in zip(asked, asked[1:]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.floats(min_value=0, max_value=3000, allow_nan=False),
                          st.floats(min_value=5, max_value=300, allow_nan=False)), min_size=1, max_size=30))
def test_every_landing_is_scored_and_bursts_are_not_split(runs):
    runs = sorted(runs)
    noticed, took = [n for n, _ in runs], [t for _, t in runs]
    last_end = max(n + t for n, t in runs)
    asked = simulate(noticed, until=last_end + LONGEST + QUIET + 2 * TICK, took=took)
    # the last request comes after the last landing run ended: nothing is left unscored
    assert asked and asked[-1] >= last_end
    # never more requests than bursts (landings noticed a quiet gap apart) — a burst longer than
    # the longest wait gets one list per longest wait — and one for a short burst
    bursts = 1 + sum(1 for a, b in zip(noticed, noticed[1:]) if b - a >= QUIET)
    assert len(asked) <= bursts + 1 + int((last_end - noticed[0]) // LONGEST)
    if last_end - noticed[0] < LONGEST - QUIET - TICK and bursts == 1:
        assert len(asked) == 1


# --- the sensor, on a Dagster instance --------------------------------------------------------

@pytest.fixture
def defs(paths):
    from toda_platform.definitions import build_definitions

    return build_definitions(paths)


@dg.op
def _noop():
    pass


@dg.job
def _landing():
    _noop()


def _land(instance, sources: str) -> str:
    """A landing run that succeeded, as the landing sensor's runs are tagged."""
    return _landing.execute_in_process(instance=instance, tags={LANDING_TAG: sources}).run_id


def _tick(defs, instance, cursor=None):
    sensor = defs.get_repository_def().get_sensor_def("rescore_after_landing")
    with dg.build_sensor_context(instance=instance, cursor=cursor,
                                 repository_def=defs.get_repository_def()) as ctx:
        return sensor.evaluate_tick(ctx)


def test_the_list_reads_the_pupil_sources_and_not_the_teachers_surveys(defs):
    sources = list_sources(defs.resolve_asset_graph(), Scope(), RISK_SCORES_KEY)
    assert {"attendance_daily", "mood_checkin", "nurse_office_visits", "pupil_registry", "school_master"} <= sources
    assert not sources & {"teacher_overtime", "teacher_stress_check", "teacher_survey"}


def test_the_sensor_rescoring_after_a_landing(defs, monkeypatch):
    instance = dg.DagsterInstance.ephemeral()
    sensor = defs.get_repository_def().get_sensor_def("rescore_after_landing")
    assert sensor.job_name == "morning_rescoring_job"
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    instance.report_runless_asset_event(dg.AssetMaterialization(RISK_SCORES_KEY))  # `toda demo`
    first = _tick(defs, instance)
    assert first.run_requests == [] and "no landing run" in first.skip_message

    _land(instance, "teacher_survey")  # the list does not read it
    other = _tick(defs, instance, first.cursor)
    assert other.run_requests == [] and "no source the list reads" in other.skip_message

    landed = _land(instance, "school_master,attendance_daily")
    waiting = _tick(defs, instance, other.cursor)  # just ended: the default 180 s of quiet
    assert waiting.run_requests == [] and "settle" in waiting.skip_message

    # a landing run queued behind it: wait for it even once quiet
    monkeypatch.setenv(QUIET_ENV, "0")
    queued = instance.add_run(dg.DagsterRun(job_name="__ASSET_JOB", status=dg.DagsterRunStatus.NOT_STARTED,
                                            tags={LANDING_TAG: "mood_checkin"}))
    busy = _tick(defs, instance, waiting.cursor)
    assert busy.run_requests == [] and "queued or running" in busy.skip_message
    instance.report_run_canceled(queued)

    tick = _tick(defs, instance, busy.cursor)
    [request] = tick.run_requests
    keys = as_of_months.get_partition_keys()
    assert request.run_key == f"rescore:{landed}"
    assert (request.tags[ASSET_PARTITION_RANGE_START_TAG], request.tags[ASSET_PARTITION_RANGE_END_TAG]) == \
        (keys[-2], keys[-1])
    assert request.tags[AFTER_LANDING_TAG] == "attendance_daily,school_master"
    assert request.tags["dagster/priority"] == "1"  # before the automation sensor's queued runs
    assert defs.resolve_job_def(sensor.job_name).tags[WRITER_TAG] == "warehouse"
    after = _tick(defs, instance, tick.cursor)  # asked for: not again
    assert after.run_requests == []


def test_a_queued_nightly_run_or_a_list_built_since_covers_the_landing(defs, monkeypatch):
    monkeypatch.setenv(QUIET_ENV, "0")
    instance = dg.DagsterInstance.ephemeral()
    _land(instance, "attendance_daily")
    nightly = instance.add_run(dg.DagsterRun(job_name="nightly_refresh_job", status=dg.DagsterRunStatus.NOT_STARTED))
    covered = _tick(defs, instance)
    assert covered.run_requests == [] and "queued" in covered.skip_message
    instance.report_run_canceled(nightly)

    _land(instance, "attendance_daily")
    instance.report_runless_asset_event(dg.AssetMaterialization(RISK_SCORES_KEY))  # e.g. the morning run
    built = _tick(defs, instance, covered.cursor)
    assert built.run_requests == [] and "no landing run" in built.skip_message


def test_each_city_of_a_deployment_rescores_after_its_own_landings_only(tmp_path, monkeypatch):
    from toda_platform.definitions import build_deployment_definitions
    from toda_platform.deployment import CITY_TAG, Deployment

    monkeypatch.setenv(QUIET_ENV, "0")
    deployment = Deployment.from_env(tmp_path / "deployment")
    for city in ("toda", "warabi"):
        deployment.add_city(city)
    monkeypatch.setenv("TODA_DEPLOYMENT", str(deployment.root))
    defs = build_deployment_definitions(deployment)
    repo = defs.get_repository_def()
    instance = dg.DagsterInstance.ephemeral()
    landed = _landing.execute_in_process(instance=instance, tags={LANDING_TAG: "attendance_daily",
                                                                  CITY_TAG: "warabi"}).run_id

    def tick(city):
        with dg.build_sensor_context(instance=instance, repository_def=repo) as ctx:
            return repo.get_sensor_def(f"{city}__rescore_after_landing").evaluate_tick(ctx)

    assert tick("toda").run_requests == []
    [request] = tick("warabi").run_requests
    assert request.run_key == f"rescore:{landed}"
    job = defs.resolve_job_def(repo.get_sensor_def("warabi__rescore_after_landing").job_name)
    assert job.name == "warabi__morning_rescoring_job" and job.tags[CITY_TAG] == "warabi"


# --- a failed list run is retried -------------------------------------------------------------

def failed(attempt=0, checks=(), started=1000.0, ended=1100.0, run_id="r1"):
    return ListRun(run_id, "morning_rescoring_job", True, started, ended, attempt, tuple(checks))


def test_an_error_is_retried_with_a_growing_wait_then_left_to_the_schedule():
    assert not decide_retry(None, now=5000.0, published_at=None).request
    ok = ListRun("r0", "nightly_refresh_job", False, 1000.0, 1100.0)
    assert not decide_retry(ok, now=5000.0, published_at=None).request
    early = decide_retry(failed(), now=1100.0 + 299, published_at=500.0)
    assert not early.request and "retry 1 of 3 in 1 s" in early.reason
    first = decide_retry(failed(), now=1100.0 + 300, published_at=500.0)
    assert first.request and first.attempt == 1 and first.run_key == "retry:r1"
    # the retry failed too: twice the wait before the second
    assert not decide_retry(failed(1, run_id="r2"), now=1100.0 + 599, published_at=500.0).request
    second = decide_retry(failed(1, run_id="r2"), now=1100.0 + 600, published_at=500.0)
    assert second.request and second.attempt == 2 and second.run_key == "retry:r2"
    third = decide_retry(failed(2, run_id="r3"), now=1100.0 + 1200, published_at=500.0)
    assert third.request and third.attempt == 3
    given_up = decide_retry(failed(3, run_id="r4"), now=1e9, published_at=500.0)
    assert not given_up.request and "after 3 retries" in given_up.reason


def test_no_retry_once_a_list_was_published_in_or_after_the_failed_run_or_one_is_coming():
    assert not decide_retry(failed(), now=1e9, published_at=1050.0).request  # in the run, before a later step failed
    assert decide_retry(failed(), now=1e9, published_at=999.0).request
    busy = decide_retry(failed(), now=1e9, published_at=None, list_active=True)
    assert not busy.request and "queued or running" in busy.reason


def test_a_run_stopped_by_a_blocking_check_waits_until_that_check_passes():
    gate = "scoring/feature_drift:drift_within_limit"
    stopped = failed(checks=[gate])
    held = decide_retry(stopped, now=1e9, published_at=None)
    assert not held.request and gate in held.reason and "accept the drift" in held.reason
    assert not decide_retry(stopped, now=1e9, published_at=None, passed_since={"other:check"}).request
    again = decide_retry(stopped, now=1e9, published_at=None, passed_since={gate})
    assert again.request and again.attempt == 1


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5)), min_size=1, max_size=30),
       st.floats(0, 1e6))
def test_never_more_than_the_retries_allowed_after_one_error(outcomes, delay):
    """However long each retry waits: at most MAX_RETRIES retries follow one failed run."""
    last, asked = failed(), 0
    now = last.ended_at
    for _, extra in outcomes:
        now += delay + extra
        d = decide_retry(last, now=now, published_at=None)
        if d.request:
            asked += 1
            last = failed(d.attempt, started=now, ended=now + 60, run_id=f"r{asked + 1}")
            now += 60
    assert asked <= MAX_RETRIES


@dg.op
def _crash():
    raise RuntimeError("the warehouse process was killed")


def _failed_list_run(instance, name: str, **tags) -> str:
    job = dg.GraphDefinition(name=name, node_defs=[_crash]).to_job()
    return job.execute_in_process(instance=instance, raise_on_error=False, tags=tags).run_id


def test_the_sensor_retries_a_failed_rescoring_after_the_wait(defs, monkeypatch):
    instance = dg.DagsterInstance.ephemeral()
    first = _tick(defs, instance)
    assert first.run_requests == []
    failed_id = _failed_list_run(instance, "morning_rescoring_job")
    waiting = _tick(defs, instance, first.cursor)
    assert waiting.run_requests == [] and "retry 1 of 3 in" in waiting.skip_message
    monkeypatch.setenv(landing_rescore.RETRY_ENV, "0")
    [request] = _tick(defs, instance, waiting.cursor).run_requests
    assert request.run_key == f"retry:{failed_id}" and request.tags[landing_rescore.RETRY_TAG] == "1"
    assert request.tags["dagster/priority"] == "1"
    # the retry failed as well, three times: then the schedule
    for attempt in (1, 2, 3):
        _failed_list_run(instance, "morning_rescoring_job", **{landing_rescore.RETRY_TAG: str(attempt)})
    last = _tick(defs, instance, waiting.cursor)
    assert last.run_requests == [] and "after 3 retries" in last.skip_message


def test_the_sensor_retries_a_list_stopped_by_the_drift_gate_once_the_gate_passes(defs, monkeypatch):
    from assets.models import DRIFT_KEY

    monkeypatch.setenv(landing_rescore.RETRY_ENV, "0")
    verdict = {"passed": False}

    @dg.asset(key=DRIFT_KEY)
    def drift():
        return None

    @dg.asset_check(asset=DRIFT_KEY, name="drift_within_limit", blocking=True)
    def gate():
        return dg.AssetCheckResult(passed=verdict["passed"])

    jobs = dg.Definitions(assets=[drift], asset_checks=[gate], jobs=[
        dg.define_asset_job(name, selection=[DRIFT_KEY]) for name in ("morning_rescoring_job", "drift_report_job")])
    instance = dg.DagsterInstance.ephemeral()
    stopped = jobs.resolve_job_def("morning_rescoring_job").execute_in_process(instance=instance, raise_on_error=False)
    assert not stopped.success
    held = _tick(defs, instance)
    assert held.run_requests == [] and "drift_within_limit" in held.skip_message and "accept" in held.skip_message

    verdict["passed"] = True  # a person accepted the drifted features in a run of the drift asset
    assert jobs.resolve_job_def("drift_report_job").execute_in_process(instance=instance).success
    [request] = _tick(defs, instance, held.cursor).run_requests
    assert request.run_key == f"retry:{stopped.run_id}"
