"""What every trial of one study run shares, resolved once per worker: :class:`StudyContext`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fusionnas.search.costs import CostEvaluator
from fusionnas.search.rungs import Rungs

if TYPE_CHECKING:
    from fusionnas.evaluators.data import DataSplits
    from fusionnas.search.config import StudyConfig
    from fusionnas.spaces import Space
    from fusionnas.trial_record import TrialRecord

__all__ = ["StudyContext"]


@dataclass
class StudyContext:
    """A study's terms and what they resolve to: the space it searches, its data, its artifacts
    folder, the cost evaluator (latency tables, the quiet host) and the rungs.

    Build it with :meth:`build`; the objective and the estimators read it, nothing re-resolves the config.
    """

    config: StudyConfig
    space: Space  # the space the study samples from (restricted by its [space] table)
    data: DataSplits
    artifacts: Path | None  # weights, measured latency tables, the supernet (None: keep nothing)
    costs: CostEvaluator
    rungs: Rungs
    device: str = "auto"  # where proxies train

    @classmethod
    def build(cls, config: StudyConfig, data: DataSplits, artifacts: Path | str | None = None, *,
              device: str = "auto") -> StudyContext:
        """Resolve ``config`` once: its space, cost evaluator and rungs."""
        space = config.search_space()
        folder = Path(artifacts) if artifacts is not None else None
        return cls(config, space, data, folder, CostEvaluator(config, folder, space=space), Rungs.of(config.budget),
                   device)

    def weights_path(self, name: str | None) -> Path | None:
        """Where the weights file ``name`` of a trial lives (None without artifacts or a name)."""
        return self.artifacts / "weights" / name if self.artifacts is not None and name else None

    def weights_name(self, record: TrialRecord) -> str:
        """The weights file of a trained trial: ``<archid>-<fingerprint>[-rung<r>].pt``."""
        return f"{record.archid}-{self.config.fingerprint}{f'-rung{record.rung}' if record.rung else ''}.pt"
