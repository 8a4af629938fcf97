import json

import pytest
import torch
from torch import nn

from fusionnas.evaluators import latency
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
    ms = measure_latency(model, (3, 16, 16), threads=1, warmup=1, repeats=3)
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

    def fake_measure(module, input_shape, device="cpu", **options):
        calls.append(input_shape)
        return 0.5

    monkeypatch.setattr(latency, "measure_latency", fake_measure)
    model = LatencyModel(space, "cpu")
    arch = space.baseline()
    keys = [p.key for p in model_parts(space.build(arch), space.input_shape)]
    parts, distinct = len(keys), len(set(keys))
    assert distinct < parts  # repeated blocks (b4 and b5, ...) share an entry
    assert model.predict(arch) == pytest.approx(0.5 * parts)
    assert len(calls) == distinct
    model.predict(arch)
    assert len(calls) == distinct  # cached, never measured twice
    path = tmp_path / "lut.json"
    model.save(path)
    assert json.loads(path.read_text())["device"] == "cpu"
    loaded = LatencyModel.load(path)
    assert loaded.entries == model.entries and loaded.measure_missing
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


def test_jetson_estimates_say_they_are_estimates(space):
    assert {"jetson-nano", "jetson-orin-nano"} <= set(list_devices())
    model = LatencyModel(space, "jetson-nano")
    assert model.is_estimate and "ESTIMATE" in model.describe()
    assert model.predict(space.baseline()) > 0


def test_jetson_nano_profile_reproduces_its_calibration_points():
    """Seed 002's Jetson Nano timings, per image: 1x1 conv 232.0 ms, FWHT layer 119.7 ms."""
    conv = create_fusion("conv", 1024, 1024)
    wht = create_fusion("wht", 1024, 1024)
    assert estimate_latency(conv, (1024, 32, 32), "jetson-nano") == pytest.approx(232.04, rel=0.05)
    assert estimate_latency(wht, (1024, 32, 32), "jetson-nano") == pytest.approx(119.73, rel=0.05)


def test_estimate_is_the_roofline_of_each_operator():
    profile = DEVICE_PROFILES["jetson-orin-nano"]
    conv = nn.Conv2d(64, 128, 1, bias=False)
    macs = 64 * 128 * 16 * 16
    moved = 4 * (64 * 256 + 128 * 256 + 64 * 128)
    expected = max(macs / profile.dense_macs_per_s, moved / profile.bytes_per_s) + profile.overhead_s
    assert estimate_latency(conv, (64, 16, 16), profile) == pytest.approx(expected * 1e3)


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
