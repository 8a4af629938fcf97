"""The metric records: names, attributes and directions said once, read everywhere."""
from fusionnas.evaluators.zero_cost import SCORES as IMPLEMENTED
from fusionnas.metrics import (
    METRICS,
    ZERO_COST_PROXIES,
    column_of,
    label_of,
    natural_direction,
)
from fusionnas.trial_record import attribute_of, attribute_of_column
from fusionnas.search import Objective


def test_every_zero_cost_proxy_named_is_implemented() -> None:
    assert set(ZERO_COST_PROXIES) == set(IMPLEMENTED)


def test_columns_attributes_and_directions() -> None:
    assert column_of("latency", "cpu") == "latency_ms@cpu" == attribute_of("latency", "cpu")
    assert (column_of("accuracy"), attribute_of("accuracy")) == ("accuracy", "val_accuracy")
    assert column_of("zero_cost", proxy="naswot") == "naswot" and column_of("memory") == "memory_mb"
    assert attribute_of_column("accuracy") == "val_accuracy" and attribute_of_column("latency_ms@cpu") == "latency_ms@cpu"
    assert [natural_direction(c) for c in ("accuracy", "synflow", "flops", "latency_ms@x", "val_accuracy")] == [
        "maximize", "maximize", "minimize", "minimize", "maximize"]
    assert label_of("latency_ms@jetson-nano") == "latency on jetson-nano (ms)" and label_of("flops") == "FLOPs"


def test_study_objectives_take_names_and_directions_from_the_records() -> None:
    for name, metric in METRICS.items():
        options = {"device": "cpu"} if metric.needs_device else {"proxy": "synflow"} if metric.needs_proxy else {}
        objective = Objective(name, **options)
        assert objective.direction == metric.direction
        assert objective.name == column_of(name, objective.device, objective.proxy)
