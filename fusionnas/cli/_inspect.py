"""Commands that look at the operators and the spaces, no study needed: ops, show, profile."""
from __future__ import annotations

import argparse

from fusionnas.errors import UserError
from fusionnas.runtime_names import check_runtime_device


def cmd_ops(args: argparse.Namespace) -> int:
    """Compare the registered fusion operators at one layer shape."""
    from fusionnas.evaluators import count_flops, count_params
    from fusionnas.layers import create_fusion, list_fusions

    for name, value in (("in_channels", args.in_channels), ("out_channels", args.out_channels), ("size", args.size)):
        if value < 1:
            raise UserError(f"{name} must be a positive integer, got {value}")
    shape = (1, args.in_channels, args.size, args.size)
    print(f"fusion {args.in_channels}->{args.out_channels} at {args.size}x{args.size}")
    print(f"{'operator':<10} {'params':>10} {'FLOPs':>14}")
    for kind in list_fusions():
        layer = create_fusion(kind, args.in_channels, args.out_channels)
        print(f"{kind:<10} {count_params(layer):>10,} {count_flops(layer, shape):>14,}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print an architecture of a space, or of a study file's space, as a table of blocks or as JSON."""
    from fusionnas.spaces import Arch, get_space, list_spaces
    from fusionnas.evaluators.summary import format_summary, summarize

    study = None
    if args.space.endswith(".toml"):
        from fusionnas.search import load_study_config

        study = load_study_config(args.space)  # imports its plugins, which may register the space
        space = study.search_space()
    elif args.space not in list_spaces():
        raise UserError(f"unknown search space {args.space!r}; known: {', '.join(list_spaces())}; a space from a "
                        f"plugin is known through the study file that loads it: fusionnas show STUDY.toml")
    else:
        space = get_space(args.space)
    if args.arch is not None:
        try:
            text = open(args.arch, encoding="utf-8").read()
        except OSError as error:
            raise UserError(f"cannot read --arch {args.arch}: {error.strerror}") from None
        arch, label = Arch.from_json(text), args.arch
        if arch.space != space.name:
            raise UserError(f"{args.arch} is an architecture of {arch.space!r}, not {space.name!r}")
    else:
        label = args.preset or _default_preset(space)
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
    if study is not None:
        how = "a subset of" if study.space_restriction is not None else "all of"
        print(f"study {study.name} searches {how} {space.name}:")
        for key, values in getattr(space, "restrictions", dict)().items():
            print(f"  {key}: {', '.join(map(str, values))}")
    size = space.size()
    print(f"space size: {size:.3e} architectures ({size})")
    return 0


def _default_preset(space) -> str:
    """What ``show`` shows without --preset or --arch: the baseline, else the space's first preset."""
    from fusionnas.spaces import baseline_or_none

    if baseline_or_none(space) is not None:
        return "baseline"
    if not space.presets():
        raise UserError(f"space {space.name!r} has no presets to show; pass --arch FILE (an architecture JSON)")
    return space.presets()[0]


def cmd_profile(args: argparse.Namespace) -> int:
    """Measure a latency table for a space on this machine (run it ON the target device)."""
    from fusionnas.evaluators.latency import LatencyModel
    from fusionnas.spaces import get_space

    if args.samples < 0:
        raise UserError(f"--samples must be >= 0, got {args.samples}")
    space = get_space(args.space)
    if args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    if args.runtime is not None:
        check_runtime_device(args.runtime, args.device)
    table = LatencyModel.profile_space(
        space, args.device, samples=args.samples, seed=args.seed, runtime=args.runtime, threads=args.threads,
        repeats=args.repeats, batch_size=args.batch,
    )
    table.save(args.out)
    baseline = table.predict(space.baseline())
    print(f"{table.describe()}")
    print(f"wrote {args.out}: {len(table.entries)} entries; baseline {space.name} predicts {baseline:.3f} ms")
    return 0
