"""Evaluators: what an architecture costs (FLOPs, parameters) and how good it is."""
from fusionnas.evaluators.cost import count_flops, count_params, elementwise_flops, flop_breakdown
from fusionnas.evaluators.data import (
    DatasetUnavailableError,
    DataSplits,
    RawDataset,
    get_dataset,
    iterate_batches,
    list_datasets,
    prepare_batch,
    random_crop_flip,
    register_dataset,
)
from fusionnas.evaluators.proxy import (
    OutOfMemory,
    ProxyBudget,
    ProxyResult,
    ProxyTrainingError,
    TrainingDiverged,
    train_proxy,
)
from fusionnas.evaluators.training import atomic_save, endless_batches, eval_mode, evaluate, run_steps, train_mode
from fusionnas.evaluators.zero_cost import ZERO_COST_PROXIES, grad_norm, naswot, score, synflow

__all__ = [
    "count_flops",
    "elementwise_flops",
    "count_params",
    "flop_breakdown",
    "DataSplits",
    "DatasetUnavailableError",
    "get_dataset",
    "list_datasets",
    "register_dataset",
    "RawDataset",
    "iterate_batches",
    "prepare_batch",
    "random_crop_flip",
    "ProxyBudget",
    "ProxyResult",
    "ProxyTrainingError",
    "TrainingDiverged",
    "OutOfMemory",
    "train_proxy",
    "run_steps",
    "endless_batches",
    "evaluate",
    "eval_mode",
    "train_mode",
    "atomic_save",
    "ZERO_COST_PROXIES",
    "synflow",
    "naswot",
    "grad_norm",
    "score",
]
