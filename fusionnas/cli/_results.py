"""Commands that read a stored study or its export: pareto, export, train."""
from __future__ import annotations

import argparse
from pathlib import Path

from fusionnas.cli._common import passive_threads, quiet_optuna
from fusionnas.errors import UserError
from fusionnas.metrics import column_of, cost_metrics


def _study(args: argparse.Namespace):
    """The study config and the stored study named on the command line (never created here)."""
    from fusionnas.search import load_study_config, open_study

    quiet_optuna()
    config = load_study_config(args.study)
    return config, open_study(config, args.storage)


def cmd_pareto(args: argparse.Namespace) -> int:
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


def cmd_export(args: argparse.Namespace) -> int:
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


def cmd_train(args: argparse.Namespace) -> int:
    """Train an exported architecture fully and save a checkpoint."""
    passive_threads()
    from fusionnas.results import train_arch

    result = train_arch(args.arch, args.dataset, args.epochs, args.out, root=args.root, batch_size=args.batch_size,
                        lr=args.lr, resolution=args.resolution, data_fraction=args.data_fraction,
                        device=args.device, seed=args.seed, init=args.init, force=args.force,
                        download=args.download, on_epoch=lambda progress: print(progress, flush=True))
    test = f", test accuracy {result.test_accuracy:.4f}" if result.test_accuracy is not None else ""
    print(f"trained {result.epochs:g} epochs in {result.train_seconds:.0f} s: validation accuracy "
          f"{result.val_accuracy:.4f}{test}; wrote {result.checkpoint}")
    return 0
