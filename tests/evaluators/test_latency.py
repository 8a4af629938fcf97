import json

import pytest
import torch
from torch import nn

from fusionnas.evaluators import latency
from fusionnas.evaluators.deployed import DeployedLatencyMeter, WholeLatency
from fusionnas.evaluators.device_profiles import HostRates
from fusionnas.evaluators.latency_fit import Calibration, fit_calibration, operator_counts
from fusionnas.evaluators.latency import (
    DEVICE_PROFILES,
    LatencyModel,
    MissingLatencyEntry,
    estimate_latency,
    list_devices,
    measure_latency,
    model_parts,
    peak_activation_bytes,
)
from fusionnas.layers import create_fusion
from fusionnas.spaces import get_space


@pytest.fixture(scope="module")
def space():
    return get_space("mobilenetv2-cifar")


def test_measure_latency_restores_mode_and_threads():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)).train()
    threads = torch.get_num_threads()
    ms = measure_latency(model, (3, 16, 16), threads=threads + 1, warmup=1, repeats=3)
    assert ms > 0
    assert model.training
    assert torch.get_num_threads() == threads


def test_measure_latency_rejects_bad_arguments():
    model = nn.Conv2d(3, 8, 1)
    with pytest.raises(ValueError, match=r"input_shape must be \(C, H, W\)"):
        measure_latency(model, (16, 16))
    with pytest.raises(ValueError, match="repeats >= 1"):
        measure_latency(model, (3, 4, 4), repeats=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_measure_on_missing_cuda_says_so():
    with pytest.raises(ValueError, match="'cuda' is not available"):
        measure_latency(nn.Conv2d(3, 8, 1), (3, 4, 4), device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_measure_latency_on_cuda():
    model = nn.Conv2d(3, 8, 1)
    assert measure_latency(model, (3, 32, 32), device="cuda", warmup=2, repeats=5) > 0


def test_model_parts_cover_the_network_with_shapes(space):
    model = space.build(space.baseline())
    parts = model_parts(model, space.input_shape)
    assert [p.name for p in parts] == ["stem", *(f"b{i}" for i in range(len(model.blocks))), "head"]
    assert parts[0].input_shape == space.input_shape
    x = torch.zeros(1, *space.input_shape)
    with torch.no_grad():
        model.eval()
        y = parts[-1].module(torch.nn.Sequential(model.stem, *model.blocks)(x))
        torch.testing.assert_close(y, model(x))
    for a in parts:  # a key is the full configuration and input shape, nothing less
        for b in parts:
            same = a.module.signature == b.module.signature if a.name != "head" != b.name else a is b
            assert (a.key == b.key) == (same and a.input_shape == b.input_shape)


def test_same_block_configuration_shares_a_key(space):
    base = model_parts(space.build(space.baseline()), space.input_shape)
    other = model_parts(space.build(space.preset(space.presets()[-1])), space.input_shape)
    assert base[0].key == other[0].key  # the stem never changes
    assert {p.key for p in base} != {p.key for p in other}


def test_lookup_table_measures_lazily_and_round_trips(space, tmp_path, monkeypatch):
    calls = []

    def fake_measure(meter, module, *, input_shape=None):
        calls.append((input_shape, meter.runtime, meter.threads))
        return WholeLatency(0.25, 2.0)

    monkeypatch.setattr(DeployedLatencyMeter, "measure", fake_measure)
    model = LatencyModel(space, "cpu")
    assert model.runtime == "onnxruntime" and model.threads == 1  # what an exported model runs in
    arch = space.baseline()
    keys = [p.key for p in model_parts(space.build(arch), space.input_shape)]
    parts, distinct = len(keys), len(set(keys))
    assert distinct < parts  # repeated blocks (b4 and b5, ...) share an entry
    assert model.predict(arch) == pytest.approx(0.5 * parts)
    assert len(calls) == distinct
    model.predict(arch)
    assert len(calls) == distinct  # cached, never measured twice
    assert {(runtime, threads) for _, runtime, threads in calls} == {("onnxruntime", 1)}
    path = tmp_path / "lut.json"
    model.save(path)
    stored = json.loads(path.read_text())
    assert (stored["device"], stored["runtime"], stored["threads"], stored["reference_ms"]) == ("cpu", "onnxruntime", 1, 2.0)
    loaded = LatencyModel.load(path)
    assert loaded.entries == model.entries and loaded.measure_missing and loaded.runtime == "onnxruntime"
    assert loaded.predict(arch) == pytest.approx(0.5 * parts)
    assert len(calls) == distinct


def test_table_from_another_device_never_measures_here(space, tmp_path):
    table = LatencyModel(space, "cpu", {"nothing": 1.0})
    table.save(tmp_path / "nano.json")
    loaded = LatencyModel.load(tmp_path / "nano.json", device="jetson-nano")
    assert not loaded.is_estimate and not loaded.measure_missing
    with pytest.raises(MissingLatencyEntry, match=r"no entry 'stem\[|no entry 'conv\(.*fusionnas profile"):
        loaded.predict(space.baseline())


def test_bad_tables_give_clear_errors(space, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        LatencyModel.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        LatencyModel.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(ValueError, match="not a fusionnas table"):
        LatencyModel.load(tmp_path / "other.json")
    with pytest.raises(ValueError, match="unknown device 'tpu'; known: cpu, cuda, jetson-nano"):
        LatencyModel(space, "tpu")


def test_table_keeps_its_runtime(space, tmp_path):
    LatencyModel(space, "cpu", {"part": 1.0}, runtime="torch", threads=2).save(tmp_path / "eager.json")
    loaded = LatencyModel.load(tmp_path / "eager.json")
    assert (loaded.runtime, loaded.threads) == ("torch", 2)
    with pytest.raises(ValueError, match="measured in torch, not onnxruntime; profile one with `fusionnas "
                       "profile --runtime onnxruntime`"):
        LatencyModel.load(tmp_path / "eager.json", runtime="onnxruntime")
    # A table written before runtimes were recorded was measured in torch eager.
    old = json.loads((tmp_path / "eager.json").read_text())
    for key in ("runtime", "threads"):
        del old[key]
    old["format"] = 1
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert LatencyModel.load(tmp_path / "old.json").runtime == "torch"


def test_onnxruntime_table_times_exported_parts(space):
    arch = space.baseline()
    model = LatencyModel(space, "cpu", runtime="onnxruntime", repeats=3, reference_ms=2.0)
    parts = model.part_latencies(arch)
    assert set(parts) == {"stem", *(f"b{i}" for i in range(17)), "head"}
    assert all(ms > 0 for ms in parts.values())
    assert model.predict(arch) == pytest.approx(sum(parts.values()))


_HOST = HostRates("onnxruntime", 1, dense_macs_per_s=50e9, bytes_per_s=10e9)


def test_jetson_estimates_say_they_are_estimates(space, monkeypatch):
    assert list_devices() == ["cpu", "cuda", "jetson-nano"]  # the Orin guess was retired
    monkeypatch.setattr(latency, "measure_in_runtime", lambda *args, **options: 0.2)
    model = LatencyModel(space, "jetson-nano", host_rates=_HOST)
    assert model.is_estimate and model.runtime == "onnxruntime"
    assert "ESTIMATE" in model.describe() and "fusionnas profile" in model.describe()
    assert model.predict(space.baseline()) > 0.2 * 19  # the Nano is slower than this machine


def test_jetson_nano_estimate_reproduces_the_seed_conv():
    """Seed 002's Jetson Nano timing of a 1x1 conv, 1024 channels at 32x32: 232.0 ms per image.

    Timed here at exactly this machine's dense rate, the conv scales to the Nano's."""
    conv = create_fusion("conv", 1024, 1024)
    here_ms = 1024 * 1024 * 32 * 32 / _HOST.dense_macs_per_s * 1e3
    nano = estimate_latency(conv, (1024, 32, 32), "jetson-nano", host=_HOST, measured_ms=here_ms)
    assert nano == pytest.approx(232.04, rel=0.05)


def test_estimate_is_a_roofline_on_the_device():
    profile = DEVICE_PROFILES["jetson-nano"]
    conv = nn.Conv2d(64, 128, 1, bias=False)
    moved = 4 * (64 * 256 + 128 * 256 + 64 * 128)
    slower = _HOST.dense_macs_per_s / profile.dense_macs_per_s
    assert estimate_latency(conv, (64, 16, 16), profile, host=_HOST, measured_ms=0.5) == pytest.approx(0.5 * slower)
    # A part whose bytes take longer at the device's bandwidth than its scaled CPU work is memory-bound.
    tiny = 1e-3 * moved / profile.bytes_per_s * 1e3 / slower
    memory_ms = moved / profile.bytes_per_s * 1e3
    assert estimate_latency(conv, (64, 16, 16), profile, host=_HOST, measured_ms=tiny) == pytest.approx(memory_ms)


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.use_residual = True
        self.conv = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return x + self.conv(x)


def test_peak_activation_memory_counts_inputs_outputs_and_held_residuals():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), _Residual(), nn.Conv2d(4, 16, 1))
    map_bytes = 8 * 8 * 4  # one channel of 8x8 float32
    # conv 4->16: 4 + 16 channels; inside the residual block: in 4 + out 4 + held 4.
    assert peak_activation_bytes(model, (3, 8, 8)) == 20 * map_bytes
    model = nn.Sequential(nn.Conv2d(3, 4, 1), _Residual())
    assert peak_activation_bytes(model, (3, 8, 8)) == 12 * map_bytes


def test_calibration_learns_a_term_per_operator_that_an_extreme_network_cannot_tilt(space, monkeypatch, tmp_path):
    from fusionnas.spaces import random_archs

    archs = random_archs(space, 30, seed=3)
    monkeypatch.setattr(DeployedLatencyMeter, "measure",
                        lambda meter, module, input_shape: WholeLatency(0.01 * sum(input_shape) ** 0.5, 1.0))
    table = LatencyModel(space, "cpu")
    sums = [table.predict(arch) for arch in archs]  # uncalibrated: the sum of the parts
    assert len(set(sums)) > 12
    truth = {"fusion:wht": -0.04, "fusion:dct": 0.01, "fusion:bft": -0.02, "depthwise:hadamard": 0.03,
             "head:wht": 0.5, "head:bft": -0.1}
    wholes = [1.2 * s + 0.3 + sum(truth.get(k, 0) * n for k, n in operator_counts(a).items())
              for s, a in zip(sums, archs)]
    wholes[0] *= 3  # one network measured during a burst of load
    calibration = table.calibrate(archs, wholes)
    assert calibration.scale == pytest.approx(1.2) and calibration.offset == pytest.approx(0.3, abs=1e-9)
    assert calibration.terms == pytest.approx({**dict.fromkeys(calibration.terms, 0.0), **truth}, abs=1e-9)
    assert table.predict(archs[1]) == pytest.approx(wholes[1])
    table.save(tmp_path / "table.json")
    saved = LatencyModel.load(tmp_path / "table.json", space)
    assert saved.calibration == calibration and saved.predict(archs[1]) == pytest.approx(wholes[1])


def test_with_few_networks_the_calibration_is_a_theil_sen_line():
    calibration = fit_calibration([1.0, 2.0, 3.0, 4.0, 5.0], [{"fusion:wht": i} for i in range(5)],
                                  [1.5, 2.7, 3.9, 99.0, 6.3])
    assert calibration.terms == {} and calibration.scale == pytest.approx(1.2) and calibration.offset == pytest.approx(0.3)


def test_a_format_2_table_s_calibration_is_read_as_a_line():
    assert Calibration.from_json([1.1, -0.2]) == Calibration(1.1, -0.2)
    assert Calibration(1.1, -0.2).apply(2.0, {"fusion:wht": 3}) == pytest.approx(2.0)


def test_operator_counts_leave_the_convs_out(space):
    assert operator_counts(space.baseline()) == {}
    counts = operator_counts(space.preset("all-wht-hadamard"))
    assert counts == {"fusion:wht": 16 + 17, "depthwise:hadamard": 17, "head:wht": 1}
