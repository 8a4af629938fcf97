"""An operator from outside the package reaches every part of fusionnas through one file.

``tests/gconv_operator.py`` defines a grouped 1x1 conv and registers it; no
other file names it. In this process (with the registry restored afterwards)
the spaces offer it (a restriction may keep it), an Arch using it validates and
builds, fvcore counts it by its formula, a latency table times it, tables
print its letter and export writes an ONNX model that onnxruntime runs like
torch. Through the command
line, a study file's ``plugins`` brings it to ``search`` (which samples it)
and ``pareto``; a study searched with it refuses to resume without it.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _studies import ZERO_COST_TOML, write_study
from fusionnas.evaluators import count_flops
from fusionnas.evaluators.latency import LatencyModel
from fusionnas.evaluators.onnx_export import onnx_error, to_onnx
from fusionnas.layers import create_fusion, registry
from fusionnas.plugins import load_plugins
from fusionnas.results.pareto import compact_ops
from fusionnas.spaces import Arch, get_space

PLUGIN = Path(__file__).with_name("gconv_operator.py")
SPACE = get_space("mobilenetv2-cifar")


@pytest.fixture
def plugin(monkeypatch):
    """gconv_operator imported into a copy of the registry, which is restored after the test."""
    monkeypatch.setattr(registry, "_OPERATORS", dict(registry._OPERATORS))
    monkeypatch.delitem(sys.modules, "gconv_operator", raising=False)
    load_plugins(["gconv_operator"], PLUGIN.parent)
    yield
    sys.modules.pop("gconv_operator", None)


def gconv_arch() -> Arch:
    data = json.loads(SPACE.baseline().to_json())
    data["blocks"][3]["project"] = data["blocks"][5]["expand"] = data["head_fusion"] = "gconv"
    return Arch.from_json(json.dumps(data))


def test_the_plugin_operator_is_offered_counted_timed_lettered_and_exported(plugin) -> None:
    choices = SPACE.choices()
    assert choices["b3.project"][-1] == "gconv" and choices["head.fusion"][:4] == ["conv", "wht", "dct", "bft"]
    arch = gconv_arch()
    SPACE.validate(arch)
    layer = create_fusion("gconv", 16, 32)
    assert count_flops(layer, (1, 16, 8, 8)) == 16 // 4 * 32 * 8 * 8
    table = LatencyModel(SPACE, "cpu", repeats=2)
    parts = table.part_latencies(arch)
    assert parts["b3"] > 0 and any("kind=gconv" in key for key in table.entries)
    assert compact_ops(arch.to_json()).split()[3] == "ccg" and compact_ops(arch.to_json()).endswith("| g")
    model = SPACE.build(arch).eval()
    error, bound = onnx_error(to_onnx(model, SPACE.input_shape), model, SPACE.input_shape)
    assert error <= bound


def test_a_space_can_be_restricted_to_the_plugin_operator(plugin) -> None:
    gconv = SPACE.restrict(fusions=["conv", "gconv"])
    assert gconv.choices()["head.fusion"] == ["conv", "gconv"] and gconv.baseline() == SPACE.baseline()
    gconv.validate(gconv_arch())
    assert SPACE.restrict(fusions=["gconv"]).size() < SPACE.size()


def test_without_the_plugin_the_space_is_as_it_was() -> None:
    assert "gconv" not in SPACE.choices()["b3.project"]
    with pytest.raises(ValueError, match="'gconv' is not one of"):
        SPACE.validate(gconv_arch())


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fusionnas.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_a_study_files_plugins_reach_search_and_pareto(tmp_path) -> None:
    shutil.copy(PLUGIN, tmp_path)  # beside the study file
    write_study(tmp_path, 'plugins = ["gconv_operator"]\n' + ZERO_COST_TOML.replace("n_trials = 4", "n_trials = 2"))
    searched = cli("search", "tiny.toml", cwd=tmp_path)
    assert searched.returncode == 0, searched.stderr
    shown = cli("pareto", "tiny.toml", "--all", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "g gconv" in shown.stdout and any("g" in line.split("|")[0] for line in shown.stdout.splitlines()
                                             if line[:5].strip().isdigit())
    without = tmp_path / "without.toml"
    text = (tmp_path / "tiny.toml").read_text()
    without.write_text(text.replace('plugins = ["gconv_operator"]\n', 'name = "tiny"\nstorage = "tiny.db"\n'))
    refused = cli("search", "without.toml", cwd=tmp_path)
    assert refused.returncode == 2 and "offered other choices" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_a_plugin_that_fails_to_import_is_one_line(tmp_path) -> None:
    write_study(tmp_path, 'plugins = ["no_such_ops"]\n' + ZERO_COST_TOML)
    failed = cli("search", "tiny.toml", cwd=tmp_path)
    assert failed.returncode == 2
    (line,) = failed.stderr.strip().splitlines()
    assert "plugins[0]: plugin 'no_such_ops' failed to import: ModuleNotFoundError" in line, line
