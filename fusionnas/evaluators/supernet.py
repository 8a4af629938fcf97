"""A weight-sharing supernet: one set of weights for every architecture of a space, trained once.

Single-path one-shot (Guo et al., 2020), with the choice of channels of
Once-for-All (Cai et al., 2020): every operator choice of every block owns one
set of weights at the largest width and expansion the space offers, and an
architecture uses the leading slice of each (the first ``c`` output and input
channels, as OFA's elastic width). A training step samples one path (an
architecture), builds it, and runs it with :func:`torch.func.functional_call`
on views into the shared weights, so its gradients land in them. Paths are
drawn fairly: every choice cycles through its values in shuffled rounds, so
that over any round each operator, ratio, kernel and width is trained equally
often (FairNAS' lesson that uneven sampling biases the ranking). An
architecture is then scored in about a second: its network gets a copy of its
slices, recomputes its batch-norm statistics on a few training batches (the
running statistics of a shared network describe no single path), and is
validated.

Weights are keyed by block and choice (``b3:expand=wht``, ``b3:depthwise=conv/k5``,
``head=bft``, ``stem``, ``classifier``), read from the module names of
:class:`~fusionnas.spaces.network.FusionMobileNetV2` (``stem``, ``blocks.<i>.expand``,
``.depthwise``, ``.project``, ``head``, ``classifier``). A parameter whose
shape does not fit inside its key's largest one gets weights of its own
shape. The operators' loss terms are not added in supernet training: they
read a network's own parameters, not the shared ones.
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import torch
from torch import nn
from torch.func import functional_call

from fusionnas.evaluators.data import DataSplits
from fusionnas.evaluators.proxy import ProxyBudget, recalibrate, resolve_device, sgd, validate
from fusionnas.evaluators.training import atomic_save, endless_batches, run_steps
from fusionnas.spaces import Arch, MobileNetV2Space

__all__ = ["SuperNet", "FairPaths", "train_supernet", "score"]

logger = logging.getLogger(__name__)

_CHECKPOINT_EVERY = 100  # steps between checkpoints of a resumable training run


class FairPaths:
    """Architectures whose every choice cycles through its values in shuffled rounds (seeded)."""

    def __init__(self, space: MobileNetV2Space, seed: int = 0) -> None:
        self.space = space
        self.choices = space.choices()
        self._rng = random.Random(seed)
        self._queues: dict[str, list[Any]] = {name: [] for name in self.choices}

    def __iter__(self) -> Iterator[Arch]:
        return self

    def __next__(self) -> Arch:
        params = {}
        for name, values in self.choices.items():
            queue = self._queues[name]
            if not queue:
                queue.extend(self._rng.sample(values, len(values)))
            params[name] = queue.pop()
        return self.space.sample(optuna.trial.FixedTrial(params))

    def state_dict(self) -> dict[str, Any]:
        """Where the rounds stand: the random state and each choice's values left in its round."""
        return {"rng": self._rng.getstate(), "queues": {name: list(queue) for name, queue in self._queues.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the rounds from a :meth:`state_dict`, as if the paths it had drawn were drawn here."""
        self._rng.setstate(state["rng"])
        self._queues = {name: list(queue) for name, queue in state["queues"].items()}


class SuperNet(nn.Module):
    """The shared weights of every architecture of ``space`` (see the module docstring)."""

    def __init__(self, space: MobileNetV2Space, num_classes: int) -> None:
        super().__init__()
        self.space = space
        self.num_classes = num_classes
        self.shared = nn.ParameterDict()
        for arch in self._largest():
            model = space.build(arch, num_classes=num_classes)
            for name, param in model.named_parameters():
                key = self._key(arch, name)
                if key not in self.shared or _fits(self.shared[key].shape, param.shape):
                    self.shared[key] = nn.Parameter(param.detach().clone())

    def path(self, arch: Arch) -> nn.Module:
        """The network of ``arch`` (its own parameters are stand-ins; see :meth:`weights`)."""
        return self.space.build(arch, num_classes=self.num_classes).to(self._device())

    def weights(self, arch: Arch, model: nn.Module) -> dict[str, torch.Tensor]:
        """Parameter name -> a view into the shared weights, for ``functional_call(model, ...)``."""
        views = {}
        for name, param in model.named_parameters():
            key = self._key(arch, name)
            if key not in self.shared or not _fits(param.shape, self.shared[key].shape):
                key = f"{key}|{'x'.join(map(str, param.shape))}"  # no larger twin to share
                if key not in self.shared:
                    self.shared[key] = nn.Parameter(param.detach().clone())
            views[name] = self.shared[key][tuple(slice(0, n) for n in param.shape)]
        return views

    def inherit(self, arch: Arch) -> nn.Module:
        """A stand-alone network of ``arch`` holding a copy of its shared weights."""
        model = self.path(arch)
        with torch.no_grad():
            for name, view in self.weights(arch, model).items():
                model.get_parameter(name).copy_(view)
        return model

    def _largest(self) -> list[Arch]:
        """Per (fusion, depthwise, kernel), the architecture with every width and ratio at its largest.

        Sorted by name: the order they are built in decides a seeded supernet's initial weights.
        """
        space = self.space
        return [space.uniform(fusion, depthwise, kernel=kernel, size="largest")
                for fusion in sorted(space.fusions, key=str)
                for depthwise in sorted(space.depthwise, key=str)
                for kernel in sorted(space.kernels, key=str)]

    @staticmethod
    def _key(arch: Arch, name: str) -> str:
        """``blocks.3.expand.0.weight`` -> ``b3:expand=wht:0:weight`` (module names may not hold dots)."""
        parts = name.split(".")
        if parts[0] == "blocks":
            i, role = int(parts[1]), parts[2]
            block = arch.blocks[i]
            choice = f"{block.depthwise}/k{block.kernel}" if role == "depthwise" else getattr(block, role)
            return ":".join([f"b{i}", f"{role}={choice}", *parts[3:]])
        if parts[0] == "head":
            return ":".join([f"head={arch.head_fusion}", *parts[1:]])
        return ":".join(parts)

    def _device(self) -> torch.device:
        return next(iter(self.shared.values())).device


def _fits(small: torch.Size, large: torch.Size) -> bool:
    return len(small) == len(large) and all(s <= g for s, g in zip(small, large))


def train_supernet(supernet: SuperNet, data: DataSplits, budget: ProxyBudget, *,
                   checkpoint: Path | None = None, checkpoint_every: int = _CHECKPOINT_EVERY,
                   on_step: Callable[[int], None] | None = None) -> dict[str, float]:
    """Train the shared weights for ``budget.steps`` fair single-path steps; resumable from ``checkpoint``.

    The proxy's recipe (SGD with Nesterov, warm-up + cosine, label smoothing,
    batch size, resolution, seed) with one sampled path per step. The
    checkpoint (weights, optimiser, step, path sampler, batch generator) is
    written every ``checkpoint_every`` steps and at the end, so a killed run
    resumes at its last checkpoint (drawing the batch order of that epoch
    anew), and a finished one returns at once. ``on_step(step)`` runs after
    every step and may raise to stop. Returns ``{"steps": ..., "seconds": ...}``.
    """
    device = resolve_device(budget.device)
    total = budget.steps or 1
    paths = FairPaths(supernet.space, seed=budget.seed)
    generator = torch.Generator().manual_seed(budget.seed)
    done, initial = 0, len(supernet.shared)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False) if checkpoint and checkpoint.is_file() \
        else None
    if state is not None:
        _add_missing(supernet, state["weights"])
        supernet.load_state_dict(state["weights"])
        initial, done = state["initial"], state["step"]
        paths.load_state_dict({"rng": state["paths"], "queues": state["queues"]})
        generator.set_state(state["generator"])
    supernet.to(device)
    optimizer, lr = _optimizer(supernet, budget, total, initial, state)
    criterion = nn.CrossEntropyLoss(label_smoothing=budget.label_smoothing)
    batches = endless_batches(data.x_train.to(device), data.y_train.to(device),
                              min(budget.batch_size, len(data.x_train)), mean=data.mean, std=data.std,
                              generator=generator, resolution=budget.resolution,
                              augment=data.augment if budget.augment is None else budget.augment)

    def loss_at(step: int) -> torch.Tensor:
        arch = next(paths)
        model = supernet.path(arch).train()
        known = len(supernet.shared)
        weights = supernet.weights(arch, model)
        for param in list(supernet.shared.values())[known:]:  # no larger twin: the optimiser learns of it
            optimizer.add_param_group({"params": [param], "weight_decay": 0.0})
        xb, yb = next(batches)
        return criterion(functional_call(model, weights, (xb,)).float(), yb)

    def after(step: int) -> None:
        if checkpoint is not None and (step % checkpoint_every == 0 or step == total):
            _save(checkpoint, supernet, optimizer, paths, generator, step, initial)
        if on_step is not None:
            on_step(step)

    start = time.perf_counter()
    done = run_steps(loss_at, optimizer, total, done=done, lr=lr, on_step=after)
    seconds = time.perf_counter() - start
    logger.info("supernet: %d steps in %.1f s", done, seconds)
    return {"steps": float(done), "seconds": seconds}


def _optimizer(supernet: SuperNet, budget: ProxyBudget, total: int, initial: int,
               state: dict[str, Any] | None) -> tuple[torch.optim.Optimizer, Callable[[int], float]]:
    """The proxy's SGD over the shared weights and its lr per step, resumed from ``state`` when given: the
    first ``initial`` weights in its two groups, each own-shape parameter made since in a group of its own."""
    shared = list(supernet.shared.values())
    optimizer, lr = sgd(shared[:initial], budget, total)  # the lr is set per step: groups are added later
    for param in shared[initial:]:  # in the order they were made
        optimizer.add_param_group({"params": [param], "weight_decay": 0.0})
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
    return optimizer, lr


def score(supernet: SuperNet, arch: Arch, data: DataSplits, budget: ProxyBudget) -> float:
    """Validation accuracy of ``arch`` with its inherited weights and recalibrated batch norm."""
    device = supernet._device()
    model = supernet.inherit(arch)
    recalibrate(model, data, budget, device, torch.Generator().manual_seed(budget.seed))
    accuracy, _ = validate(model, data, budget, device)
    return accuracy


def _save(path: Path, supernet: SuperNet, optimizer, paths: FairPaths, generator, step: int,
          initial: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sampler = paths.state_dict()
    atomic_save({"weights": supernet.state_dict(), "optimizer": optimizer.state_dict(),
                 "paths": sampler["rng"], "queues": sampler["queues"],
                 "generator": generator.get_state(), "step": step, "initial": initial}, path)


def _add_missing(supernet: SuperNet, weights: dict[str, torch.Tensor]) -> None:
    """Make room for the own-shape parameters a checkpoint holds that a fresh supernet has not made yet."""
    for name, tensor in weights.items():
        key = name.removeprefix("shared.")
        if key not in supernet.shared:
            supernet.shared[key] = nn.Parameter(torch.empty_like(tensor))
