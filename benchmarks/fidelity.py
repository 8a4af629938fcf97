"""How well does each cheap estimate rank architectures like longer training does?

Run: ``python -m benchmarks.fidelity [--archs 20] [--reference-steps 400] [--reference-batch-size 64]
[--steps 25,50,100] [--recalibration 2,4] [--val-fractions 0.5]``.

For the space's presets plus random architectures (20 in all by default), the
reference is stand-alone training with the study's budget at
``--reference-steps`` (default 4x the study's steps; ``--reference-batch-size``
to train it on larger batches than the proxies). Each estimator ranks the
same architectures: the proxy trained at each of ``--steps`` and at the
study's steps (with the batch-norm statistics recomputed at the end, the
default), the study's proxy judged by the running statistics training left
(as before recalibration existed), with them recomputed on each of ``--recalibration``
batch counts instead of the study's, and validated on a seeded, stratified share (each of
``--val-fractions``) of the validation split, every zero-cost score of the untrained
network, FLOPs and parameters, and (``--supernet-steps N``) the accuracy
inherited from a weight-sharing supernet trained once for N steps
(:mod:`fusionnas.evaluators.supernet`; its training time is printed apart). Printed side by
side: Spearman and Kendall rank correlation with the reference, the share of
the reference's top quarter the estimator also puts in its top quarter, and
the median seconds the estimator spends per architecture.

Every result is kept in ``--cache`` (JSON, written after each architecture),
so an interrupted run resumes and a new estimator is compared without
retraining the reference.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from fusionnas.evaluators import count_flops, count_params
from fusionnas.evaluators.data import DataSplits, get_dataset, iterate_batches
from fusionnas.evaluators.proxy import ProxyBudget, ProxyTrainingError, train_proxy
from fusionnas.evaluators.supernet import SuperNet, score as supernet_accuracy, train_supernet
from fusionnas.evaluators.zero_cost import ZERO_COST_PROXIES, score
from fusionnas.search import load_study_config
from fusionnas.spaces import Arch, Space, get_space, random_archs

Estimator = Callable[[Arch], float]


def trained_accuracy(space, data: DataSplits, options: dict, steps: int, seed: int) -> Estimator:
    """Validation accuracy after ``steps`` proxy steps (a diverged run scores 0: it would rank last)."""
    budget = ProxyBudget(**{**options, "steps": steps}, seed=seed, device="cpu")

    def estimate(arch: Arch) -> float:
        torch.manual_seed(seed)
        model = space.build(arch, num_classes=data.num_classes)
        try:
            return train_proxy(model, data, budget).val_accuracy
        except ProxyTrainingError:
            return 0.0

    return estimate


def validation_subset(data: DataSplits, fraction: float, seed: int) -> DataSplits:
    """``data`` with a seeded, stratified ``fraction`` of its validation split (the training split's
    subsampling, applied to the validation images)."""
    picked = dataclasses.replace(data, x_train=data.x_val, y_train=data.y_val).subsample(fraction, seed)
    return dataclasses.replace(data, x_val=picked.x_train, y_val=picked.y_train)


def zero_cost(space, data: DataSplits, proxy: str, resolution: int | None, seed: int) -> Estimator:
    """A zero-cost score of the untrained network on one seeded training batch."""
    generator = torch.Generator().manual_seed(seed)
    x, y = next(iterate_batches(data.x_train, data.y_train, 64, mean=data.mean, std=data.std, shuffle=True,
                                generator=generator, resolution=resolution))

    def estimate(arch: Arch) -> float:
        torch.manual_seed(seed)
        return float(score(proxy, space.build(arch, num_classes=data.num_classes), x, y))

    return estimate


def supernet_score(space, data: DataSplits, options: dict, steps: int, seed: int, checkpoint: Path) -> Estimator:
    """Accuracy inherited from a supernet trained ``steps`` fair single-path steps (once, on first use)."""
    budget = ProxyBudget(**{**options, "steps": steps}, seed=seed, device="cpu")
    trained: list[SuperNet] = []

    def estimate(arch: Arch) -> float:
        if not trained:
            supernet = SuperNet(space, data.num_classes)
            done = train_supernet(supernet, data, budget, checkpoint=checkpoint)
            print(f"  supernet: {steps} steps, {done['seconds']:.0f} s this run", flush=True)
            trained.append(supernet)
        return supernet_accuracy(trained[0], arch, data, budget)

    return estimate


def size(space, data: DataSplits, what: str) -> Estimator:
    """FLOPs or parameters: a ranking every estimator should beat."""
    shape = (1, *space.input_shape)

    def estimate(arch: Arch) -> float:
        model = space.build(arch, num_classes=data.num_classes)
        return float(count_flops(model, shape) if what == "flops" else count_params(model))

    return estimate


def load_cache(path: Path) -> dict[str, dict[str, list[float]]]:
    """archid -> estimator -> [value, seconds]."""
    return json.loads(path.read_text()) if path.is_file() else {}


def measure(archs: list[Arch], estimators: dict[str, Estimator], cache: dict, path: Path) -> None:
    """Fill ``cache`` with every (arch, estimator) not yet in it, saving after each architecture."""
    for i, arch in enumerate(archs):
        done = cache.setdefault(arch.archid, {})
        for name, estimate in estimators.items():
            if name in done:
                continue
            start = time.perf_counter()
            value = estimate(arch)
            done[name] = [value, time.perf_counter() - start]
        path.write_text(json.dumps(cache, indent=1, sort_keys=True))
        line = ", ".join(f"{n} {v[0]:.4g}" for n, v in done.items() if n.startswith(("reference", "proxy")))
        print(f"  {i + 1}/{len(archs)} {arch.archid}: {line}", flush=True)


def fidelity_table(archs: list[Arch], estimators: list[str], cache: dict, reference: str) -> pd.DataFrame:
    """One row per estimator: Spearman, Kendall, top-quarter overlap, median seconds per architecture."""
    frame = pd.DataFrame({name: [cache[a.archid][name][0] for a in archs] for name in [reference, *estimators]})
    seconds = {name: statistics.median(cache[a.archid][name][1] for a in archs) for name in estimators}
    quarter = max(1, math.ceil(len(archs) / 4))
    best = set(frame[reference].nlargest(quarter).index)
    rows = []
    for name in estimators:
        rows.append({
            "estimator": name,
            "spearman": frame[name].corr(frame[reference], method="spearman"),
            "kendall": frame[name].corr(frame[reference], method="kendall"),
            "top_quarter": len(best & set(frame[name].nlargest(quarter).index)) / quarter,
            "s_per_arch": seconds[name],
        })
    return pd.DataFrame(rows)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="studies/quickstart.toml", help="space, data and budget to use")
    parser.add_argument("--archs", type=int, default=20, help="presets plus random architectures, in all")
    parser.add_argument("--reference-steps", type=int, help="default: 4x the study's steps")
    parser.add_argument("--reference-batch-size", type=int, help="default: the study's batch size")
    parser.add_argument("--steps", default="25,50,100", help="proxy budgets to compare (comma-separated)")
    parser.add_argument("--recalibration", default="",
                        help="batch-norm recalibration batch counts to compare with the study's (comma-separated)")
    parser.add_argument("--val-fractions", default="",
                        help="shares of the validation split to score the study's proxy on (comma-separated)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", default="fidelity-cache.json",
                        help="results kept between runs; several (comma-separated) are read together, the first "
                        "is written")
    parser.add_argument("--part", default="1/1", metavar="K/N",
                        help="measure only every N-th architecture from the K-th (run N parts side by side)")
    parser.add_argument("--only", default="", metavar="PREFIX", help="measure only the estimators named so")
    parser.add_argument("--supernet-steps", type=int, default=0,
                        help="also score by inheriting from a supernet trained so many steps (0: skip)")
    return parser


def _estimators(args: argparse.Namespace, space: Space, data: DataSplits, options: dict, study_steps: int,
                reference: str, reference_options: dict, reference_steps: int,
                resolution: int | None) -> dict[str, Estimator]:
    """Every estimator the run compares, by name: the reference first."""
    estimators: dict[str, Estimator] = {
        reference: trained_accuracy(space, data, reference_options, reference_steps, args.seed)}
    steps_list = sorted({int(s) for s in args.steps.split(",") if s.strip()})
    for steps in steps_list:
        estimators[f"proxy {steps} steps"] = trained_accuracy(space, data, options, steps, args.seed)
    if study_steps not in steps_list:
        estimators[f"proxy {study_steps} steps"] = trained_accuracy(space, data, options, study_steps, args.seed)
    running = {**options, "bn_recalibration_batches": 0}  # judged by the BN statistics training left
    estimators[f"proxy {study_steps} steps, running BN"] = trained_accuracy(space, data, running, study_steps,
                                                                            args.seed)
    for batches in sorted({int(b) for b in args.recalibration.split(",") if b.strip()}):
        if batches != options.get("bn_recalibration_batches"):
            recalibrated = {**options, "bn_recalibration_batches": batches}
            estimators[f"proxy {study_steps} steps, BN on {batches} batches"] = trained_accuracy(
                space, data, recalibrated, study_steps, args.seed)
    for fraction in sorted({float(f) for f in args.val_fractions.split(",") if f.strip()}):
        subset = validation_subset(data, fraction, args.seed)
        estimators[f"proxy {study_steps} steps, validated on {len(subset.y_val)} images"] = trained_accuracy(
            space, subset, options, study_steps, args.seed)
    for proxy in ZERO_COST_PROXIES:
        estimators[proxy] = zero_cost(space, data, proxy, resolution, args.seed)
    for what in ("flops", "params"):
        estimators[what] = size(space, data, what)
    return estimators


def main() -> None:  # noqa: D103
    args = _parser().parse_args()
    torch.set_num_threads(args.threads)
    config = load_study_config(args.study)
    space = get_space(config.space)
    data = get_dataset(config.dataset.name, config.dataset.root, seed=config.seed,
                       val_fraction=config.dataset.val_fraction)
    options = config.budget.proxy_options()
    options.pop("epochs", None)
    study_steps = int(options.pop("steps", 100))
    reference_steps = args.reference_steps or 4 * study_steps
    presets = [space.preset(name) for name in space.presets()]
    archs = (presets + random_archs(space, args.archs, seed=args.seed + 1))[:max(args.archs, 1)]
    reference = f"reference {reference_steps} steps"
    reference_options = dict(options)
    if args.reference_batch_size and args.reference_batch_size != options.get("batch_size"):
        reference += f", batch {args.reference_batch_size}"
        reference_options["batch_size"] = args.reference_batch_size
    estimators = _estimators(args, space, data, options, study_steps, reference, reference_options, reference_steps,
                             config.budget.resolution)
    paths = [Path(p) for p in args.cache.split(",") if p]
    cache_path = paths[0]
    if args.supernet_steps:
        estimators[f"supernet {args.supernet_steps} steps"] = supernet_score(
            space, data, options, args.supernet_steps, args.seed,
            cache_path.with_suffix(f".supernet-{args.supernet_steps}.pt"))
    cache: dict = {}
    for path in reversed(paths):  # the first file wins, and is the one written
        for archid, done in load_cache(path).items():
            cache.setdefault(archid, {}).update(done)
    print(f"# {len(archs)} architectures of {config.space} on {config.dataset.name}; {reference}, proxies at "
          f"batch {options.get('batch_size', 'default')}, "
          f"resolution {options.get('resolution', 'native')}", flush=True)
    part, parts = (int(n) for n in args.part.split("/"))
    chosen = {name: e for name, e in estimators.items() if not args.only or name.startswith(args.only)}
    measure(archs[part - 1::parts], chosen, cache, cache_path)
    if any(name not in cache.get(a.archid, {}) for a in archs for name in estimators):
        print(f"part {args.part} done; the table needs every part (pass their caches together to --cache)")
        return
    table = fidelity_table(archs, [n for n in estimators if n != reference], cache, reference)
    print(f"\n# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; rank correlation with the {reference} accuracy")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
