"""What several commands set up before their work: how idle threads wait, how much Optuna logs."""
from __future__ import annotations

import os
import warnings


def passive_threads() -> None:
    """Let idle OpenMP threads sleep instead of spin (unless OMP_WAIT_POLICY is set).

    Effective only before torch is first imported. On a machine where other
    processes compete for the cores, spinning threads turned a training step
    3x, and a one-batch zero-cost score up to 100x, slower on this project's
    2-core machine; on an idle machine the difference is small.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def quiet_optuna() -> None:
    """Trial outcomes are printed by fusionnas; Optuna's own per-trial log lines would repeat them."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
