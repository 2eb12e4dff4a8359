"""The pure scheduler: queue, chunk sizing, prefetch, in-flight bookkeeping and the watchdog.
No MPI, no database, no clock: times are plain numbers."""
from __future__ import annotations

from emews_py.farm.scheduler import (MAX_CHUNK, Running, Scheduler, Stuck, stuck_after,
                                     trial_stuck_after)


def sched(n: int = 2, timeout: float | None = None) -> Scheduler:
    return Scheduler(list(range(1, n + 1)), stuck_after(timeout))


def test_unknown_duration_goes_one_at_a_time_and_prefetches_only_with_more_work_than_workers():
    s = sched(2)
    s.submit([1, 2, 3, 4, 5])
    first = s.assign(0.0)
    assert first == [(1, [1]), (2, [2])]
    # more work (3 queued) than workers (2): one more waits at the first worker; then 2 are
    # left for 2 workers, and nobody holds a trial another could start
    assert s.assign(0.0) == [(1, [3])]
    assert s.assign(0.0) == []
    assert list(s.queue) == [4, 5] and s.n_inflight == 3


def test_no_prefetch_when_work_is_scarce():
    s = sched(3)
    s.submit([1, 2, 3, 4])
    assert s.assign(0.0) == [(1, [1]), (2, [2]), (3, [3])]
    # one left for three busy workers: nobody holds it, the first worker to finish takes it
    assert s.assign(0.0) == []
    s.on_chunk_done(2, [2], 1.0)
    assert s.assign(1.0) == [(2, [4])]


def test_fast_trials_travel_in_chunks_of_at_most_512():
    s = sched(2)
    s.observe(0.0001)
    s.submit(list(range(5000)))
    (r1, c1), (r2, c2) = s.assign(0.0)
    assert len(c1) == MAX_CHUNK and len(c2) == MAX_CHUNK
    assert c1 == list(range(512))  # in queue order: the worker runs them in this order
    s2 = sched(3)
    s2.observe(0.001)
    s2.submit(list(range(30)))
    assert [len(c) for _, c in s2.assign(0.0)] == [10, 6, 4]  # a share of what is left


def test_a_slow_trial_switches_to_one_at_a_time_at_once():
    s = sched(2)
    s.observe(0.0001)
    s.submit(list(range(100)))
    s.assign(0.0)
    s.on_chunk_done(1, list(range(50)), 0.1)
    s.observe(2.0)  # one slow trial: no more chunks, not after a lagging mean catches up
    assert not s.fast
    assert [len(c) for _, c in s.assign(0.1)] == [1, 1]
    for _ in range(200):
        s.observe(0.0001)
    assert s.fast  # and back to chunks once trials are fast again


def test_free_counts_idle_workers_in_service():
    s = sched(3)
    assert s.free() == 3
    s.submit([1])
    assert s.free() == 2
    s.assign(0.0)
    assert s.free() == 2 and s.busy
    s.on_chunk_done(1, [1], 1.0)
    assert s.free() == 3 and not s.busy


def test_progress_tracks_the_trial_actually_running_in_a_chunk():
    s = sched(1)
    s.observe(0.0001)
    s.submit([10, 11, 12, 13])
    assert s.assign(5.0) == [(1, [10, 11, 12, 13])]
    assert s.running[1] == Running(10, 5.0)
    s.on_progress(1, [10, 11], 12, 7.5)  # 10 and 11 finished; 12 runs since 7.5
    assert s.running[1] == Running(12, 7.5)
    assert s.n_inflight == 2
    s.on_chunk_done(1, [12, 13], 9.0)
    assert s.n_inflight == 0 and 1 not in s.running


def test_next_prefetched_chunk_starts_when_the_previous_is_answered():
    s = sched(1)
    s.submit([1, 2, 3])
    s.assign(0.0)
    s.assign(0.0)
    assert s.running[1] == Running(1, 0.0)
    s.on_chunk_done(1, [1], 4.0)
    assert s.running[1] == Running(2, 4.0)


def test_watchdog_blames_the_running_trial_from_its_own_start_and_requeues_only_unstarted():
    s = sched(2, timeout=1.0)  # the rank is stuck after 1 + 10 s grace + 60 s
    s.observe(0.0001)
    s.submit([1, 2, 3, 4, 5, 6, 7, 8])
    assert s.assign(0.0) == [(1, [1, 2, 3, 4]), (2, [5, 6])]
    s.on_progress(1, [1, 2], 3, 8.0)       # 1, 2 done at worker 1; 3 runs since t = 8
    s.on_chunk_done(2, [5, 6], 1.0)
    assert s.watchdog(72.0) == []          # 72 s after the chunk went out, but only 64 s for 3
    v = s.watchdog(79.5)
    assert v == [Stuck(rank=1, trial_id=3, since=8.0, requeued=(4,))]
    assert list(s.queue) == [4, 7, 8] and s.out == {1}  # 4 first: it was submitted first
    assert s.n_inflight == 0 and not s.all_out
    # the written-off worker gets nothing more; a late answer from it changes nothing
    assert s.assign(80.0) == [(2, [4])]
    s.on_chunk_done(1, [3, 4], 90.0)
    assert s.n_inflight == 1


def test_slow_healthy_trials_one_after_another_are_never_stuck():
    s = sched(1, timeout=5.0)  # stuck after 5 + 10 + 60 s
    s.submit(list(range(10)))
    s.assign(0.0)
    for i in range(10):  # each takes 70 s: far more than 75 s in total, never 75 s for one
        now = 70.0 * (i + 1)
        assert s.watchdog(now - 0.1) == []
        s.on_chunk_done(1, [i], now)
        s.assign(now)
    assert not s.out


def test_no_watchdog_without_a_time_limit():
    s = sched(1)
    s.submit([1])
    s.assign(0.0)
    assert s.watchdog(1e9) == []


def test_all_out_when_every_worker_is_stuck():
    s = sched(1, timeout=1.0)
    s.submit([1, 2, 3])
    s.assign(0.0)
    s.assign(0.0)
    v = s.watchdog(100.0)
    assert v == [Stuck(1, 1, 0.0, (2,))] and s.all_out and list(s.queue) == [2, 3]


def test_drop_and_unqueue():
    s = sched(1)
    s.submit([1, 2, 3])
    assert s.unqueue(2) and not s.unqueue(2)
    assert s.drop_queued() == [1, 3] and not s.queue


def test_stuck_after_is_timeout_plus_grace():
    # the worker kills a trial's interpreter at TIMEOUT plus grace (the larger of 10 s and 25%);
    # the driver's watchdog, a backstop for a rank that stops answering, waits 60 s more
    assert trial_stuck_after(None) is None and stuck_after(None) is None
    assert trial_stuck_after(1.0) == 11.0 and stuck_after(1.0) == 71.0
    assert trial_stuck_after(100.0) == 125.0 and stuck_after(100.0) == 185.0
