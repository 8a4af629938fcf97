"""The study's cost evaluator: what the objective records and the runner checks, from one place."""
from __future__ import annotations

import torchvision

from _studies import PROXY, study_config
from fusionnas.search.costs import COST_KEYS, CostEvaluator


def test_costs_of_the_baseline_and_what_the_limits_compare(tmp_path) -> None:
    config = study_config(tmp_path, PROXY, objectives=[{"metric": "accuracy"}, {"metric": "latency", "device": "cpu",
                                                                                 "runtime": "torch"}],
                          constraints={"max_flops": 1e9, "max_latency_ms": 1e3, "latency_device": "cpu"})
    evaluator = CostEvaluator(config, tmp_path / "artifacts")
    assert evaluator.names == [*COST_KEYS, "latency_ms@cpu"]
    space = evaluator.space
    arch = space.baseline()
    costs = evaluator.costs(arch, space.build(arch, num_classes=10))
    reference = torchvision.models.mobilenet_v2(num_classes=10)
    assert costs["params"] == sum(p.numel() for p in reference.parameters())
    assert costs["latency_ms@cpu"] > 0 and costs["latency_runtime@cpu"] == "torch"
    assert costs["latency_source@cpu"] == "measured"
    measured = evaluator.constraint_measures(costs)
    assert measured["latency_ms"] == costs["latency_ms@cpu"] and measured["flops"] == costs["flops"]
    assert evaluator.costs(arch, space.build(arch), known=costs) == {}  # nothing measured twice
    evaluator.save_tables()
    assert (tmp_path / "artifacts" / "latency-cpu-torch.json").is_file()
