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


def test_train_prints_each_epoch_starts_from_weights_and_keeps_an_existing_out(tmp_path, capsys):
    import re

    import torch

    from fusionnas.spaces import get_space

    space = get_space("mobilenetv2-cifar")
    arch = space.preset("all-bft")
    (tmp_path / "arch.json").write_text(arch.to_json())
    torch.save(space.build(arch, num_classes=10).state_dict(), tmp_path / "weights.pt")
    args = ["train", str(tmp_path / "arch.json"), "--dataset", "digits", "--epochs", "2", "--batch-size", "16",
            "--resolution", "8", "--data-fraction", "0.1", "--device", "cpu", "--out", str(tmp_path / "full.pt")]
    assert main([*args, "--init", str(tmp_path / "weights.pt")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[0] for line in lines[:2]] == ["epoch 1/2", "epoch 2/2"]
    assert all(re.search(r"\d+ s elapsed, ETA \d+ s$", line) for line in lines[:2])
    assert "validation accuracy" in lines[2]
    before = (tmp_path / "full.pt").read_bytes()
    assert main(args) == 2
    assert capsys.readouterr().err == (f"fusionnas: error: --out {tmp_path / 'full.pt'} exists; choose another file "
                                       f"or use --force to overwrite it\n")
    assert (tmp_path / "full.pt").read_bytes() == before
    assert main([*args[:-2], "--out", str(tmp_path / "x.pt"), "--init", str(tmp_path / "arch.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fusionnas: error: --init ") and "not a torch weights file" in err and err.count("\n") == 1


def test_a_missing_cifar_names_download_and_download_fetches_it(tmp_path, monkeypatch, capsys):
    import fusionnas.evaluators.datasets as datasets
    from fusionnas.spaces import get_space

    (tmp_path / "arch.json").write_text(get_space("mobilenetv2-cifar").baseline().to_json())
    args = ["train", str(tmp_path / "arch.json"), "--dataset", "cifar10", "--root", str(tmp_path / "data"),
            "--epochs", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "CIFAR-10 not found" in err and "or pass --download where the network allows" in err
    fetched = []

    def offline(root, spec):  # tests never use the network
        fetched.append(root)
        raise datasets.DatasetUnavailableError(f"could not download {spec.title} into {root} (offline)")

    monkeypatch.setattr(datasets, "_cifar_download", offline)
    assert main([*args, "--download"]) == 2
    assert fetched == [tmp_path / "data"] and "(offline)" in capsys.readouterr().err
    (tmp_path / "c.toml").write_text(f'space = "mobilenetv2-cifar"\nn_trials = 1\n[dataset]\nname = "cifar10"\n'
                                     f'root = "data"\n[[objectives]]\nmetric = "flops"\n')
    assert main(["search", str(tmp_path / "c.toml"), "--download"]) == 2
    assert fetched[1:] == [tmp_path / "data"] and not (tmp_path / "c.db").exists()


def test_a_closed_stdout_ends_any_command_quietly_with_141():
    import os

    for args in (["show", "mobilenetv2-cifar", "--json"], ["ops"]):  # as `... | head -0` would
        read, write = os.pipe()
        os.close(read)
        try:
            done = subprocess.run([sys.executable, "-m", "fusionnas.cli", *args], stdout=write,
                                  stderr=subprocess.PIPE, text=True, timeout=120)
        finally:
            os.close(write)
        assert (done.returncode, done.stderr) == (141, ""), args


def test_pareto_refuses_a_plot_format_before_any_output(tmp_path, capsys):
    assert main(["pareto", str(tmp_path / "tiny.toml"), "--plot", "front.svg"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "fusionnas: error: --plot front.svg: unknown format '.svg'; name the file .png or .html\n"
