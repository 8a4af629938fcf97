"""Command line: parse, call the library, print. ``fusionnas --help`` lists the commands."""
from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import warnings
from pathlib import Path

from fusionnas import __version__
from fusionnas.errors import UserError, in_terms_of
from fusionnas.interrupts import STOP
from fusionnas.metrics import column_of, cost_metrics
from fusionnas.runtime_names import RUNTIMES, check_runtime_device


def _cmd_ops(args: argparse.Namespace) -> int:
    """Compare the registered fusion operators at one layer shape."""
    from fusionnas.evaluators import count_flops, count_params
    from fusionnas.layers import create_fusion, list_fusions

    for name, value in (("in_channels", args.in_channels), ("out_channels", args.out_channels), ("size", args.size)):
        if value < 1:
            raise UserError(f"{name} must be a positive integer, got {value}")
    shape = (1, args.in_channels, args.size, args.size)
    print(f"fusion {args.in_channels}->{args.out_channels} at {args.size}x{args.size}")
    print(f"{'operator':<10} {'params':>10} {'FLOPs':>14}")
    for kind in list_fusions():
        layer = create_fusion(kind, args.in_channels, args.out_channels)
        print(f"{kind:<10} {count_params(layer):>10,} {count_flops(layer, shape):>14,}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    """Print an architecture of a space, or of a study file's space, as a table of blocks or as JSON."""
    from fusionnas.spaces import Arch, get_space, list_spaces
    from fusionnas.evaluators.summary import format_summary, summarize

    study = None
    if args.space.endswith(".toml"):
        from fusionnas.search import load_study_config

        study = load_study_config(args.space)  # imports its plugins, which may register the space
        space = study.search_space()
    elif args.space not in list_spaces():
        raise UserError(f"unknown search space {args.space!r}; known: {', '.join(list_spaces())}; a space from a "
                        f"plugin is known through the study file that loads it: fusionnas show STUDY.toml")
    else:
        space = get_space(args.space)
    if args.arch is not None:
        try:
            text = open(args.arch, encoding="utf-8").read()
        except OSError as error:
            raise UserError(f"cannot read --arch {args.arch}: {error.strerror}") from None
        arch, label = Arch.from_json(text), args.arch
        if arch.space != space.name:
            raise UserError(f"{args.arch} is an architecture of {arch.space!r}, not {space.name!r}")
    else:
        label = args.preset or _default_preset(space)
        arch = space.preset(label)
    if args.json:
        print(arch.to_json(indent=2))
        return 0
    classes = space.num_classes if args.classes is None else args.classes
    parts = summarize(space, arch, num_classes=classes)
    params = sum(p.params for p in parts)
    stats = sum(p.bn_statistics for p in parts)
    c, h, w = space.input_shape
    print(f"space {space.name} v{space.version}: input {c}x{h}x{w}, {classes} classes")
    note = f": {space.preset_note(label)}" if args.arch is None and space.preset_note(label) else ""
    print(f"arch {label} (archid {arch.archid}){note}")
    print(format_summary(parts))
    print(f"params: {params:,} trainable; {params + stats:,} with BatchNorm running statistics "
          f"(Keras counts these {stats:,} as parameters)")
    if study is not None:
        how = "a subset of" if study.space_restriction is not None else "all of"
        print(f"study {study.name} searches {how} {space.name}:")
        for key, values in getattr(space, "restrictions", dict)().items():
            print(f"  {key}: {', '.join(map(str, values))}")
    size = space.size()
    print(f"space size: {size:.3e} architectures ({size})")
    return 0


def _default_preset(space) -> str:
    """What ``show`` shows without --preset or --arch: the baseline, else the space's first preset."""
    from fusionnas.spaces import baseline_or_none

    if baseline_or_none(space) is not None:
        return "baseline"
    if not space.presets():
        raise UserError(f"space {space.name!r} has no presets to show; pass --arch FILE (an architecture JSON)")
    return space.presets()[0]


def _cmd_profile(args: argparse.Namespace) -> int:
    """Measure a latency table for a space on this machine (run it ON the target device)."""
    from fusionnas.evaluators.latency import LatencyModel
    from fusionnas.spaces import get_space

    if args.samples < 0:
        raise UserError(f"--samples must be >= 0, got {args.samples}")
    space = get_space(args.space)
    if args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    if args.runtime is not None:
        check_runtime_device(args.runtime, args.device)
    table = LatencyModel.profile_space(
        space, args.device, samples=args.samples, seed=args.seed, runtime=args.runtime, threads=args.threads,
        repeats=args.repeats, batch_size=args.batch,
    )
    table.save(args.out)
    baseline = table.predict(space.baseline())
    print(f"{table.describe()}")
    print(f"wrote {args.out}: {len(table.entries)} entries; baseline {space.name} predicts {baseline:.3f} ms")
    return 0


def _passive_threads() -> None:
    """Let idle OpenMP threads sleep instead of spin (unless OMP_WAIT_POLICY is set).

    Effective only before torch is first imported. On a machine where other
    processes compete for the cores, spinning threads turned a training step
    3x, and a one-batch zero-cost score up to 100x, slower on this project's
    2-core machine; on an idle machine the difference is small.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _quiet_optuna() -> None:
    """Trial outcomes are printed by fusionnas; Optuna's own per-trial log lines would repeat them."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _study(args: argparse.Namespace):
    """The study config and the stored study named on the command line (never created here)."""
    from fusionnas.search import load_study_config, open_study

    _quiet_optuna()
    config = load_study_config(args.study)
    return config, open_study(config, args.storage)


def _cmd_search(args: argparse.Namespace) -> int:
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
    _passive_threads()
    from fusionnas.search import StorageOptions, describe_trials, format_progress, load_study_config, run_study
    from fusionnas.search.storage import display_url

    STOP.check()  # a signal during the imports
    logging.getLogger("fusionnas.progress").setLevel(logging.INFO)  # a long trial's steps, every 30 s
    _quiet_optuna()
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


def _cmd_pareto(args: argparse.Namespace) -> int:
    """Print the study's Pareto frontier; optionally write every trial as CSV and a plot."""
    from fusionnas.results import (
        check_plot_path,
        format_frontier,
        format_measurements,
        measure_trials,
        objectives_of,
        plot_frontier,
        trials_frame,
    )
    from fusionnas.search import artifacts_dir
    from fusionnas.spaces import baseline_or_none, get_space

    if args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    if args.plot is not None:  # before any output: a bad name costs nothing
        check_plot_path(args.plot)
    config, study = _study(args)
    frame = trials_frame(study)
    objectives = objectives_of(study)
    for option, path in (("--csv", args.csv), ("--plot", args.plot)):
        if path is not None and not Path(path).resolve().parent.is_dir():
            raise UserError(f"{option} {path}: folder {Path(path).resolve().parent} does not exist; create it first")
    states = frame["state"].value_counts().to_dict() if len(frame) else {}
    feasible = int((frame["state"].eq("COMPLETE") & frame["feasible"].fillna(False).astype(bool)).sum()) if len(frame) else 0
    print(f"study {config.name}: {len(frame)} trials ({states.get('COMPLETE', 0)} complete, {feasible} feasible, "
          f"{states.get('FAIL', 0)} failed); objectives "
          f"{', '.join(f'{k} ({v})' for k, v in objectives.items())}; "
          f"{int(frame['is_pareto'].sum()) if len(frame) else 0} on the frontier")
    print(format_frontier(frame, objectives, all_trials=args.all))
    if args.measure:
        rows = frame if args.all else frame[frame["is_pareto"]]
        rows = rows[rows["state"] == "COMPLETE"]
        print(f"\nmeasuring {len(rows)} trials and the baseline whole ...", flush=True)
        table = measure_trials(rows, config.latency_runtimes, threads=args.threads,
                               batch_sizes=config.latency_batch_sizes,
                               weights_dir=artifacts_dir(config, args.storage) / "weights")
        print(format_measurements(table, args.threads))
    if args.csv:
        frame.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}: {len(frame)} trials")
    if args.plot:
        baseline = baseline_or_none(get_space(config.space))
        plot_frontier(frame, objectives, args.plot, baseline_archid=baseline.archid if baseline else None,
                      title=f"study {config.name}: {config.space} on {config.dataset.name}; "
                            f"{config.budget.describe()}")
        print(f"wrote {args.plot}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    """Export one trial: arch.json, weights, model.onnx checked in onnxruntime, MODEL_CARD.md."""
    from fusionnas.results import export_trial, objectives_of, select_trial, trials_frame
    from fusionnas.search import artifacts_dir, study_data

    config, study = _study(args)
    frame = trials_frame(study)
    objectives = objectives_of(study)
    limits = {column_of(m.name, args.latency_device if m.needs_device else None): limit
              for m in cost_metrics() if (limit := getattr(args, f"max_{m.name}")) is not None}
    if limits and args.best is None:
        raise UserError("--max-... limits go with --best METRIC, e.g. --best accuracy --max-latency 12")
    best = args.best
    if best == "latency" and args.latency_device:
        best = column_of("latency", args.latency_device)
    row = select_trial(frame, objectives, trial=args.trial, best=best, limits=limits)
    result = export_trial(frame, objectives, row, args.out, weights_dir=artifacts_dir(config, args.storage) / "weights",
                          study_name=config.name, budget=config.to_dict()["budget"], force=args.force,
                          batch_size=args.batch, data=study_data(config, study), onnx_form=args.onnx_form)
    weights = "" if result.has_weights else " (no trained weights: the trial was never trained or they are missing)"
    batch = f"batch {result.batch_size}" if result.batch_size else "dynamic batch"
    timed = "; ".join(f"in {runtime} it takes {ms['model']:.3f} ms, the all-conv baseline {ms['baseline']:.3f} ms "
                      f"({ms['baseline'] / ms['model']:.2f}x its speed)" for runtime, ms in result.latencies.items())
    checked = "; ".join(f"{name} ({batch}) matches torch in {'openvino' if 'native' in name else 'onnxruntime'} "
                        f"within {error:.1e}" for name, error in result.onnx_errors.items())
    print(f"exported trial {result.trial} ({result.archid}) to {result.out}: {', '.join(result.files)}{weights}; "
          f"{checked}; at batch {result.batch_size or 1}, 1 thread: {timed}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    """Train an exported architecture fully and save a checkpoint."""
    _passive_threads()
    from fusionnas.results import train_arch

    result = train_arch(args.arch, args.dataset, args.epochs, args.out, root=args.root, batch_size=args.batch_size,
                        lr=args.lr, resolution=args.resolution, data_fraction=args.data_fraction,
                        device=args.device, seed=args.seed, init=args.init, force=args.force,
                        download=args.download, on_epoch=lambda progress: print(progress, flush=True))
    test = f", test accuracy {result.test_accuracy:.4f}" if result.test_accuracy is not None else ""
    print(f"trained {result.epochs:g} epochs in {result.train_seconds:.0f} s: validation accuracy "
          f"{result.val_accuracy:.4f}{test}; wrote {result.checkpoint}")
    return 0


def _cmd_studies(args: argparse.Namespace) -> int:
    """List the studies of the storages with their trials per state, or delete one once confirmed."""
    from fusionnas.search import default_storages, list_studies
    from fusionnas.search.storage import display_url
    from fusionnas.search.studies import STATES

    _quiet_optuna()
    if args.yes is not None and args.delete is None:
        raise UserError(f"--yes {args.yes} confirms a deletion; add --delete {args.yes}")
    urls = [args.storage] if args.storage else default_storages()
    if args.delete is not None:
        return _delete_study(args, urls)
    if not urls:
        print("no study storage here: no study file in . or studies/ has its storage yet; pass --storage URL")
        return 0
    failed = 0
    for url in urls:
        try:
            studies = list_studies(url)
        except UserError as error:
            if args.storage:
                raise
            print(f"fusionnas: error: {error}", file=sys.stderr)  # a study file's storage; the others still list
            failed = 2
            continue
        print(f"{display_url(url)}: {len(studies)} {'study' if len(studies) == 1 else 'studies'}")
        width = max([5, *(len(s.name) for s in studies)])
        labels = [_state_label(state) for state in STATES]
        if studies:
            print(f"  {'study':<{width}}  {'trials':>6}  " + "  ".join(labels) + "  started")
        for s in studies:
            counts = "  ".join(f"{n:>{len(label)}}" for n, label in zip(s.states.values(), labels))
            started = s.started.strftime("%Y-%m-%d %H:%M") if s.started else "-"
            print(f"  {s.name:<{width}}  {s.n_trials:>6}  {counts}  {started}")
    return failed


def _state_label(state: str) -> str:
    """A trial state as the study tables name it: ``FAIL`` -> ``failed``, ``COMPLETE`` -> ``complete``."""
    return "failed" if state == "FAIL" else state.lower()


def _delete_study(args: argparse.Namespace, urls: list[str]) -> int:
    """``studies --delete NAME``: find the one storage holding it, ask for its name again, delete it."""
    from fusionnas.search import delete_study, find_study, list_studies
    from fusionnas.search.storage import display_url

    name = args.delete
    if not args.storage:
        urls = [url for url in urls if any(s.name == name for s in list_studies(url))]
        shown = ", ".join(display_url(url) for url in urls)
        if not urls:
            raise UserError(f"no study {name!r} in the storages of the study files in . and studies/; "
                            f"`fusionnas studies` lists them, or pass --storage URL")
        if len(urls) > 1:
            raise UserError(f"study {name!r} is in {len(urls)} storages ({shown}); pass --storage URL to choose one")
    url = urls[0]
    study = find_study(url, name)
    counts = ", ".join(f"{n} {_state_label(state)}" for state, n in study.states.items() if n)
    if args.yes is None:
        print(f"study {name} in {display_url(url)} holds {study.n_trials} trials ({counts or 'none'}); "
              f"deleting it cannot be undone")
        try:
            typed = input(f"type {name} to delete it: ").strip()
        except EOFError:
            raise UserError(f"nothing deleted: no answer at the prompt; type the name, or pass --yes {name}") from None
        if typed != name:
            raise UserError(f"nothing deleted: typed {typed!r}, not {name!r}")
    elif args.yes != name:
        raise UserError(f"nothing deleted: --yes {args.yes!r} does not match --delete {name!r}")
    delete_study(url, name)
    print(f"deleted study {name} ({study.n_trials} trials) from {display_url(url)}; "
          f"files beside the storage (weights, tables) are kept")
    return 0


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that ends each option with its default, unless it has none (None, or off for a switch)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


_DESCRIPTION = (
    "Hardware-aware architecture search for CNNs whose 1x1 convolutions may be fast transforms "
    "(Walsh-Hadamard, DCT, butterfly): search the space a study file names with Optuna, read the Pareto "
    "frontier of accuracy, FLOPs and latency, export and train the architecture you choose."
)
_EPILOG = ("Start with `fusionnas search studies/quickstart.toml`, then `fusionnas pareto "
           "studies/quickstart.toml`. `fusionnas COMMAND --help` describes each command.")


def build_parser() -> argparse.ArgumentParser:
    """The ``fusionnas`` argument parser with its subcommands."""
    parser = argparse.ArgumentParser(prog="fusionnas", description=_DESCRIPTION, epilog=_EPILOG)
    parser.add_argument("--version", action="version", version=f"fusionnas {__version__}")
    # every command's help has a description and shows its options' defaults
    sub = parser.add_subparsers(dest="command", required=True, parser_class=functools.partial(
        argparse.ArgumentParser, formatter_class=_HelpFormatter))
    ops = sub.add_parser("ops", help="params and FLOPs of every fusion operator at one shape", description=(
        "Print the parameters and FLOPs (fvcore: one multiply-add is 1) of every registered fusion operator in "
        "place of one 1x1 convolution of the given shape."))
    ops.add_argument("--in", dest="in_channels", type=int, default=24, help="input channels")
    ops.add_argument("--out", dest="out_channels", type=int, default=144, help="output channels")
    ops.add_argument("--size", type=int, default=56, help="feature map side")
    ops.set_defaults(func=_cmd_ops)
    show = sub.add_parser("show", help="an architecture of a space: blocks, channels, params, FLOPs", description=(
        "Print an architecture of a search space, or of a study file's space (restricted by its [space] lists), "
        "block by block: operators, channels, parameters and FLOPs, then the size of the space; or print its "
        "architecture JSON."))
    show.add_argument("space", help="search space name, e.g. mobilenetv2-cifar, or a study file (its space, "
                                    "restricted by its [space] lists)")
    which = show.add_mutually_exclusive_group()
    which.add_argument("--arch", metavar="FILE", help="architecture JSON document")
    which.add_argument("--preset", metavar="NAME", help="named architecture of the space (default: baseline)")
    show.add_argument("--classes", type=int, help="classifier width (default: the space's)")
    show.add_argument("--json", action="store_true", help="print the architecture document instead")
    show.set_defaults(func=_cmd_show)
    profile = sub.add_parser("profile", help="measure a per-block latency table on this machine", description=(
        "Measure a latency table of a space's parts (and whole networks, to calibrate it) on this machine: run "
        "it on the target device, then name the table in a study's [latency_tables] to search elsewhere with "
        "the device's measured latency."))
    profile.add_argument("--space", required=True, help="search space name")
    profile.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to measure")
    profile.add_argument("--out", required=True, metavar="FILE", help="table to write (JSON)")
    profile.add_argument("--samples", type=int, default=50, help="random architectures besides the presets")
    profile.add_argument("--seed", type=int, default=0, help="seed of the random architectures")
    profile.add_argument("--runtime", choices=RUNTIMES,
                         help="where parts and whole networks run: onnxruntime (the exported model; default "
                         "on cpu), openvino (the exported model, cpu only) or torch eager (default on cuda)")
    profile.add_argument("--threads", type=int, default=1, help="CPU threads while measuring, fixed and recorded")
    profile.add_argument("--repeats", type=int, default=25, help="timed runs per entry (median)")
    profile.add_argument("--batch", type=int, default=1, metavar="N", help="images per run (a study's latency "
                         "objective with batch_size = N uses a table of batch N)")
    profile.set_defaults(func=_cmd_profile, flags={"device": "--device"})

    search = sub.add_parser("search", help="run or resume a search study (Ctrl-C stops; run again to resume)",
                            description="Run a study file's search, or resume it, until its storage holds the "
                            "study's trials (n_trials counts every worker's); one line per trial. Ctrl-C stops at "
                            "a safe point with everything finished stored; the same command resumes.")
    search.add_argument("study", help="study file, e.g. studies/quickstart.toml")
    search.add_argument("--n-trials", type=int, metavar="N",
                        help="the study's total trials (default: the study file's); more than stored adds trials")
    search.add_argument("--storage", metavar="URL", help="Optuna storage instead of the study file's: "
                        "sqlite:///x.db, journal:///x.log, postgresql+psycopg2://user@host/db")
    search.add_argument("--timeout", type=float, metavar="S", help="no new trial after S seconds of this run")
    search.add_argument("--heartbeat", type=int, default=60, metavar="S",
                        help="SQL storages: heartbeat every S s; a trial silent for 2S is failed and retried "
                        "(0: off)")
    search.add_argument("--device", default="auto", help="where proxies train: auto, cpu, cuda")
    search.add_argument("--workers", type=int, metavar="N", help="run N worker processes of the study here "
                        "(one per GPU when there are GPUs, pinned by CUDA_VISIBLE_DEVICES; else the CPU cores split)")
    search.add_argument("--download", action="store_true", help="download the study's dataset when its files "
                        "are missing (cifar10, cifar100; needs the network)")
    search.set_defaults(func=_cmd_search, defers_signals=True, flags={
        "storage": "--storage", "device": "--device", "workers": "--workers", "download": "--download"})

    pareto = sub.add_parser("pareto", help="the Pareto frontier of a study as a table, CSV, plot", description=(
        "Print the Pareto frontier of a study's stored trials; optionally write every trial as CSV, draw a plot, "
        "and measure the frontier's networks whole beside the all-conv baseline."))
    pareto.add_argument("study", help="study file")
    pareto.add_argument("--storage", metavar="URL", help="storage instead of the study file's")
    pareto.add_argument("--csv", metavar="FILE", help="write every trial (objectives, costs, feasible, is_pareto)")
    pareto.add_argument("--plot", metavar="FILE", help="draw the objectives: FILE.png, or FILE.html")
    pareto.add_argument("--all", action="store_true", help="list every trial, not only the frontier")
    pareto.add_argument("--measure", action="store_true", help="measure the frontier's (or with --all every "
                        "trial's) networks whole in the study's runtime, beside the baseline and the prediction")
    pareto.add_argument("--threads", type=int, default=1, help="CPU threads for --measure")
    pareto.set_defaults(func=_cmd_pareto, flags={"storage": "--storage", "path": "--plot"})

    export = sub.add_parser("export", help="export a trial: arch.json, weights, model.onnx, MODEL_CARD.md",
                            description="Export one trial of a study (by number, or the best by a metric under "
                            "limits) to a folder: arch.json, its proxy-trained weights, model.onnx checked in "
                            "onnxruntime against torch, and MODEL_CARD.md.")
    export.add_argument("study", help="study file")
    export.add_argument("--out", required=True, metavar="DIR", help="folder to write (new or empty)")
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int, metavar="N", help="trial number")
    which.add_argument("--best", metavar="METRIC", help="the best feasible trial by accuracy, flops, params, "
                       "latency, memory_mb ... under the --max-... limits")
    for metric in cost_metrics():  # --max-flops, --max-latency, ...: one per metric a trial can be limited by
        export.add_argument(f"--max-{metric.name}", type=float, metavar=metric.unit.upper(),
                            help=f"with --best: {metric.label} limit")
    export.add_argument("--latency-device", metavar="DEVICE", help="device of --max-latency when several")
    export.add_argument("--batch", type=int, metavar="N", help="fix model.onnx's batch to N (default: a dynamic "
                        "batch, any size runs)")
    export.add_argument("--onnx-form", choices=("standard", "native", "both"), default="standard",
                        help="standard: model.onnx, standard operators for any runtime; native: model.native.onnx, "
                        "each transform one fusionnas-domain node for OpenVINO with the fusionnas extension "
                        "(python -m fusionnas.kernels.build); both (default: %(default)s)")
    export.add_argument("--force", action="store_true", help="overwrite files in a non-empty --out")
    export.add_argument("--storage", metavar="URL", help="storage instead of the study file's")
    export.set_defaults(func=_cmd_export, flags={
        "storage": "--storage", "out": "--out", "force": "--force", "trial": "--trial N", "best": "--best METRIC",
        "limits": "--max-...", "latency_device": "--latency-device", "batch_size": "--batch",
        "onnx_form": "--onnx-form"})

    train = sub.add_parser("train", help="train an exported arch.json fully and save a checkpoint", description=(
        "Train an exported architecture (arch.json) fully on a dataset and save a checkpoint; prints its "
        "validation (and test) accuracy."))
    train.add_argument("arch", help="architecture JSON (arch.json from `fusionnas export`)")
    train.add_argument("--dataset", required=True, help="cifar10, cifar100, digits, imagefolder, synthetic")
    train.add_argument("--root", help="dataset folder (default $FUSIONNAS_DATA or ~/.cache/fusionnas/data)")
    train.add_argument("--epochs", type=float, required=True, help="training epochs")
    train.add_argument("--batch-size", type=int, default=128, help="training batch")
    train.add_argument("--lr", type=float, default=0.05, help="peak learning rate (cosine schedule)")
    train.add_argument("--resolution", type=int, help="train at R x R (default: the data's)")
    train.add_argument("--data-fraction", type=float, default=1.0, help="share of the training split")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda")
    train.add_argument("--seed", type=int, default=0, help="seed of the data split and of training (order, "
                       "augmentation, dropout)")
    train.add_argument("--out", metavar="FILE", help="checkpoint (default: checkpoint.pt beside ARCH)")
    train.add_argument("--force", action="store_true", help="overwrite an existing --out")
    train.add_argument("--init", metavar="FILE", help="start from these weights (weights.pt from `fusionnas "
                       "export`, or a checkpoint) instead of a fresh initialisation")
    train.add_argument("--download", action="store_true", help="download the dataset's files when they are "
                       "missing (cifar10, cifar100; needs the network)")
    train.set_defaults(func=_cmd_train, flags={"out": "--out", "device": "--device", "force": "--force",
                                               "init": "--init", "download": "--download"})

    studies = sub.add_parser("studies", help="list the studies of a storage with their trials; delete one",
                             description="List the studies of a storage with their trials per state, or delete "
                             "one. Without --storage: the storages of the study files in the current folder and "
                             "in studies/ (each file's storage, by default <file>.db beside it). --delete NAME asks "
                             "for the study's name again before deleting it (--yes NAME answers in scripts).")
    studies.add_argument("--storage", metavar="URL", help="Optuna storage: sqlite:///x.db, journal:///x.log, "
                         "postgresql+psycopg2://user@host/db")
    studies.add_argument("--delete", metavar="NAME", help="delete this study and all its trials (cannot be undone)")
    studies.add_argument("--yes", metavar="NAME", help="with --delete: confirm without a prompt; must repeat NAME")
    studies.set_defaults(func=_cmd_studies, flags={"storage": "--storage"})
    return parser


EXIT_STDOUT_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for `cat` writing into a closed pipe


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code (2: a user error, 130: interrupted, 141: stdout closed early).

    A reader that stops early (`fusionnas show ... --json | head -1`) ends any
    command quietly with :data:`EXIT_STDOUT_CLOSED`, as `cat` or `grep` end
    there, so `set -o pipefail` scripts see the usual status; nothing else is printed.
    """
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's flush at exit
    except BrokenPipeError:
        _stdout_to_devnull()
        return EXIT_STDOUT_CLOSED


def _stdout_to_devnull() -> None:
    """Point stdout's file descriptor at the null device, so output still buffered goes nowhere quietly."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # not a real file (a test's captured stdout)
        pass


def _main(argv: list[str] | None) -> int:
    """:func:`main` until the output is flushed."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="fusionnas: %(levelname)s: %(message)s")
    try:
        if getattr(args, "defers_signals", False):  # the command stops at its own safe points
            return args.func(args)
        with STOP.interruptible():
            return args.func(args)
    except UserError as error:  # one line, no traceback; anything else is a bug and shows its traceback
        print(f"fusionnas: error: {in_terms_of(str(error), getattr(args, 'flags', {}))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fusionnas: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """The ``fusionnas`` console script: :func:`main`, exiting with 130 for a signal at any moment.

    The handler is installed before anything is imported; a signal while a
    command runs interrupts it (the search at its safe points), and one
    before or after is recorded, never fatal (no exit -2 or -15).
    """
    STOP.install()
    with STOP.deferred():
        code = main()
        if STOP.hold_until_exit() and code != 130:
            print("fusionnas: interrupted", file=sys.stderr)
            code = 130
    sys.exit(code)


if __name__ == "__main__":
    run()
