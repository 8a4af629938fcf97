"""The options of each command, one function per command; :func:`fusionnas.cli.build_parser` calls them."""
from __future__ import annotations

import argparse
from typing import Callable

from fusionnas.metrics import cost_metrics
from fusionnas.runtime_names import RUNTIMES

Command = Callable[[argparse.Namespace], int]  # a command: its parsed arguments -> the exit code
Subparsers = argparse._SubParsersAction  # what ArgumentParser.add_subparsers returns


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that ends each option with its default, unless it has none (None, or off for a switch)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def add_ops(sub: Subparsers, func: Command) -> None:
    """The ``ops`` command: its options, and ``func`` to run it."""
    ops = sub.add_parser("ops", help="params and FLOPs of every fusion operator at one shape", description=(
        "Print the parameters and FLOPs (fvcore: one multiply-add is 1) of every registered fusion operator in "
        "place of one 1x1 convolution of the given shape."))
    ops.add_argument("--in", dest="in_channels", type=int, default=24, help="input channels")
    ops.add_argument("--out", dest="out_channels", type=int, default=144, help="output channels")
    ops.add_argument("--size", type=int, default=56, help="feature map side")
    ops.set_defaults(func=func)


def add_show(sub: Subparsers, func: Command) -> None:
    """The ``show`` command: its options, and ``func`` to run it."""
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
    show.set_defaults(func=func)


def add_profile(sub: Subparsers, func: Command) -> None:
    """The ``profile`` command: its options, and ``func`` to run it."""
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
    profile.set_defaults(func=func, flags={"device": "--device"})


def add_search(sub: Subparsers, func: Command) -> None:
    """The ``search`` command: its options, and ``func`` to run it."""
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
    search.set_defaults(func=func, defers_signals=True, flags={
        "storage": "--storage", "device": "--device", "workers": "--workers", "download": "--download"})


def add_pareto(sub: Subparsers, func: Command) -> None:
    """The ``pareto`` command: its options, and ``func`` to run it."""
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
    pareto.set_defaults(func=func, flags={"storage": "--storage", "path": "--plot"})


def add_export(sub: Subparsers, func: Command) -> None:
    """The ``export`` command: its options, and ``func`` to run it."""
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
    export.set_defaults(func=func, flags={
        "storage": "--storage", "out": "--out", "force": "--force", "trial": "--trial N", "best": "--best METRIC",
        "limits": "--max-...", "latency_device": "--latency-device", "batch_size": "--batch",
        "onnx_form": "--onnx-form"})


def add_train(sub: Subparsers, func: Command) -> None:
    """The ``train`` command: its options, and ``func`` to run it."""
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
    train.set_defaults(func=func, flags={"out": "--out", "device": "--device", "force": "--force",
                                               "init": "--init", "download": "--download"})


def add_studies(sub: Subparsers, func: Command) -> None:
    """The ``studies`` command: its options, and ``func`` to run it."""
    studies = sub.add_parser("studies", help="list the studies of a storage with their trials; delete one",
                             description="List the studies of a storage with their trials per state, or delete "
                             "one. Without --storage: the storages of the study files in the current folder and "
                             "in studies/ (each file's storage, by default <file>.db beside it). --delete NAME asks "
                             "for the study's name again before deleting it (--yes NAME answers in scripts).")
    studies.add_argument("--storage", metavar="URL", help="Optuna storage: sqlite:///x.db, journal:///x.log, "
                         "postgresql+psycopg2://user@host/db")
    studies.add_argument("--delete", metavar="NAME", help="delete this study and all its trials (cannot be undone)")
    studies.add_argument("--yes", metavar="NAME", help="with --delete: confirm without a prompt; must repeat NAME")
    studies.set_defaults(func=func, flags={"storage": "--storage"})
