"""Study files: shipped studies parse, every bad input gives a field-naming, fixable error."""
from __future__ import annotations

import copy
import importlib.util
import json
import warnings
from pathlib import Path

import optuna
import pytest

from fusionnas.search import (
    Constraints,
    Objective,
    SamplerConfig,
    SnapshotTPESampler,
    StudyConfigError,
    load_study_config,
    parse_study_config,
)

STUDIES = Path(__file__).resolve().parents[2] / "studies"
KNOWN = dict(
    known_spaces=["mobilenetv2-cifar", "mobilenetv2-imagenet"],
    known_datasets=["cifar10", "cifar100", "digits", "imagefolder", "synthetic"],
    known_devices=["cpu", "cuda", "jetson-nano"],
    known_presets={"mobilenetv2-cifar": ["baseline", "wht-last-third", "all-bft", "all-wht"]},
)
VALID = {
    "space": "mobilenetv2-cifar",
    "n_trials": 4,
    "dataset": {"name": "digits"},
    "objectives": [{"metric": "accuracy"}, {"metric": "latency", "device": "jetson-nano"}],
    "constraints": {"max_flops": 3e8, "max_latency_ms": 12.0, "latency_device": "jetson-nano"},
    "budget": {"steps": 20},
}


def parse(data: dict, path: str | Path = "study.toml"):
    return parse_study_config(data, path, **KNOWN)


def with_change(dotted: str, value) -> dict:
    """VALID with ``dotted`` (``budget.steps``, ``objectives.1.device``) set; None deletes."""
    data = copy.deepcopy(VALID)
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if value is None:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


@pytest.mark.parametrize("study", sorted(STUDIES.glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_studies_parse(study: Path) -> None:
    config = load_study_config(study, **KNOWN)
    assert config.name == study.stem
    assert config.storage == f"sqlite:///{study.with_suffix('.db')}"
    assert len(config.directions) == len(config.objectives) >= 1
    json.dumps(config.to_dict())


def test_shipped_studies_cover_the_issue() -> None:
    names = {p.stem for p in STUDIES.glob("*.toml")}
    assert {"quickstart", "cifar10-jetson-nano", "seed-hybrid"} <= names
    quick = load_study_config(STUDIES / "quickstart.toml", **KNOWN)
    assert (quick.dataset.name, quick.space) == ("digits", "mobilenetv2-cifar")
    assert quick.timeout_s <= 600 and quick.budget.rungs >= 2  # many architectures briefly, the best longer
    nano = load_study_config(STUDIES / "cifar10-jetson-nano.toml", **KNOWN)
    assert nano.constraints.latency_device == "jetson-nano"
    assert "latency_ms@jetson-nano" in nano.metric_names
    seed = load_study_config(STUDIES / "seed-hybrid.toml", **KNOWN)
    assert seed.enqueue == ("baseline", "wht-last-third", "all-bft")


@pytest.mark.skipif(importlib.util.find_spec("fusionnas.spaces") is None,
                    reason="fusionnas.spaces not written yet")
@pytest.mark.parametrize("study", sorted(STUDIES.glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_studies_match_the_registries(study: Path) -> None:
    load_study_config(study)  # names looked up in the real registries


def test_defaults_and_helpers() -> None:
    config = parse(VALID)
    assert config.directions == ["maximize", "minimize"]
    assert config.metric_names == ["accuracy", "latency_ms@jetson-nano"]
    assert config.sampler.name == "tpe" and config.sampler.seed == config.seed == 0
    assert config.budget.proxy_options() == {"steps": 20, "data_fraction": 1.0, "bn_recalibration_batches": 8}
    assert config.constraints.limits == {"flops": 3e8, "latency_ms": 12.0}
    assert parse({**VALID, "dataset": "digits"}).dataset == config.dataset


def test_zero_cost_objective_takes_the_budget_proxy() -> None:
    data = {**VALID, "objectives": [{"metric": "zero_cost"}, {"metric": "params"}],
            "budget": {"kind": "zero_cost", "zero_cost_proxy": "naswot"}}
    config = parse(data)
    assert config.objectives[0].proxy == "naswot"
    assert config.directions == ["maximize", "minimize"]


@pytest.mark.parametrize("dotted, value, field, fix", [
    # unknown key, with the closest valid key
    ("budget.stpes", 3, "budget.stpes", "did you mean 'steps'?"),
    ("max_flops", 1e8, "max_flops", "move it under [constraints]"),
    # wrong type
    ("n_trials", "10", "n_trials", "write n_trials = 20"),
    ("budget.batch_size", 32.5, "budget.batch_size", "write batch_size = 64"),
    ("constraints", 5, "constraints", "write [constraints] as a table"),
    ("objectives", "accuracy", "objectives", "[[objectives]]"),
    # unknown names
    ("space", "mobilenetv2-cifa", "space", "did you mean 'mobilenetv2-cifar'?"),
    ("dataset.name", "cifar-10", "dataset.name", "did you mean 'cifar10'?"),
    ("objectives.1.device", "jetson-nan", "objectives[1].device", "did you mean 'jetson-nano'?"),
    ("constraints.latency_device", "tx2", "constraints.latency_device", "known: cpu, cuda"),
    ("objectives.0.metric", "acc", "objectives[0].metric", "known: accuracy"),
    ("objectives.0.direction", "maximise", "objectives[0].direction", "'maximize'"),
    ("sampler.name", "cmaes", "sampler.name", "known: evolution, nsga2, random, tpe"),
    ("enqueue", ["baseline", "seed"], "enqueue[1]", "known: all-bft"),
    # negative budget
    ("budget.steps", -5, "budget.steps", "write steps = 50"),
    ("budget.epochs", 0, "budget.steps", "not both"),
    ("budget", {"epochs": -1}, "budget.epochs", "write epochs = 1"),
    ("budget.data_fraction", 1.5, "budget.data_fraction", "write data_fraction"),
    ("n_trials", 0, "n_trials", "write n_trials = 20"),
    ("timeout_s", -1, "timeout_s", "write timeout_s"),
    # impossible constraint
    ("constraints.max_flops", 0, "constraints.max_flops", "positive limit"),
    ("constraints.max_params", -1e6, "constraints.max_params", "positive limit"),
    ("constraints.latency_device", None, "constraints.latency_device", "add latency_device"),
    # missing or inconsistent
    ("space", None, "space", 'add space = "mobilenetv2-cifar"'),
    ("objectives.1.device", None, "objectives[1].device", 'add device = "jetson-nano"'),
    ("objectives.0", {"metric": "flops", "device": "cpu"}, "objectives[0].device", "remove"),
    ("n_trials", None, "n_trials", "add n_trials = 20 or timeout_s"),
    ("sampler.population_size", 10, "sampler.population_size", "remove the key"),
    ("budget.kind", "zero_cost", "objectives[0].metric", 'budget.kind = "proxy"'),
    ("seed", -3, "seed", "write seed = 0"),
    # a [space] table
    ("space", {"name": "mobilenetv2-cifar", "fusions": ["fft"]}, "space.fusions",
     "offered: conv, wht, dct, bft"),
    ("space", {"name": "mobilenetv2-cifar", "kernels": []}, "space.kernels", "list some of: 3, 5"),
    ("space", {"name": "mobilenetv2-cifar", "widths": [1.0, 1]}, "space.widths", "remove the duplicate"),
    ("space", {"name": "mobilenetv2-cifar", "depthwise": "conv"}, "space.depthwise", "write a list"),
    ("space", {"name": "mobilenetv2-cifar", "kernel": [3]}, "space.kernel", "did you mean 'kernels'?"),
    ("space", {"fusions": ["conv"]}, "space.name", 'write name = "mobilenetv2-cifar"'),
    ("space", {"name": "mobilenetv2-cifa", "fusions": ["conv"]}, "space.name", "did you mean 'mobilenetv2-cifar'?"),
])
def test_bad_input_names_the_field_and_the_fix(dotted, value, field, fix) -> None:
    with pytest.raises(StudyConfigError) as info:
        parse(with_change(dotted, value))
    lines = [p.line("study.toml") for p in info.value.problems]
    assert any(line.startswith(f"study.toml: {field}: ") and fix in line for line in lines), lines
    assert isinstance(info.value, ValueError)


def test_every_problem_is_reported_one_per_line() -> None:
    data = with_change("budget.stpes", 3)
    data.update(space="nope", n_trials="3", dataset={"name": "digits", "val_fraction": 2})
    with pytest.raises(StudyConfigError) as info:
        parse(data)
    fields = [p.field for p in info.value.problems]
    assert set(fields) == {"budget.stpes", "space", "n_trials", "dataset.val_fraction"}
    lines = str(info.value).splitlines()
    assert lines[0] == "study.toml: 4 problems in the study"
    assert len(lines) == 5 and all(line.startswith("study.toml: ") for line in lines)


def test_a_single_problem_is_one_line() -> None:
    with pytest.raises(StudyConfigError) as info:
        parse(with_change("budget.steps", -5))
    assert str(info.value) == "study.toml: budget.steps: must be > 0, got -5; write steps = 50"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StudyConfigError, match=r"nope\.toml: no such study file; check the path"):
        load_study_config(tmp_path / "nope.toml", **KNOWN)


def test_toml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    study = tmp_path / "bad.toml"
    study.write_text('space = "mobilenetv2-cifar"\nn_trials = 4\nseed = \n')
    with pytest.raises(StudyConfigError) as info:
        load_study_config(study, **KNOWN)
    message = str(info.value)
    assert "\n" not in message and "line 3, column" in message and "TOML syntax error" in message
    study.write_text('space = "mobilenetv2-cifar\n')
    with pytest.raises(StudyConfigError, match="line 1"):
        load_study_config(study, **KNOWN)


def test_storage_resolves_beside_the_study(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "studies"
    folder.mkdir()
    study = folder / "mine.toml"
    study.write_text(
        'space = "mobilenetv2-cifar"\nn_trials = 2\ndataset = "digits"\n'
        '[[objectives]]\nmetric = "accuracy"\n'
    )
    monkeypatch.chdir(tmp_path)
    config = load_study_config(Path("studies/mine.toml"), **KNOWN)
    assert config.storage == f"sqlite:///{folder.resolve() / 'mine.db'}"
    assert config.path == study.resolve()
    for storage, expected in [
        ("sqlite:///runs/x.db", f"sqlite:///{folder.resolve() / 'runs/x.db'}"),
        ("x.db", f"sqlite:///{folder.resolve() / 'x.db'}"),
        ("sqlite:////abs/x.db", "sqlite:////abs/x.db"),
        ("postgresql://host/db", "postgresql://host/db"),
    ]:
        data = {**VALID, "storage": storage}
        assert parse_study_config(data, study, **KNOWN).storage == expected


@pytest.mark.parametrize("name, cls", [
    ("tpe", SnapshotTPESampler),
    ("nsga2", optuna.samplers.NSGAIISampler),
    ("random", optuna.samplers.RandomSampler),
])
def test_make_sampler_uses_the_seed(name, cls) -> None:
    def draws(seed: int) -> list[str]:
        config = parse({**VALID, "seed": seed, "sampler": {"name": name}})
        sampler = config.make_sampler()
        assert type(sampler) is cls
        study = optuna.create_study(sampler=sampler, directions=config.directions)
        return [study.ask().suggest_categorical("op", ["conv", "wht", "dct", "bft"])
                for _ in range(8)]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    assert draws(3) == draws(3) != draws(4)


def test_make_sampler_passes_constraints_func() -> None:
    func = lambda trial: (0.0,)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated in Optuna 5
        tpe = SamplerConfig("tpe", seed=1, n_startup_trials=3).make_sampler(func)
        nsga = SamplerConfig("nsga2", seed=1, population_size=8).make_sampler(func)
    assert tpe._constraints_func is func and tpe._n_startup_trials == 3
    assert nsga._constraints_func is func and nsga._population_size == 8


def test_tpe_options_for_parallel_workers() -> None:
    default = parse({**VALID, "sampler": {"name": "tpe"}}).make_sampler()
    assert default._constant_liar is True  # acts only while other workers' trials run
    chosen = parse({**VALID, "sampler": {"name": "tpe", "constant_liar": False, "multivariate": True,
                                         "group": True}}).make_sampler()
    assert (chosen._constant_liar, chosen._multivariate, chosen._group) == (False, True, True)
    assert parse(VALID).fingerprint == parse({**VALID, "sampler": {"constant_liar": False}}).fingerprint


@pytest.mark.parametrize("sampler, where, problem", [
    ({"name": "tpe", "constant_liar": "yes"}, "sampler.constant_liar", "expected true or false"),
    ({"name": "tpe", "group": True}, "sampler.group", "needs multivariate = true"),
    ({"name": "random", "multivariate": True}, "sampler.multivariate", "only the tpe sampler uses it"),
    ({"name": "nsga2", "constant_liar": True}, "sampler.constant_liar", "only the tpe sampler uses it"),
    ({"name": "tpe", "population_size": 8}, "sampler.population_size",
     "only the nsga2 and evolution samplers use it"),
])
def test_tpe_options_are_checked(sampler, where, problem) -> None:
    with pytest.raises(StudyConfigError) as info:
        parse({**VALID, "sampler": sampler})
    assert any(p.field == where and problem in p.problem for p in info.value.problems), info.value


def test_the_evolution_sampler_is_offered() -> None:
    from fusionnas.search.evolution import EvolutionSampler

    sampler = parse({**VALID, "sampler": {"name": "evolution", "n_startup_trials": 4, "population_size": 30}})
    made = sampler.make_sampler()
    assert isinstance(made, EvolutionSampler) and (made.n_startup_trials, made.population_size) == (4, 30)
    assert parse({**VALID, "sampler": {"name": "evolution"}}).fingerprint == parse(VALID).fingerprint


def test_fingerprint_tracks_what_defines_the_search() -> None:
    base = parse(VALID).fingerprint
    assert parse({**VALID, "n_trials": 50, "storage": "postgresql://h/db"}).fingerprint == base
    assert parse({**VALID, "space": "mobilenetv2-imagenet"}).fingerprint != base
    assert parse(with_change("budget.steps", 21)).fingerprint != base
    assert parse(with_change("budget.rungs", 3)).fingerprint != base
    assert parse(with_change("budget.supernet_steps", 50)).fingerprint == base  # used by kind = "supernet" only


def test_fingerprint_of_a_restricted_space() -> None:
    """Unrestricted studies keep the fingerprint they had before [space] tables existed."""
    base = parse(VALID)
    assert base.fingerprint == "8982197e7c40"  # as stored by every study made before
    assert parse({**VALID, "space": {"name": "mobilenetv2-cifar"}}).fingerprint == base.fingerprint
    conv = parse({**VALID, "space": {"name": "mobilenetv2-cifar", "fusions": ["conv", "wht"], "widths": [1]}})
    assert conv.fingerprint != base.fingerprint
    reordered = parse({**VALID, "space": {"name": "mobilenetv2-cifar", "widths": [1.0], "fusions": ["wht", "conv"]}})
    assert reordered.fingerprint == conv.fingerprint  # kept in the space's values and order
    assert conv.to_dict()["space_restriction"] == {"fusions": ["conv", "wht"], "widths": [1.0]}
    assert base.to_dict()["space_restriction"] is None


def test_enqueued_presets_must_lie_inside_the_restriction() -> None:
    data = {**VALID, "space": {"name": "mobilenetv2-cifar", "fusions": ["bft"]}, "enqueue": ["all-bft", "baseline"]}
    with pytest.raises(StudyConfigError) as info:
        parse(data)
    assert str(info.value) == (
        "study.toml: enqueue[1]: preset 'baseline' lies outside the [space] lists (fusions = [\"bft\"]): "
        "head_fusion: 'conv' is not one of bft; remove it from enqueue or widen the [space] lists")
    assert parse({**data, "enqueue": ["all-bft"]}).search_space().size() < parse(VALID).search_space().size()


def test_constraints_violations_and_feasibility_hook() -> None:
    config = parse(VALID)
    measured = {"flops": 4e8, "latency_ms": 10.0, "params": 1.0}
    assert config.constraints.violations(measured) == {"flops": 1e8, "latency_ms": -2.0}
    with pytest.raises(StudyConfigError) as info:
        config.check_feasible(measured)
    (problem,) = info.value.problems
    assert problem.field == "constraints.max_flops" and "raise max_flops" in problem.fix
    config.check_feasible({"flops": 1e8, "latency_ms": 1.0})
    with pytest.raises(ValueError, match="latency_ms"):
        config.constraints.violations({"flops": 1.0})


def test_dataclasses_validate_direct_construction() -> None:
    with pytest.raises(StudyConfigError, match="device: a latency objective needs a device"):
        Objective("latency")
    with pytest.raises(StudyConfigError, match="max_memory_mb: must be > 0"):
        Constraints(max_memory_mb=0)
    assert Objective("params").direction == "minimize"


def test_latency_names_its_runtime() -> None:
    config = parse(VALID)
    assert config.latency_runtimes == {"jetson-nano": "onnxruntime"}
    cuda = parse(with_change("objectives.1", {"metric": "latency", "device": "cuda"}))
    assert cuda.objectives[1].runtime == "torch"  # no onnxruntime CUDA provider is installed by default
    eager = parse(with_change("objectives.1.runtime", "torch"))
    assert eager.latency_runtimes == {"jetson-nano": "torch"}  # the limit follows the objective
    limit_only = parse({**VALID, "objectives": [{"metric": "accuracy"}]})
    assert limit_only.latency_runtimes == {"jetson-nano": "onnxruntime"}


@pytest.mark.parametrize("dotted, value, where, problem", [
    ("objectives.1.runtime", "tflite", "objectives[1].runtime", "unknown runtime 'tflite'"),
    ("objectives.0.runtime", "torch", "objectives[0].runtime", "only latency objectives take a runtime"),
    ("constraints.latency_runtime", "torch", "constraints.latency_runtime",
     "jetson-nano latency is measured in 'onnxruntime' elsewhere in the study, not 'torch'"),
    ("objectives.1", {"metric": "latency", "device": "cuda", "runtime": "openvino"}, "objectives[1].runtime",
     "runtime openvino runs on the cpu only, got device 'cuda'"),
    ("objectives.1.batch_size", 4, "objectives[1].batch_size",
     "only latency objectives on cpu or cuda take a batch size, not 'latency' on jetson-nano"),
    ("objectives.0.batch_size", 4, "objectives[0].batch_size", "not 'accuracy'"),
    ("objectives.1", {"metric": "latency", "device": "cpu", "batch_size": 0}, "objectives[1].batch_size",
     "must be > 0"),
])
def test_bad_runtimes_are_named(dotted, value, where, problem) -> None:
    with pytest.raises(StudyConfigError) as info:
        parse(with_change(dotted, value))
    assert any(p.field == where and problem in p.problem for p in info.value.problems), info.value


NEWER_BUDGET_KEYS = ("rungs", "reduction", "supernet_steps")  # out of the fingerprint at their defaults


def test_studies_trained_without_bn_recalibration_resume_with_it_off() -> None:
    """bn_recalibration = 0 gives the fingerprint a study had before the key existed; the default does not."""
    import hashlib

    off = parse(with_change("budget.bn_recalibration", 0))
    data = off.to_dict()
    for key in ("bn_recalibration", *NEWER_BUDGET_KEYS):
        del data["budget"][key]
    for objective in data["objectives"]:
        objective.pop("runtime", None) if objective.get("runtime") in (None, "torch") else None
        objective.pop("batch_size")  # None: left out, as before the key existed
    canonical = json.dumps({k: data[k] for k in ("space", "dataset", "objectives", "budget")},
                           sort_keys=True, separators=(",", ":"))
    assert off.fingerprint == hashlib.sha256(canonical.encode()).hexdigest()[:12]
    assert parse(VALID).fingerprint != off.fingerprint
    with pytest.raises(StudyConfigError, match="bn_recalibration"):
        parse(with_change("budget.bn_recalibration", -1))


def test_fingerprint_of_a_latency_study_names_a_new_runtime_only() -> None:
    """Studies stored before runtimes existed measured torch eager: they resume with runtime = "torch"."""
    onnx = parse(VALID)
    eager = parse(with_change("objectives.1.runtime", "torch"))
    assert onnx.fingerprint != eager.fingerprint
    data = onnx.to_dict()
    for objective in data["objectives"]:
        del objective["runtime"], objective["batch_size"]
    for key in NEWER_BUDGET_KEYS:  # keys added later, left out of the fingerprint at their defaults
        del data["budget"][key]
    canonical = json.dumps({k: data[k] for k in ("space", "dataset", "objectives", "budget")},
                           sort_keys=True, separators=(",", ":"))
    import hashlib

    assert eager.fingerprint == hashlib.sha256(canonical.encode()).hexdigest()[:12]


def test_a_latency_objective_names_its_batch_size() -> None:
    batched = parse(with_change("objectives.1", {"metric": "latency", "device": "cpu", "batch_size": 8}))
    assert batched.latency_batch_sizes == {"cpu": 8, "jetson-nano": 1}  # the limit's device: batch 1
    single = parse(with_change("objectives.1", {"metric": "latency", "device": "cpu"}))
    assert single.latency_batch_sizes == {"cpu": 1, "jetson-nano": 1}
    assert batched.fingerprint != single.fingerprint
    openvino = parse(with_change("objectives.1", {"metric": "latency", "device": "cpu", "runtime": "openvino"}))
    assert openvino.latency_runtimes["cpu"] == "openvino"


@pytest.mark.parametrize("dotted, value, field", [
    ("objectives.1", {"metric": "latncy", "device": "jetson-nano"}, "objectives[1].metric"),
    ("objectives.0", {"metric": "acuracy", "proxy": "synflow", "batch_size": 8}, "objectives[0].metric"),
    ("budget", {"step": 8, "rungs": 3}, "budget.step"),
    ("objectives.1", {"metric": "latency", "devise": "jetson-nano"}, "objectives[1].devise"),
])
def test_a_misspelling_is_the_only_problem_reported(dotted, value, field) -> None:
    with pytest.raises(StudyConfigError) as info:
        parse(with_change(dotted, value))
    assert [p.field for p in info.value.problems] == [field], str(info.value)


@pytest.mark.parametrize("budget, fix", [
    ({"rungs": 3}, "add steps = 400, or remove rungs"),
    ({"epochs": 1, "rungs": 3}, "replace epochs with steps = 400, or remove rungs"),
    ({"kind": "zero_cost", "rungs": 3}, "remove rungs"),
])
def test_rungs_without_steps_name_only_what_to_change(budget, fix) -> None:
    data = with_change("budget", budget)
    if budget.get("kind") == "zero_cost":
        data["objectives"] = [{"metric": "zero_cost"}]
    with pytest.raises(StudyConfigError) as info:
        parse(data)
    assert str(info.value).endswith(f"; {fix}"), str(info.value)
