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
