"""Compile the native kernels: ``python -m fusionnas.kernels.build`` (``make`` runs it at install).

CMake and Ninja (or Make) build ``csrc/`` for this machine's CPU into
``fusionnas/kernels/lib/``; the OpenVINO extension is built too where the
``openvino`` wheel's CMake config is found. A failed build leaves the package
working on the reference forms (exit status 1, the compiler's output shown).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from fusionnas.atomic import atomic_path

HERE = Path(__file__).resolve().parent
LIB_DIR = HERE / "lib"
LIBRARIES = ("libfusionnas_kernels.so", "libfusionnas_openvino.so")


def _openvino_cmake_dir() -> str | None:
    """The openvino wheel's CMake config folder, found without importing openvino."""
    import importlib.util

    spec = importlib.util.find_spec("openvino")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "cmake"
    return str(folder) if (folder / "OpenVINOConfig.cmake").exists() else None


def build(verbose: bool = False) -> list[Path]:
    """Configure and build into a temporary folder, then copy the libraries into ``lib/``; return them."""
    if shutil.which("cmake") is None:
        raise RuntimeError("cmake is not on PATH; install cmake (and a C++ compiler) to build the native kernels")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    args = [f"-DCMAKE_BUILD_TYPE=Release"]
    openvino = _openvino_cmake_dir()
    if openvino:
        args.append(f"-DOpenVINO_DIR={openvino}")
    with tempfile.TemporaryDirectory(prefix="fusionnas-kernels-") as build_dir:
        run = dict(check=True, text=True, capture_output=not verbose)
        try:
            subprocess.run(["cmake", "-S", str(HERE), "-B", build_dir, *generator, *args], **run)
            jobs = str(os.cpu_count() or 1)
            subprocess.run(["cmake", "--build", build_dir, "--parallel", jobs], **run)
        except subprocess.CalledProcessError as error:
            raise RuntimeError(f"{' '.join(error.cmd[:3])} failed:\n{error.stdout or ''}{error.stderr or ''}") from None
        LIB_DIR.mkdir(exist_ok=True)
        built = []
        for name in LIBRARIES:
            found = sorted(Path(build_dir).rglob(name))
            if found:
                target = LIB_DIR / name
                with atomic_path(target) as tmp:  # a process that has the old one loaded keeps its copy
                    shutil.copy2(found[0], tmp)
                built.append(target)
            elif (LIB_DIR / name).exists():
                (LIB_DIR / name).unlink()  # never leave a stale library beside fresh ones
        return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="show the compiler's output")
    args = parser.parse_args(argv)
    try:
        built = build(verbose=args.verbose)
    except RuntimeError as error:
        print(f"fusionnas: native kernels not built, the reference forms will be used: {error}", file=sys.stderr)
        return 1
    for path in built:
        print(f"fusionnas: built {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
