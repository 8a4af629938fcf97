"""The study's supernet (``[budget] kind = "supernet"``): trained once, shared by every worker.

The first worker that needs it trains it (:func:`fusionnas.evaluators.supernet.train_supernet`,
``budget.supernet_steps`` steps with the study's proxy recipe) holding a file
lock beside its checkpoint, ``<study>-artifacts/supernet-<fingerprint>.pt``;
the other workers wait for the lock (answering Ctrl-C while they wait) and
load the finished checkpoint. A worker killed while training leaves a
checkpoint of its last 100 steps, which the next one resumes. Without an
artifacts folder the supernet lives in memory, one per worker.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from fusionnas.evaluators.proxy import ProxyBudget
from fusionnas.evaluators.supernet import SuperNet, train_supernet
from fusionnas.interrupts import STOP
from fusionnas.search.coordination import file_lock
from fusionnas.search.quiet_host import QuietHost

if TYPE_CHECKING:
    from fusionnas.evaluators.data import DataSplits
    from fusionnas.search.config import StudyConfig
    from fusionnas.spaces import MobileNetV2Space

__all__ = ["StudySupernet"]

logger = logging.getLogger(__name__)


class StudySupernet:
    """The supernet of one study, trained or loaded on first use (see the module docstring)."""

    def __init__(self, config: StudyConfig, space: MobileNetV2Space, data: DataSplits, artifacts: Path | None,
                 device: str, host: QuietHost | None = None) -> None:
        self.config = config
        self.space = space
        self.data = data
        self.device = device
        self.checkpoint = artifacts / f"supernet-{config.fingerprint}.pt" if artifacts is not None else None
        self._supernet: SuperNet | None = None
        self._host = host or QuietHost(None)  # the worker's: its training pauses while another measures

    @property
    def budget(self) -> ProxyBudget:
        """The supernet's training recipe: the study's proxy options at ``supernet_steps``."""
        options = {**self.config.budget.proxy_options(), "steps": self.config.budget.supernet_steps}
        options.pop("epochs", None)
        return ProxyBudget(**options, seed=self.config.seed, device=self.device)

    def get(self) -> SuperNet:
        """The trained supernet (training or loading it the first time)."""
        if self._supernet is None:
            supernet = SuperNet(self.space, self.data.num_classes)
            steps = self.config.budget.supernet_steps
            if self.checkpoint is None:
                self._train(supernet, steps)
            else:
                self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
                with file_lock(self.checkpoint, poll=lambda: (STOP.check(), self._host.pause_point())):
                    self._train(supernet, steps)
            self._supernet = supernet
        return self._supernet

    def _train(self, supernet: SuperNet, steps: int) -> None:
        if self.checkpoint is None or not self.checkpoint.is_file():
            logger.warning("training the study's supernet: %d steps, once; the trials then take about a second",
                           steps)
        done = train_supernet(supernet, self.data, self.budget, checkpoint=self.checkpoint,
                              on_step=lambda step: (STOP.check(), self._host.pause_point()))
        if done["seconds"] > 1:
            logger.warning("supernet trained: %d steps in %.0f s", steps, done["seconds"])
