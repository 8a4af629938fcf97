"""Evaluators: what an architecture costs (FLOPs, parameters) and how good it is."""
from fusionnas.evaluators.cost import count_flops, count_params, flop_breakdown

__all__ = ["count_flops", "count_params", "flop_breakdown"]
