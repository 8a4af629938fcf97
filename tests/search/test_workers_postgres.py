"""Many `fusionnas search` workers on one PostgreSQL study.

Each worker is a separate process running the real command line with the same
study file and storage URL. ``--n-trials`` is the study's total (see
``fusionnas.search.runner``), so three workers given ``--n-trials 24`` share
24 trials between them. The study is zero-cost (synflow and FLOPs at 8x8, no
training): about a second of CPU per trial.

The server comes from the ``postgres_url`` fixture (tests/_postgres.py);
without PostgreSQL these tests skip locally and fail under CI=true.
"""
from __future__ import annotations

import re
import subprocess
import threading
import time
import uuid
from collections import Counter

import optuna
import psycopg2
import pytest
from optuna.storages._rdb import models as rdb_models
from optuna.trial import TrialState
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

import fusionnas.search.runner as runner
from _postgres import waiting_on_a_lock
from _studies import ZERO_COST_TOML
from _workers import finish, start_worker
from fusionnas.evaluators.data import get_dataset
from fusionnas.search import (
    SearchObjective,
    StudyContext,
    StorageOptions,
    count_trials,
    load_study_config,
    open_storage,
    open_study,
    run_study,
)
from fusionnas.spaces import get_space
from fusionnas.trial_record import StudyRecord, TrialRecord

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

WORKERS = 3
TOTAL = 24  # 3 workers x 8 trials
PROGRESS = re.compile(r"^\[\d+/\d+\] trial (\d+) ", re.MULTILINE)


def study_text(name: str, n_trials: int) -> str:
    return f'name = "{name}"\n' + ZERO_COST_TOML.replace("n_trials = 4", f"n_trials = {n_trials}")


@pytest.fixture(scope="module")
def three_workers(postgres_url, tmp_path_factory):
    """Three workers started together on one new study with --n-trials 24; (study, results)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # The tables exist before the workers start, as they do once any worker has run;
    # test_postgres_workers_started_on_an_empty_database covers a database without them.
    open_storage(postgres_url).engine.dispose()
    folder = tmp_path_factory.mktemp("workers")
    name = f"workers-{uuid.uuid4().hex[:8]}"
    (folder / "study.toml").write_text(study_text(name, TOTAL))
    workers = [start_worker(folder, "--storage", postgres_url, "--n-trials", str(TOTAL)) for _ in range(WORKERS)]
    results = finish(workers, timeout=300)
    study = optuna.load_study(study_name=name, storage=postgres_url)
    yield study, results
    optuna.delete_study(study_name=name, storage=postgres_url)


def test_postgres_three_workers_share_the_study(three_workers) -> None:
    study, results = three_workers
    for code, out, err in results:
        assert code == 0, (code, out[-2000:], err[-2000:])
        assert err.strip() == "", err[-2000:]
    trials = study.get_trials(deepcopy=False)
    assert Counter(t.state for t in trials) == {TrialState.COMPLETE: len(trials)}
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # no number given twice
    assert count_trials(study) == len(trials)
    # Each trial was run by exactly one worker, and every worker ran some.
    ran = [[int(n) for n in PROGRESS.findall(out)] for _, out, _ in results]
    assert all(ran), [len(r) for r in ran]
    assert sorted(n for numbers in ran for n in numbers) == list(range(len(trials)))
    assert len(trials) == TOTAL  # counting and asking are one step under the study's lock


def test_postgres_three_workers_finish_exactly_their_total(three_workers) -> None:
    study, results = three_workers
    trials = study.get_trials(deepcopy=False)
    assert Counter(t.state for t in trials)[TrialState.COMPLETE] == TOTAL
    assert count_trials(study) == TOTAL
    assert all(f"study {study.study_name}: {TOTAL} trials" in out.splitlines()[-1] for _, out, _ in results)


def test_postgres_workers_never_evaluate_an_archid_twice_at_one_budget(three_workers) -> None:
    study, _ = three_workers
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    records = {number: TrialRecord.read(t) for number, t in trials.items()}
    fingerprint = StudyRecord.read(study).fingerprint
    assert fingerprint is not None and all(r.archid is not None for r in records.values())
    assert {r.fingerprint for r in records.values()} == {fingerprint}  # one budget
    evaluated = [r for r in records.values() if r.reused_from is None]
    assert all(r.evaluated for r in evaluated)
    archids = Counter((r.archid, r.fingerprint) for r in evaluated)
    assert [key for key, n in archids.items() if n > 1] == []
    for number, record in records.items():  # a reused result is an evaluated trial's, unchanged
        if record.reused_from is not None:
            source = records[record.reused_from]
            assert source.reused_from is None
            assert source.archid == record.archid
            assert trials[record.reused_from].values == trials[number].values
            assert source.scores["synflow"] == record.scores["synflow"]


def test_postgres_workers_explore_different_architectures(three_workers) -> None:
    study, _ = three_workers
    archids = {TrialRecord.read(t).archid for t in study.get_trials(deepcopy=False)}
    assert None not in archids
    # Random sampling over ~3.6e42 architectures: three independent workers repeat none.
    assert len(archids) >= 0.9 * TOTAL, f"{len(archids)} distinct archids in {TOTAL} trials"


@pytest.fixture
def empty_schema(postgres_url):
    """A URL whose tables go to a new, empty PostgreSQL schema (an empty database); dropped afterwards."""
    url = make_url(postgres_url)
    schema = f"fresh_{uuid.uuid4().hex[:8]}"

    def execute(statement: str) -> None:
        conn = psycopg2.connect(host=url.host, port=url.port, user=url.username, password=url.password,
                                dbname=url.database, connect_timeout=10)
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(statement)
        finally:
            conn.close()

    try:
        execute(f"CREATE SCHEMA {schema}")
    except psycopg2.errors.InsufficientPrivilege as error:
        pytest.skip(f"cannot create a schema on this server: {error}")
    yield url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    execute(f"DROP SCHEMA {schema} CASCADE")


def test_postgres_workers_started_on_an_empty_database(empty_schema, tmp_path) -> None:
    """Workers started together on an empty database all create its tables at once.

    To make the interleaving certain, "the other worker" is the test: it creates
    Optuna's tables in a transaction and commits only once the worker's own
    CREATE waits for it, as a worker started a moment earlier would.
    """
    (tmp_path / "study.toml").write_text(study_text("fresh", 1))
    other = create_engine(empty_schema)
    try:
        with other.connect() as connection:
            transaction = connection.begin()
            rdb_models.BaseModel.metadata.create_all(connection)
            worker = start_worker(tmp_path, "--storage", empty_schema)
            deadline = time.monotonic() + 60
            while not any("CREATE" in q.upper() for q in waiting_on_a_lock(empty_schema)):
                assert worker.poll() is None, worker.communicate()
                assert time.monotonic() < deadline, "the worker never reached its CREATE"
                time.sleep(0.1)
            transaction.commit()
        [(code, out, err)] = finish([worker], timeout=120)
    finally:
        other.dispose()
    assert code == 0, err
    assert err.strip() == ""
    study = optuna.load_study(study_name="fresh", storage=empty_schema)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]


def test_postgres_worker_joins_a_study_another_worker_is_creating(postgres_url, tmp_path) -> None:
    """The moment between another worker's ``create_study`` and its ``set_user_attr("fingerprint")``.

    The test plays the other worker, stopped just after creating the study, as
    ``open_study(create=True)`` leaves it for a few milliseconds.
    """
    name = f"joining-{uuid.uuid4().hex[:8]}"
    (tmp_path / "study.toml").write_text(study_text(name, 1))
    optuna.create_study(study_name=name, storage=postgres_url, directions=["maximize", "minimize"])
    try:
        [(code, out, err)] = finish([start_worker(tmp_path, "--storage", postgres_url)], timeout=120)
        assert code == 0, err
        study = optuna.load_study(study_name=name, storage=postgres_url)
        assert [t.state for t in study.trials] == [TrialState.COMPLETE]
        fingerprint = TrialRecord.read(study.trials[0]).fingerprint
        assert fingerprint is not None and StudyRecord.read(study).fingerprint == fingerprint
    finally:
        optuna.delete_study(study_name=name, storage=postgres_url)


def test_postgres_workers_drawing_one_archid_at_once_evaluate_it_once(postgres_url, tmp_path) -> None:
    """Two workers' trials of one architecture, interleaved as three busy processes on two cores do.

    Worker A gets trial 0 but is descheduled before it stores the archid; worker B
    gets trial 1 with the same architecture, finds no other trial of it and
    evaluates it. Then A stores its archid and looks, while B's trial still runs.
    """
    name = f"same-arch-{uuid.uuid4().hex[:8]}"
    (tmp_path / "study.toml").write_text(study_text(name, 2))
    config = load_study_config(tmp_path / "study.toml")
    data = get_dataset(config.dataset.name, seed=config.seed)
    space = get_space(config.space)
    no_heartbeat = StorageOptions(heartbeat_interval=None)  # no Study.optimize here
    workers = [open_study(config, postgres_url, create=True, options=no_heartbeat) for _ in range(2)]
    try:
        for _ in range(2):
            workers[0].enqueue_trial(space.params(space.baseline()))
        a = workers[0].ask()
        b = workers[1].ask()
        assert (a.number, b.number) == (0, 1)
        objective_a, objective_b = (SearchObjective(StudyContext.build(config, data), duplicate_wait_s=60, poll_s=0.1)
                                    for _ in range(2))
        values_b = objective_b(b)  # B evaluates: no other trial has stored this archid yet
        result = {}
        thread = threading.Thread(target=lambda: result.update(a=objective_a(a)))
        thread.start()  # A: evaluates at once (the bug), or waits for B's running trial
        thread.join(timeout=5)
        workers[1].tell(b, values_b)
        thread.join(timeout=60)
        assert not thread.is_alive()
        workers[0].tell(a, result["a"])
        trials = workers[0].get_trials(deepcopy=False)
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
        records = [TrialRecord.read(t) for t in trials]
        assert records[0].archid is not None and records[0].archid == records[1].archid
        evaluated = [t.number for t, r in zip(trials, records) if r.reused_from is None]
        assert evaluated == [1], "the architecture was evaluated by both workers"
        assert records[0].reused_from == 1 and trials[0].values == trials[1].values
    finally:
        optuna.delete_study(study_name=name, storage=postgres_url)


def test_postgres_workers_checking_the_total_at_once_do_not_overshoot_it(postgres_url, tmp_path,
                                                                          monkeypatch) -> None:
    """Two workers, each between checking the count and starting a trial while the other checks.

    The study has 1 of its 2 trials. Worker A (here, in-process) has checked the
    count and is loading its data when worker B (a process) starts, checks the
    count, and starts a trial; then A goes on.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = f"total-{uuid.uuid4().hex[:8]}"
    (tmp_path / "study.toml").write_text(study_text(name, 2))
    config = load_study_config(tmp_path / "study.toml")
    run_study(config, n_trials=1, storage=postgres_url, progress=False)
    real_get_dataset = runner.get_dataset
    workers: list[subprocess.Popen] = []

    def data_while_b_starts(*args, **kwargs):
        workers.append(start_worker(tmp_path, "--storage", postgres_url))
        study = optuna.load_study(study_name=name, storage=postgres_url)
        deadline = time.monotonic() + 60
        while len(study.get_trials(deepcopy=False)) < 2:  # until B has started its trial
            assert workers[0].poll() is None, workers[0].communicate()
            assert time.monotonic() < deadline, "worker B never started a trial"
            time.sleep(0.05)
        return real_get_dataset(*args, **kwargs)

    monkeypatch.setattr(runner, "get_dataset", data_while_b_starts)
    try:
        study = run_study(config, storage=postgres_url, progress=False)
        [(code, out, err)] = finish(workers, timeout=120)
        assert code == 0, err
        trials = study.get_trials(deepcopy=False)
        assert Counter(t.state for t in trials)[TrialState.COMPLETE] == 2, [t.state for t in trials]
        assert count_trials(study) == 2
    finally:
        finish(workers, timeout=1)
        optuna.delete_study(study_name=name, storage=postgres_url)
