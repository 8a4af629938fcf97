"""The search command: run or resume a study, here or in worker processes, and stop it cleanly."""
from __future__ import annotations

import argparse
import logging
import sys

from fusionnas.cli._common import passive_threads, quiet_optuna
from fusionnas.interrupts import STOP


def cmd_search(args: argparse.Namespace) -> int:
    """Run (or resume) a study until it holds its trials; one line per trial.

    SIGINT or SIGTERM at any moment ends it with 130 and one stderr line
    (see :mod:`fusionnas.interrupts`).
    """
    stored: str | None = None  # the stored trials described, once there is a study
    with STOP.installed(), STOP.deferred():
        if args.workers is not None:
            from fusionnas.search import load_study_config
            from fusionnas.workers import run_workers

            config = load_study_config(args.study)  # one error here, not one per worker
            if args.download:  # once here, not by every worker into the same folder
                from fusionnas.evaluators.data import get_dataset

                get_dataset(config.dataset.name, config.dataset.root, download=True)
            return run_workers(_worker_args(args), args.workers)
        try:
            code, stored = _search(args)
        except KeyboardInterrupt as stop:  # SearchInterrupted, or a signal while importing
            number = getattr(stop, "trial_number", None)
            stored = _stored(getattr(stop, "study", None))
            where = f"trial {number} marked failed (interrupted); " if number is not None else ""
            print(_interrupted_line(stored, where), file=sys.stderr)
            return 130
        if STOP.requested is not None:  # a signal after the last trial
            print(_interrupted_line(stored), file=sys.stderr)
            return 130
    return code


def _worker_args(args: argparse.Namespace) -> list[str]:
    """The search command line of one worker: this one's, without ``--workers``."""
    argv = [args.study, "--heartbeat", str(args.heartbeat), "--device", args.device]
    for flag, value in (("--n-trials", args.n_trials), ("--storage", args.storage), ("--timeout", args.timeout)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def _stored(study) -> str | None:
    if study is None:
        return None
    from fusionnas.search import describe_trials

    return describe_trials(study)


def _interrupted_line(stored: str | None, where: str = "") -> str:
    if stored is None:
        return "interrupted: nothing stored by this run; run the same command to start or resume the study"
    return f"interrupted: {where}stored {stored}; run the same command to resume"


def _search(args: argparse.Namespace) -> tuple[int, str]:
    """The search command once signals are handled: (exit code, the stored trials described)."""
    passive_threads()
    from fusionnas.search import StorageOptions, describe_trials, format_progress, load_study_config, run_study
    from fusionnas.search.storage import display_url

    STOP.check()  # a signal during the imports
    logging.getLogger("fusionnas.progress").setLevel(logging.INFO)  # a long trial's steps, every 30 s
    quiet_optuna()
    config = load_study_config(args.study)
    options = StorageOptions(heartbeat_interval=args.heartbeat or None)
    url = args.storage or config.storage
    target = args.n_trials if args.n_trials is not None else config.n_trials
    print(f"study {config.name} ({config.space}, {config.dataset.name}; objectives "
          f"{', '.join(f'{o.name} ({o.direction})' for o in config.objectives)}) in {display_url(url)}, "
          f"{target or 'unbounded'} trials", flush=True)

    def show(progress) -> None:
        print(format_progress(progress), flush=True)

    study = run_study(config, args.n_trials, args.storage, show, timeout_s=args.timeout, options=options,
                      device=args.device, download=args.download)
    stored = describe_trials(study)
    print(f"study {config.name}: {stored}; `fusionnas pareto {args.study}` prints the frontier",
          flush=True)
    return 0, stored
