"""Tiny study configs for the search and results tests: seconds per trial on two cores."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from fusionnas.search import StudyConfig, parse_study_config

# Two proxy steps of 8 images at 8x8 on a tenth of digits: a trial in ~1 s (FLOP counting included).
PROXY = {
    "space": "mobilenetv2-cifar",
    "n_trials": 3,
    "seed": 0,
    "dataset": {"name": "digits"},
    "objectives": [{"metric": "accuracy"}, {"metric": "flops"}],
    "budget": {"steps": 2, "batch_size": 8, "resolution": 8, "data_fraction": 0.1},
    "sampler": {"name": "random"},
}

# No training at all: the synflow score at 8x8 and the FLOPs.
ZERO_COST = {
    **PROXY,
    "objectives": [{"metric": "zero_cost", "proxy": "synflow"}, {"metric": "flops"}],
    "budget": {"kind": "zero_cost", "resolution": 8, "zero_cost_proxy": "synflow"},
}


def study_config(folder: Path, base: dict[str, Any] = PROXY, name: str = "tiny", **changes: Any) -> StudyConfig:
    """``base`` with top-level ``changes``, as if read from ``folder/<name>.toml``."""
    data = copy.deepcopy(base)
    data.update(changes)
    return parse_study_config(data, folder / f"{name}.toml")


def write_study(folder: Path, text: str, name: str = "tiny") -> Path:
    """A study file in ``folder``."""
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


PROXY_TOML = """
space = "mobilenetv2-cifar"
n_trials = 3
seed = 0
enqueue = ["baseline"]
[dataset]
name = "digits"
[[objectives]]
metric = "accuracy"
[[objectives]]
metric = "flops"
[budget]
steps = 2
batch_size = 8
resolution = 8
data_fraction = 0.1
[sampler]
name = "random"
"""

ZERO_COST_TOML = """
space = "mobilenetv2-cifar"
n_trials = 4
seed = 0
[dataset]
name = "digits"
[[objectives]]
metric = "zero_cost"
proxy = "synflow"
[[objectives]]
metric = "flops"
[budget]
kind = "zero_cost"
resolution = 8
[sampler]
name = "random"
"""
