"""Command line: parse, call the library, print. ``fusionnas --help`` lists the commands."""
from __future__ import annotations

import argparse
import sys

from fusionnas import __version__


def _cmd_ops(args: argparse.Namespace) -> int:
    """Compare the registered fusion operators at one layer shape."""
    from fusionnas.evaluators import count_flops, count_params
    from fusionnas.layers import create_fusion, list_fusions

    shape = (1, args.in_channels, args.size, args.size)
    print(f"fusion {args.in_channels}->{args.out_channels} at {args.size}x{args.size}")
    print(f"{'operator':<10} {'params':>10} {'FLOPs':>14}")
    for kind in list_fusions():
        layer = create_fusion(kind, args.in_channels, args.out_channels)
        print(f"{kind:<10} {count_params(layer):>10,} {count_flops(layer, shape):>14,}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    """Print an architecture of a space as a table of blocks, or as its JSON document."""
    from fusionnas.spaces import Arch, get_space
    from fusionnas.spaces.summary import bn_statistics, format_summary, summarize

    space = get_space(args.space)
    if args.arch is not None:
        try:
            text = open(args.arch, encoding="utf-8").read()
        except OSError as error:
            raise ValueError(f"cannot read --arch {args.arch}: {error.strerror}") from None
        arch, label = Arch.from_json(text), args.arch
        if arch.space != space.name:
            raise ValueError(f"{args.arch} is an architecture of {arch.space!r}, not {space.name!r}")
    else:
        label = args.preset or "baseline"
        arch = space.preset(label)
    if args.json:
        print(arch.to_json(indent=2))
        return 0
    classes = space.num_classes if args.classes is None else args.classes
    parts = summarize(space, arch, num_classes=classes)
    params = sum(p.params for p in parts)
    stats = sum(p.bn_statistics for p in parts)
    c, h, w = space.input_shape
    print(f"space {space.name} v{space.version}: input {c}x{h}x{w}, {classes} classes")
    note = f": {space.preset_note(label)}" if args.arch is None and space.preset_note(label) else ""
    print(f"arch {label} (archid {arch.archid}){note}")
    print(format_summary(parts))
    print(f"params: {params:,} trainable; {params + stats:,} with BatchNorm running statistics "
          f"(Keras counts these {stats:,} as parameters)")
    size = space.size()
    print(f"space size: {size:.3e} architectures ({size})")
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    """Measure a latency table for a space on this machine (run it ON the target device)."""
    from fusionnas.evaluators.latency import LatencyModel
    from fusionnas.spaces import get_space

    if args.samples < 0:
        raise ValueError(f"--samples must be >= 0, got {args.samples}")
    space = get_space(args.space)
    table = LatencyModel.profile_space(
        space, args.device, samples=args.samples, seed=args.seed, threads=args.threads, repeats=args.repeats
    )
    table.save(args.out)
    baseline = table.predict(space.baseline())
    print(f"{table.describe()}")
    print(f"wrote {args.out}: {len(table.entries)} entries; baseline {space.name} predicts {baseline:.3f} ms")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``fusionnas`` argument parser with its subcommands."""
    parser = argparse.ArgumentParser(prog="fusionnas", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"fusionnas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    ops = sub.add_parser("ops", help="params and FLOPs of every fusion operator at one shape")
    ops.add_argument("--in", dest="in_channels", type=int, default=24, help="input channels")
    ops.add_argument("--out", dest="out_channels", type=int, default=144, help="output channels")
    ops.add_argument("--size", type=int, default=56, help="feature map side")
    ops.set_defaults(func=_cmd_ops)
    show = sub.add_parser("show", help="an architecture of a space: blocks, channels, params, FLOPs")
    show.add_argument("space", help="search space name, e.g. mobilenetv2-cifar")
    which = show.add_mutually_exclusive_group()
    which.add_argument("--arch", metavar="FILE", help="architecture JSON document")
    which.add_argument("--preset", metavar="NAME", help="named architecture of the space (default: baseline)")
    show.add_argument("--classes", type=int, help="classifier width (default: the space's)")
    show.add_argument("--json", action="store_true", help="print the architecture document instead")
    show.set_defaults(func=_cmd_show)
    profile = sub.add_parser("profile", help="measure a per-block latency table on this machine")
    profile.add_argument("--space", required=True, help="search space name")
    profile.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to measure")
    profile.add_argument("--out", required=True, metavar="FILE", help="table to write (JSON)")
    profile.add_argument("--samples", type=int, default=50, help="random architectures besides the presets")
    profile.add_argument("--seed", type=int, default=0, help="seed of the random architectures")
    profile.add_argument("--threads", type=int, help="CPU threads while measuring (default: torch's)")
    profile.add_argument("--repeats", type=int, default=25, help="timed runs per entry (median)")
    profile.set_defaults(func=_cmd_profile)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fusionnas`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as error:  # a user error: one line, no traceback
        print(f"fusionnas: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
