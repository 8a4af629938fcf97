"""``fusionnas show``: the block table, the reference figures, the JSON document, a study's space."""
import json
import subprocess
import sys

from _studies import ZERO_COST_TOML
from fusionnas.cli import main
from fusionnas.spaces import Arch, get_space


def test_show_cifar_baseline_prints_blocks_totals_and_size(capsys):
    assert main(["show", "mobilenetv2-cifar"]) == 0
    out = capsys.readouterr().out
    assert "arch baseline (archid " in out
    for i in range(17):
        assert f"\nb{i} " in out
    assert "b3         e6 k3 conv/dw/conv" in out and "24->32" in out
    assert "2,236,682" in out and "2,270,794 with BatchNorm running statistics" in out
    assert "92,849,664" in out  # FLOPs at 32x32
    assert f"space size: 3.576e+42 architectures ({get_space('mobilenetv2-cifar').size()})" in out


def test_show_seed_preset_prints_both_figures(capsys):
    assert main(["show", "mobilenetv2-cifar", "--preset", "wht-last-third"]) == 0
    out = capsys.readouterr().out
    assert "540K" in out  # the seed's figure, in the preset's note
    assert "518,410 trainable; 552,522 with BatchNorm running statistics" in out
    assert "b16        e6 k3 wht/dw/wht" in out and "\nhead       wht " in out


def test_show_json_and_arch_file_round_trip(tmp_path, capsys):
    assert main(["show", "mobilenetv2-imagenet", "--preset", "all-bft", "--json"]) == 0
    text = capsys.readouterr().out
    arch = Arch.from_json(text)
    assert arch == get_space("mobilenetv2-imagenet").preset("all-bft")
    path = tmp_path / "arch.json"
    path.write_text(text)
    assert main(["show", "mobilenetv2-imagenet", "--arch", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == arch.to_dict()


def test_show_errors_are_one_line(capsys):
    result = subprocess.run([sys.executable, "-m", "fusionnas.cli", "show", "resnet"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "fusionnas: error: unknown search space 'resnet'; known: mobilenetv2-cifar, mobilenetv2-imagenet; a space "
        "from a plugin is known through the study file that loads it: fusionnas show STUDY.toml"
    )
    assert main(["show", "mobilenetv2-cifar", "--preset", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert main(["show", "mobilenetv2-cifar", "--arch", "/nonexistent/arch.json"]) == 2
    assert "cannot read --arch /nonexistent/arch.json" in capsys.readouterr().err


def test_show_arch_from_another_space_is_refused(tmp_path, capsys):
    path = tmp_path / "arch.json"
    path.write_text(get_space("mobilenetv2-imagenet").baseline().to_json())
    assert main(["show", "mobilenetv2-cifar", "--arch", str(path)]) == 2
    assert "is an architecture of 'mobilenetv2-imagenet', not 'mobilenetv2-cifar'" in capsys.readouterr().err


def test_show_a_study_file_prints_what_it_searches(tmp_path, capsys):
    restricted = tmp_path / "conv.toml"
    restricted.write_text(ZERO_COST_TOML.replace(
        'space = "mobilenetv2-cifar"', 'space = { name = "mobilenetv2-cifar", fusions = ["conv"], kernels = [3] }'))
    assert main(["show", str(restricted)]) == 0
    out = capsys.readouterr().out
    space = get_space("mobilenetv2-cifar").restrict(fusions=["conv"], kernels=[3])
    assert "arch baseline (archid " in out and "study conv searches a subset of mobilenetv2-cifar:" in out
    assert "\n  fusions: conv\n  depthwise: conv, hadamard\n  expand_ratios: 3, 4, 6\n  kernels: 3\n" in out
    assert out.endswith(f"space size: {space.size():.3e} architectures ({space.size()})\n")
    whole = tmp_path / "whole.toml"
    whole.write_text(ZERO_COST_TOML)
    assert main(["show", str(whole)]) == 0
    assert "study whole searches all of mobilenetv2-cifar:" in capsys.readouterr().out
