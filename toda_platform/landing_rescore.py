"""When a landing becomes a new risk list: the rescoring after the landing sensor's runs.

The landing sensor stages new files at once (``landing_watch``); the list is rebuilt by a
rescoring run (the morning rescoring job: the latest as-of months of the marts, the drift gate,
the risk list, the snapshot; no model is trained). This module decides, at each tick of the
``rescore_after_landing`` sensor, whether to ask for one now:

* only landing runs that *succeeded* count, and only those that staged a source the list reads
  (a new support record does not change a score: the snapshot follows it by itself);
* only those that ended after the list was last built — the end of the last landing run a
  rescoring was asked for (the sensor's cursor), or the latest materialisation of the list
  (a nightly or morning run since covered them);
* debounced: it waits until no landing run is queued or running and the landing sensor has
  noticed no new file for ``quiet`` seconds (counted from when it asked for its last run, not
  from that run's end: the staging time is not waited twice), so a department that drops its
  files one after another over several minutes gets one rescoring — but never longer than
  ``longest_wait`` after the first unscored landing, so a steady trickle cannot hold the list
  back;
* a rescoring (or nightly) run of the city still waiting in the queue reads them when it
  starts: nothing more is asked.

When the last run that rebuilds the list failed, ``decide_retry`` says whether to ask again
(after an error, with a growing wait; after a failed blocking check, once it passes).

Two writers never run on one city at once: the requested run carries the writer (and city) tag
and waits in the run queue. Plain functions, no Dagster: ``assets/sensors.py`` wires them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

QUIET_ENV = "TODA_RESCORE_QUIET_SECONDS"
QUIET_SECONDS = 180.0  # no new file noticed for this long: the department's drop is over
LONGEST_WAIT_SECONDS = 1800.0  # a list at most this long after the first unscored landing


def _seconds(env: str, default: float) -> float:
    value = os.environ.get(env, "").strip()
    return float(value) if value else default


def quiet_seconds() -> float:
    """The debounce (``TODA_RESCORE_QUIET_SECONDS``, default 180 s)."""
    return _seconds(QUIET_ENV, QUIET_SECONDS)


@dataclass(frozen=True)
class LandingRun:
    run_id: str
    noticed_at: float  # epoch seconds: when the landing sensor asked for the run
    ended_at: float  # epoch seconds
    sources: frozenset[str]  # the source keys it staged (the landing tag)


@dataclass(frozen=True)
class Decision:
    request: bool
    cursor: float | None  # the end of the last landing run that is (or is being) scored
    reason: str
    run_key: str | None = None
    sources: tuple[str, ...] = ()  # the list-relevant sources the rescoring follows
    attempt: int = 0  # a retry of a failed list run: which one


def decide(landings: Iterable[LandingRun], cursor: float | None, *, now: float, relevant: Iterable[str],
           list_built_at: float | None = None, landing_active: bool = False,
           rescoring_queued: bool = False, quiet: float = QUIET_SECONDS,
           longest_wait: float = LONGEST_WAIT_SECONDS) -> Decision:
    """Whether to ask for a rescoring now, and the cursor to keep.

    ``landings``: this city's successful landing runs (any; those ended by ``cursor`` are
    ignored; None: none was scored yet); ``list_built_at``: when the risk list was last
    materialised (None: never); ``landing_active``: a landing run of the city is queued or running; ``rescoring_queued``: a
    run that rebuilds the list is queued and not yet started."""
    since = max((t for t in (cursor, list_built_at) if t is not None), default=None)
    new = sorted((r for r in landings if since is None or r.ended_at > since), key=lambda r: r.ended_at)
    if not new:
        return Decision(False, since, "no landing run succeeded since the list was last built or asked for")
    relevant = set(relevant)
    scored = [r for r in new if r.sources & relevant]
    if not scored:
        return Decision(False, new[-1].ended_at,
                        "the landing runs since the list was built staged no source the list reads")
    sources = tuple(sorted(set().union(*(r.sources & relevant for r in scored))))
    if rescoring_queued:
        return Decision(False, new[-1].ended_at,
                        "a run that rebuilds the list is queued: it reads these when it starts", sources=sources)
    waited = now - scored[0].ended_at
    if waited < longest_wait:
        if landing_active:
            return Decision(False, since, "a landing run is queued or running: waiting for it", sources=sources)
        calm = now - max(r.noticed_at for r in new)
        if calm < quiet:
            return Decision(False, since, f"waiting for the landing to settle: {calm:.0f} s without a "
                                          f"new file of {quiet:.0f} s", sources=sources)
    last = new[-1]
    return Decision(True, last.ended_at,
                    f"{len(scored)} landing run(s) staged {', '.join(sources)} since the list was built",
                    run_key=f"rescore:{last.run_id}", sources=sources)


# --- a failed list run is retried, not left until the next schedule ---------------------------

RETRY_TAG = "toda/list_retry"  # on a retry: which attempt it is (1, 2, …)
MAX_RETRIES = 3
RETRY_BACKOFF_SECONDS = 300.0  # after the first failure; doubled after each failed retry
RETRY_ENV = "TODA_LIST_RETRY_SECONDS"


def retry_backoff_seconds() -> float:
    """The wait before the first retry (``TODA_LIST_RETRY_SECONDS``, default 300 s)."""
    return _seconds(RETRY_ENV, RETRY_BACKOFF_SECONDS)


@dataclass(frozen=True)
class ListRun:
    """The latest run of the city that rebuilds the list (nightly, morning, retraining, a retry)."""
    run_id: str
    job: str
    failed: bool  # finished and failed (a success, or a run still going, is never retried)
    started_at: float  # epoch seconds
    ended_at: float | None
    attempt: int = 0  # 0: not itself a retry
    failed_checks: tuple[str, ...] = ()  # the blocking checks that failed in it ("asset:check")


def decide_retry(last: ListRun | None, *, now: float, published_at: float | None,
                 passed_since: Iterable[str] = (), list_active: bool = False,
                 max_retries: int = MAX_RETRIES, backoff: float = RETRY_BACKOFF_SECONDS) -> Decision:
    """Whether to ask again for the list after ``last`` failed (``published_at``: when the
    portal's snapshot was last written, None if never).

    A run that failed on an error (a crash, a lock, the machine out of memory) is retried after
    ``backoff`` seconds, doubled after each failed retry, at most ``max_retries`` times; then it
    waits for the next schedule. A run stopped by a blocking check (the drift gate, a source's
    check) is a question for a person: retrying changes nothing, so it is retried once every check
    that stopped it has passed since (``passed_since``: e.g. the drifted features accepted in a
    run of the drift asset). A new file is the landing path's business (``decide``)."""
    if last is None or not last.failed or last.ended_at is None:
        return Decision(False, None, "the last run that rebuilds the list did not fail")
    if published_at is not None and published_at >= last.started_at:
        return Decision(False, None, "a list was published in or since the last failed run")
    if list_active:
        return Decision(False, None, "a run that rebuilds the list is queued or running")
    key = f"retry:{last.run_id}"
    if last.failed_checks:
        waiting = sorted(set(last.failed_checks) - set(passed_since))
        if waiting:
            return Decision(False, None, f"{last.job} ({last.run_id}) was stopped by {', '.join(waiting)}: "
                                         f"retried once it passes (fix the source, or accept the drift)")
        return Decision(True, None, f"{', '.join(sorted(last.failed_checks))} passed since {last.job} "
                                    f"({last.run_id}) was stopped by it: the list again", run_key=key, attempt=1)
    if last.attempt >= max_retries:
        return Decision(False, None, f"{last.job} ({last.run_id}) failed after {last.attempt} retries: "
                                     f"the next schedule builds the list (see the alert)")
    wait = backoff * 2 ** last.attempt
    if now - last.ended_at < wait:
        return Decision(False, None, f"{last.job} ({last.run_id}) failed: retry {last.attempt + 1} of "
                                     f"{max_retries} in {wait - (now - last.ended_at):.0f} s")
    return Decision(True, None, f"{last.job} ({last.run_id}) failed: retry {last.attempt + 1} of {max_retries}",
                    run_key=key, attempt=last.attempt + 1)
