import subprocess
import sys

from fusionnas.cli import main
from fusionnas.evaluators.latency_fit import Calibration


def test_ops_prints_every_registered_operator(capsys):
    assert main(["ops", "--in", "16", "--out", "32", "--size", "8"]) == 0
    out = capsys.readouterr().out
    for kind in ("conv", "wht", "dct", "bft"):
        assert f"\n{kind} " in out
    assert "512" in out  # conv params: 16 * 32
    assert "32,768" in out  # conv FLOPs: 16 * 32 * 64


def test_user_error_is_one_line_and_exit_code_2():
    result = subprocess.run(
        [sys.executable, "-m", "fusionnas.cli", "ops", "--in", "0"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "fusionnas: error: in_channels must be a positive integer, got 0"


def test_an_internal_error_shows_its_traceback_not_a_user_error_line(monkeypatch, capsys):
    import pytest

    import fusionnas.cli as cli
    from fusionnas.errors import UserError

    def broken(args):
        raise ValueError("Cannot tell a COMPLETE trial.")  # e.g. Optuna's, from a bug of ours

    monkeypatch.setattr(cli, "_cmd_ops", broken)
    with pytest.raises(ValueError, match="Cannot tell"):
        main(["ops"])
    assert "fusionnas: error" not in capsys.readouterr().err

    def mistaken(args):
        raise UserError("size must be a positive integer, got 0")

    monkeypatch.setattr(cli, "_cmd_ops", mistaken)
    assert main(["ops"]) == 2
    assert capsys.readouterr().err == "fusionnas: error: size must be a positive integer, got 0\n"


def test_profile_writes_a_table_in_the_named_runtime(tmp_path, capsys):
    import json

    from fusionnas.evaluators.latency import LatencyModel

    out = tmp_path / "cpu.json"
    assert main(["profile", "--space", "mobilenetv2-cifar", "--samples", "0", "--repeats", "2",
                 "--runtime", "onnxruntime", "--out", str(out)]) == 0
    stored = json.loads(out.read_text())
    assert (stored["runtime"], stored["threads"], stored["device"]) == ("onnxruntime", 1, "cpu")
    assert "part table measured in onnxruntime, 1 thread" in capsys.readouterr().out
    table = LatencyModel.load(out)
    assert table.measure_missing and table.calibration != Calibration()  # fitted on whole exported networks


def test_library_messages_name_parameters_and_the_cli_its_flags():
    from fusionnas.errors import in_terms_of
    from fusionnas.results.plot import plot_frontier

    import pytest

    with pytest.raises(ValueError) as info:
        plot_frontier(None, {}, "front.svg")
    assert str(info.value).startswith("`path` front.svg: unknown format '.svg'")  # a library caller's name
    assert in_terms_of(str(info.value), {"path": "--plot"}).startswith("--plot front.svg: unknown format")
    assert in_terms_of("run `fusionnas search` first", {"search": "--x"}) == "run `fusionnas search` first"


def test_profile_with_openvino_on_cuda_is_a_one_line_error(tmp_path, capsys):
    assert main(["profile", "--space", "mobilenetv2-cifar", "--device", "cuda", "--runtime", "openvino",
                 "--out", str(tmp_path / "t.json")]) == 2
    assert capsys.readouterr().err == ("fusionnas: error: runtime openvino runs on the cpu only, got device 'cuda'; "
                                       "use device cpu, or runtime torch or onnxruntime on cuda\n")


def test_export_writes_a_dynamic_batch_or_the_batch_named(tmp_path, monkeypatch, capsys):
    from _studies import ZERO_COST_TOML, write_study
    from fusionnas.evaluators.onnx_export import input_batch

    monkeypatch.chdir(tmp_path)
    write_study(tmp_path, ZERO_COST_TOML.replace("n_trials = 4", "n_trials = 1"))
    assert main(["search", "tiny.toml"]) == 0
    assert main(["export", "tiny.toml", "--trial", "0", "--out", "dynamic"]) == 0
    assert "model.onnx (dynamic batch)" in capsys.readouterr().out
    assert input_batch((tmp_path / "dynamic" / "model.onnx").read_bytes()) is None
    assert main(["export", "tiny.toml", "--trial", "0", "--out", "fixed", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "model.onnx (batch 2)" in out and "at batch 2, 1 thread: in onnxruntime" in out and "in openvino" in out
    assert input_batch((tmp_path / "fixed" / "model.onnx").read_bytes()) == 2
    assert main(["export", "tiny.toml", "--trial", "0", "--out", "none", "--batch", "0"]) == 2
    assert "--batch must be a positive integer, got 0" in capsys.readouterr().err
