"""A space registered by a study file's plugin without a baseline: what needs no baseline works,
what compares against one (latency measured here) stops with one line naming the fix."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from _studies import ZERO_COST_TOML, write_study

PLUGIN = Path(__file__).with_name("nobaseline_space.py")
STUDY = 'plugins = ["nobaseline_space"]\n' + ZERO_COST_TOML.replace(
    'space = "mobilenetv2-cifar"', 'space = "plugin-cifar"').replace("n_trials = 4", "n_trials = 2")
LATENCY = '[[objectives]]\nmetric = "latency"\ndevice = "cpu"\n'


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fusionnas.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_a_space_without_a_baseline_searches_shows_and_plots(tmp_path) -> None:
    shutil.copy(PLUGIN, tmp_path)  # beside the study file
    write_study(tmp_path, STUDY)
    searched = cli("search", "tiny.toml", cwd=tmp_path)
    assert searched.returncode == 0, searched.stderr
    shown = cli("show", "tiny.toml", cwd=tmp_path)
    assert shown.returncode == 0 and "arch all-wht " in shown.stdout, shown.stderr
    plotted = cli("pareto", "tiny.toml", "--plot", "front.png", cwd=tmp_path)
    assert plotted.returncode == 0 and (tmp_path / "front.png").is_file(), plotted.stderr


def test_a_space_without_a_baseline_cannot_measure_latency_here(tmp_path) -> None:
    shutil.copy(PLUGIN, tmp_path)
    write_study(tmp_path, STUDY.replace("[budget]", LATENCY + "[budget]"))
    refused = cli("search", "tiny.toml", cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert "space 'plugin-cifar' has no 'baseline' preset" in line and 'space.add_preset("baseline"' in line
