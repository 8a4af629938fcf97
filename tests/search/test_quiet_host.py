"""Training pauses while a worker measures: no training step overlaps a measurement."""
import threading
import time

import pytest

from fusionnas.search.quiet_host import QuietHost


def _trainer(folder, step_s, log, started, done):
    """Optimiser steps of ``step_s`` until ``done`` is set, each logged as (begin, end)."""
    with QuietHost(folder).training() as pause_point:
        while not done.is_set():
            begin = time.monotonic()
            time.sleep(step_s)
            log.append((begin, time.monotonic()))
            if len(log) == 3:
                started.release()
            pause_point()


def test_no_training_step_of_any_worker_overlaps_a_measurement(tmp_path):
    logs, threads = [[], []], []
    started, done = threading.Semaphore(0), threading.Event()
    for log in logs:
        threads.append(threading.Thread(target=_trainer, args=(tmp_path, 0.01, log, started, done)))
        threads[-1].start()
    for _ in logs:
        started.acquire()  # both workers are training
    windows = []
    for _ in range(3):
        with QuietHost(tmp_path).measuring():
            begin = time.monotonic()
            time.sleep(0.05)
            windows.append((begin, time.monotonic()))
    time.sleep(0.1)
    done.set()
    for thread in threads:
        thread.join(timeout=60)
    for log in logs:
        assert log[-1][0] > windows[-1][1]  # the worker went on training after the measurements
        for begin, end in windows:
            assert not [s for s in log if s[0] < end and s[1] > begin], "a step ran during a measurement"
        # every measurement fell inside this worker's training, so it waited out each of them
        assert sum(b - a > 0.04 for (a, _), (b, _) in zip(log, log[1:])) >= 1


def test_a_worker_without_folder_never_waits(tmp_path):
    host = QuietHost(None)
    with host.training() as pause_point, host.measuring():
        pause_point()


def test_waiting_for_a_measurement_can_be_stopped(tmp_path):
    class Stop(Exception):
        pass

    def stop():
        raise Stop

    with QuietHost(tmp_path).measuring():
        with pytest.raises(Stop), QuietHost(tmp_path, poll=stop).training():
            pass
