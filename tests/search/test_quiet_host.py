"""Workers pause while one of them measures: no step of another worker's work overlaps a measurement."""
import threading
import time

import pytest

from fusionnas.search.quiet_host import QuietHost


def _worker(folder, step_s, log, started, done, measure_at=None, windows=None):
    """Steps of ``step_s`` until ``done`` is set, each logged as (begin, end); measures after step
    ``measure_at`` (in ``windows``) without leaving its work."""
    host = QuietHost(folder)
    with host.working():
        while not done.is_set():
            begin = time.monotonic()
            time.sleep(step_s)
            log.append((begin, time.monotonic()))
            if len(log) == 3:
                started.release()
            if len(log) == measure_at:
                with host.measuring():
                    windows.append((time.monotonic(), time.sleep(0.05) or time.monotonic()))
            host.pause_point()


def test_no_step_of_another_worker_overlaps_a_measurement(tmp_path):
    logs, threads, windows = [[], [], []], [], []
    started, done = threading.Semaphore(0), threading.Event()
    for i, log in enumerate(logs):  # the third worker measures in the midst of its own work
        measure_at = 10 if i == 2 else None
        threads.append(threading.Thread(target=_worker, args=(tmp_path, 0.01, log, started, done, measure_at, windows)))
        threads[-1].start()
    for _ in logs:
        started.acquire()  # every worker is working
    for _ in range(3):
        with QuietHost(tmp_path).measuring():  # a worker between trials
            windows.append((time.monotonic(), time.sleep(0.05) or time.monotonic()))
    deadline = time.monotonic() + 30
    while len(windows) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    last = max(end for _, end in windows)
    while not all(log[-1][0] > last for log in logs) and time.monotonic() < deadline:
        time.sleep(0.01)
    done.set()
    for thread in threads:
        thread.join(timeout=60)
    assert len(windows) == 4
    for log in logs:
        assert log[-1][0] > max(end for _, end in windows)  # every worker went on after the measurements
    for i, log in enumerate(logs):
        for begin, end in windows:
            assert not [s for s in log if s[0] < end and s[1] > begin], f"worker {i} stepped during a measurement"


def test_a_worker_without_folder_never_waits():
    host = QuietHost(None)
    with host.working(), host.measuring(), host.paused():
        host.pause_point()


def test_waiting_for_a_measurement_can_be_stopped(tmp_path):
    class Stop(Exception):
        pass

    def stop():
        raise Stop

    with QuietHost(tmp_path).measuring():
        with pytest.raises(Stop), QuietHost(tmp_path, poll=stop).working():
            pass
