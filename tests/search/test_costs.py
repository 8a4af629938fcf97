"""The study's cost evaluator: what the objective records and the runner checks, from one place."""
from __future__ import annotations

import copy

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
    record = evaluator.measure(arch, space.build(arch, num_classes=10))
    reference = torchvision.models.mobilenet_v2(num_classes=10)
    assert record.costs["params"] == sum(p.numel() for p in reference.parameters())
    assert record.latencies["cpu"].ms > 0 and record.latencies["cpu"].runtime == "torch"
    assert record.latencies["cpu"].source == "table" and evaluator.complete(record)
    measured = evaluator.constraint_measures(record)
    assert measured["latency_ms"] == record.latencies["cpu"].ms and measured["flops"] == record.costs["flops"]
    before = copy.deepcopy(record)
    assert evaluator.measure(arch, space.build(arch), record) == before  # nothing measured twice
    evaluator.save_tables()
    assert (tmp_path / "artifacts" / "latency-cpu-torch.json").is_file()


def test_flops_counted_part_by_part_equal_fvcore_on_the_whole_network(tmp_path, monkeypatch) -> None:
    """Each distinct stem, head and block stage is traced once per evaluator; the sums are fvcore's
    counts of the whole networks."""
    import fusionnas.search.costs as costs_module
    from fusionnas.evaluators import count_flops
    from fusionnas.evaluators.parts import model_parts
    from fusionnas.spaces import InvertedResidual, random_archs

    evaluator = CostEvaluator(study_config(tmp_path, PROXY), None)
    space = evaluator.space
    archs = [space.baseline(), space.preset("all-dct"), *random_archs(space, 4, seed=4)]
    traced = []
    monkeypatch.setattr(costs_module, "count_flops", lambda model, shape: traced.append(model) or count_flops(model, shape))
    pieces = []  # (key, input shape) of every stem, head and block stage counted
    for arch in archs:
        model = space.build(arch, num_classes=10)
        assert evaluator.flops(model) == count_flops(model, (1, *space.input_shape)), arch.archid
        for part in model_parts(model, space.input_shape):
            stages = part.module.stages(part.input_shape) if isinstance(part.module, InvertedResidual) else [
                (part.key, part.module, part.input_shape)]
            pieces += [(key, shape) for key, _, shape in stages]
    assert len(traced) == len(set(pieces)) < 0.8 * len(pieces)  # each traced once; stages recur
    before = len(traced)
    assert evaluator.flops(space.build(space.preset("all-dct"), num_classes=10)) > 0 and len(traced) == before


def test_a_latency_objective_s_batch_size_reaches_its_table_and_its_files(tmp_path) -> None:
    objectives = [{"metric": "accuracy"}, {"metric": "latency", "device": "cpu", "batch_size": 2}]
    evaluator = CostEvaluator(study_config(tmp_path, PROXY, objectives=objectives), tmp_path / "artifacts")
    table = evaluator.latency_table("cpu")
    assert table.batch_size == 2 and table.to_dict()["batch_size"] == 2
    table.entries["stem@3x32x32"] = 0.1  # as if measured: the table has grown
    evaluator.save_tables()
    assert [p.name for p in (tmp_path / "artifacts").iterdir()] == ["latency-cpu-onnxruntime-b2.json"]
