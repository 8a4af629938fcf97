import subprocess
import sys

from fusionnas.cli import main


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
