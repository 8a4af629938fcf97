"""MobileNetV2 spaces: reference networks, choices, sampling, models, pretrained weights, restriction."""
import math
import re
import warnings

import optuna
import pytest
import torch
import torchvision
from torchvision.models._utils import _make_divisible

from fusionnas.evaluators import count_flops, count_params, flop_breakdown
from fusionnas.layers import list_fusions
from fusionnas.spaces import (
    Arch,
    MobileNetV2Space,
    RestrictionError,
    create_depthwise,
    get_space,
    list_depthwise,
    list_spaces,
    load_torchvision_weights,
    make_divisible,
    register_space,
)
from fusionnas.spaces.mobilenetv2 import CIFAR_INVERTED_RESIDUAL_SETTING
from fusionnas.evaluators.summary import bn_statistics, summarize

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACES = list_spaces()


def _random_archs(space, n, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [space.sample(study.ask()) for _ in range(n)]


def test_both_spaces_are_registered_and_unknown_names_listed():
    assert {"mobilenetv2-cifar", "mobilenetv2-imagenet"} <= set(SPACES)
    with pytest.raises(ValueError, match="unknown search space 'resnet'; known: mobilenetv2-cifar, "):
        get_space("resnet")
    with pytest.raises(ValueError, match="already registered"):
        register_space(get_space("mobilenetv2-cifar"))


def test_a_space_takes_presets_samples_and_builds_before_it_is_registered():
    space = MobileNetV2Space("unregistered", CIFAR_INVERTED_RESIDUAL_SETTING, (3, 32, 32), 10, stem_stride=1,
                             fusions=["conv", "wht"])
    space.add_preset("baseline", lambda i, n: ("conv", "conv", "conv"))
    with pytest.raises(ValueError, match="^head_fusion: 'dct' is not one of conv, wht$"):
        space.add_preset("all-dct", lambda i, n: ("dct", "conv", "dct"))  # refused at once, not at use
    arch = _random_archs(space, 1)[0]
    assert space.build(space.baseline())(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert Arch.from_json(arch.to_json(), space) == arch and "unregistered" not in list_spaces()
    with pytest.raises(ValueError, match="^space: 'unregistered' is not one of mobilenetv2-cifar, "):
        Arch.from_json(arch.to_json())  # a document names its space: without one given, a registered one


# -- the space's vocabulary (every registered space) --------------------------------------------


@pytest.mark.parametrize("name", SPACES)
def test_space_interface_and_settings(name):
    space = get_space(name)
    assert space.name == name and space.version == 1
    assert len(space.input_shape) == 3 and space.num_classes >= 10
    baseline = space.baseline()
    assert baseline == space.preset("baseline")
    assert all(b.depthwise == "conv" and b.project == "conv" and b.kernel == 3 and b.width == 1.0
               for b in baseline.blocks)
    assert [b.expand_ratio for b in baseline.blocks] == [1] + [6] * 16
    assert {"baseline", "wht-last-third", "all-wht", "all-dct", "all-bft"} <= set(space.presets())
    with pytest.raises(ValueError, match=r"unknown preset 'nope' of space .*; known: baseline, "):
        space.preset("nope")


@pytest.mark.parametrize("name", SPACES)
def test_blocks_offer_only_what_they_can_take(name):
    choices = get_space(name).choices()
    assert choices["b3.project"] == ["conv", "wht", "dct", "bft"]
    assert choices["b3.expand"] == ["conv", "wht", "dct", "bft"]
    assert choices["b3.depthwise"] == ["conv", "hadamard"]
    assert choices["b3.expand_ratio"] == [3, 4, 6]
    assert choices["b3.kernel"] == [3, 5]
    assert choices["b3.width"] == [0.75, 1.0]
    assert choices["head.fusion"] == ["conv", "wht", "dct", "bft"]
    # block 0 has expansion ratio 1; 0.75 x 16 and 0.75 x 24 round back to 16 and 24
    assert {"b0.expand", "b0.expand_ratio", "b0.width", "b1.width", "b2.width"}.isdisjoint(choices)
    assert {"b0.project", "b0.depthwise", "b0.kernel", "b1.expand"} <= set(choices)


@pytest.mark.parametrize("name", SPACES)
def test_size_counts_every_combination(name):
    space = get_space(name)
    block0 = 4 * 2 * 2  # project, depthwise, kernel
    narrow = 4 * 3 * 2 * 2 * 4  # expand, ratio, depthwise, kernel, project (no width)
    assert space.size() == block0 * narrow**2 * (narrow * 2) ** 14 * 4
    assert space.size() == math.prod(len(v) for v in space.choices().values())


@pytest.mark.parametrize("name", SPACES)
def test_sample_suggests_readable_stable_parameters(name):
    space = get_space(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    space.sample(trial)
    assert set(trial.params) == set(space.choices())
    for param, distribution in trial.distributions.items():
        assert list(distribution.choices) == space.choices()[param]
    fixed = {p: values[-1] for p, values in space.choices().items()}
    arch = space.sample(optuna.trial.FixedTrial(fixed))
    assert arch.head_fusion == "bft" and arch.blocks[3].describe() == "e6 k5 bft/hd/bft"


@pytest.mark.parametrize("name", SPACES)
def test_every_operator_appears_among_random_samples(name):
    archs = _random_archs(get_space(name), 100)
    fusions = {f for a in archs for b in a.blocks for f in (b.expand, b.project) if f} | {a.head_fusion for a in archs}
    assert fusions == {"conv", "wht", "dct", "bft"}
    assert {b.depthwise for a in archs for b in a.blocks} == {"conv", "hadamard"}
    assert {b.expand_ratio for a in archs for b in a.blocks} == {1, 3, 4, 6}
    assert {b.kernel for a in archs for b in a.blocks} == {3, 5}
    assert {b.width for a in archs for b in a.blocks} == {0.75, 1.0}


def test_every_sampled_cifar_model_runs_forward_and_backward():
    torch.set_num_threads(1)  # small layers: faster, and robust on a busy 2-core machine
    space = get_space("mobilenetv2-cifar")
    for arch in _random_archs(space, 50, seed=2):
        model = space.build(arch)
        x = torch.randn(2, 3, 32, 32)
        y = model(x)
        assert y.shape == (2, 10)
        y.square().mean().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters()), arch.archid


@pytest.mark.parametrize("preset", get_space("mobilenetv2-cifar").presets())
def test_presets_build_and_run(preset):
    torch.set_num_threads(1)
    space = get_space("mobilenetv2-cifar")
    model = space.build(space.preset(preset), num_classes=100).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 100)


# -- reference figures ----------------------------------------------------------------------------


def test_imagenet_baseline_equals_torchvision_in_params_and_flops():
    space = get_space("mobilenetv2-imagenet")
    ours, theirs = space.build(space.baseline()), torchvision.models.mobilenet_v2()
    assert count_params(ours) == count_params(theirs) == 3_504_872
    # one fvcore trace each; fvcore's stock handles are conv, batch_norm, linear and the pooling
    ops = [flop_breakdown(m, (1, 3, 224, 224)) for m in (ours, theirs)]
    stock = [sum(o[op] for op in ("conv", "batch_norm", "linear", "adaptive_avg_pool2d")) for o in ops]
    assert stock[0] == pytest.approx(stock[1], rel=0.005) and stock[1] == 314_193_216
    assert sum(ops[0].values()) == pytest.approx(sum(ops[1].values()), rel=0.005)
    assert [type(m).__name__ for m in ours.classifier] == ["Dropout", "Linear"]
    assert ours.classifier[0].p == 0.2


def _torchvision_with_nontrivial_batch_norms():
    model = torchvision.models.mobilenet_v2()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def test_torchvision_weights_load_and_give_identical_outputs():
    space = get_space("mobilenetv2-imagenet")
    theirs = _torchvision_with_nontrivial_batch_norms()
    ours = space.build(space.baseline()).eval()
    assert load_torchvision_weights(ours, theirs.state_dict()) == []
    x = torch.randn(2, 3, 96, 96)  # any size: the weights are what is compared
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)


def test_hybrids_take_what_fits_from_torchvision_weights():
    theirs = torchvision.models.mobilenet_v2().state_dict()
    space = get_space("mobilenetv2-imagenet")
    hybrid = space.build(space.preset("wht-last-third"))
    with pytest.raises(ValueError, match="do not fit this model: .* pass strict=False"):
        load_torchvision_weights(hybrid, theirs)
    missing = load_torchvision_weights(hybrid, theirs, strict=False)
    assert missing and all(".scale" in k or ".smooth." in k for k in missing)
    assert torch.equal(hybrid.stem[0].weight, theirs["features.0.0.weight"])
    assert torch.equal(hybrid.blocks[16].depthwise[0].weight, theirs["features.17.conv.1.0.weight"])
    # the CIFAR network has the same tensors but the classifier
    cifar = get_space("mobilenetv2-cifar")
    missing = load_torchvision_weights(cifar.build(cifar.baseline()), theirs, strict=False)
    assert missing == ["classifier.1.bias", "classifier.1.weight"]


@pytest.mark.parametrize("preset,params,with_statistics", [
    ("baseline", 2_236_682, 2_270_794),  # seed 000: 2.270M (Keras counts BN statistics)
    ("wht-last-third", 518_410, 552_522),  # seed 000: 540K
    ("wht-last-third-blocks", 923_914, 958_026),  # seed 000's earlier abstract: 947K
])
def test_cifar_figures_against_seed_000(preset, params, with_statistics):
    space = get_space("mobilenetv2-cifar")
    model = space.build(space.preset(preset))
    assert count_params(model) == params
    assert count_params(model) + bn_statistics(model) == with_statistics


def test_cifar_strides_keep_4x4_maps_at_the_end():
    space = get_space("mobilenetv2-cifar")
    assert space.input_shape == (3, 32, 32) and space.stem_stride == 1
    assert CIFAR_INVERTED_RESIDUAL_SETTING[1] == (6, 24, 2, 1)
    model = space.build(space.baseline())
    assert model.head_input_shape() == (320, 4, 4)


# -- models ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SPACES)
def test_model_structure_shapes_and_signatures(name):
    space = get_space(name)
    arch = _random_archs(space, 1, seed=3)[0]
    model = space.build(arch)
    assert len(model.blocks) == 17 and isinstance(model.blocks, torch.nn.ModuleList)
    configs = space.block_configs(arch)
    seen = []
    hooks = [b.register_forward_pre_hook(lambda m, inp: seen.append(tuple(inp[0].shape[1:])))
             for b in model.blocks]
    head_seen = []
    hooks.append(model.head.register_forward_pre_hook(lambda m, inp: head_seen.append(tuple(inp[0].shape[1:]))))
    small = (3, 64, 64) if name.endswith("imagenet") else space.input_shape
    with torch.no_grad():
        model.eval()(torch.randn(1, *small))
    for h in hooks:
        h.remove()
    assert seen == model.block_input_shapes(small)
    assert head_seen == [model.head_input_shape(small)]
    assert space.block_input_shapes(arch) == model.block_input_shapes()
    for block, config, choice in zip(model.blocks, configs, arch.blocks):
        assert block.use_residual == (config.stride == 1 and config.in_channels == config.out_channels)
        for part in (f"in={config.in_channels},", f"out={config.out_channels},", f"s={config.stride},",
                     f"k={choice.kernel},", f"dw={choice.depthwise},", f"project={choice.project},",
                     f"res={int(block.use_residual)})", f"hidden={block.hidden_channels},"):
            assert part in block.signature
        assert choice.describe().split(" w")[0] in block.describe()
    assert model.stem.signature.startswith("conv(in=3,out=32,k=3")
    assert model.head.signature == f"fusion(kind={arch.head_fusion},in={configs[-1].out_channels},out=1280,act=relu6)"


def test_width_and_expansion_choices_change_channels():
    space = get_space("mobilenetv2-cifar")
    fixed = {p: v[0] for p, v in space.choices().items()}  # 0.75 widths, ratio 3, conv ...
    configs = space.block_configs(space.sample(optuna.trial.FixedTrial(fixed)))
    assert [c.out_channels for c in configs] == [16, 24, 24, 24, 24, 24, 48, 48, 48, 48, 72, 72, 72,
                                                 120, 120, 120, 240]
    model = space.build(space.sample(optuna.trial.FixedTrial(fixed)))
    assert model.blocks[3].hidden_channels == 72 and model.blocks[3].use_residual is False
    assert model.blocks[4].use_residual is True


def test_build_rejects_other_spaces_and_bad_class_counts():
    cifar, imagenet = get_space("mobilenetv2-cifar"), get_space("mobilenetv2-imagenet")
    with pytest.raises(ValueError, match="arch is from space 'mobilenetv2-imagenet', not 'mobilenetv2-cifar'"):
        cifar.build(imagenet.baseline())
    with pytest.raises(ValueError, match="num_classes must be a positive integer, got 0"):
        cifar.build(cifar.baseline(), num_classes=0)
    with pytest.raises(ValueError, match=r"blocks\[0\]\.width: 0\.75 is not one of 1\.0"):
        Arch.from_dict({**cifar.baseline().to_dict(),
                        "blocks": [{**b.to_dict(), "width": 0.75} for b in cifar.baseline().blocks]})


def test_summary_parts_add_up_to_the_model():
    space = get_space("mobilenetv2-cifar")
    arch = space.preset("wht-last-third")
    parts = summarize(space, arch)
    model = space.build(arch)
    assert [p.name for p in parts] == ["stem", *(f"b{i}" for i in range(17)), "head", "classifier"]
    assert sum(p.params for p in parts) == count_params(model) == 518_410
    assert sum(p.bn_statistics for p in parts) == bn_statistics(model) == 34_112
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # nothing uncounted
        assert sum(p.flops for p in parts) == count_flops(model, (1, 3, 32, 32))


def test_make_divisible_matches_torchvision():
    for value in [v / 4 for v in range(4, 6000)]:
        assert make_divisible(value, 8) == _make_divisible(value, 8)


def test_depthwise_registry():
    assert list_depthwise()[:2] == ["conv", "hadamard"]
    with pytest.raises(ValueError, match="unknown depthwise operator 'sep'; known: conv, hadamard"):
        create_depthwise("sep", 8, 3, 1)
    hadamard = create_depthwise("hadamard", 8, 5, 2)
    assert hadamard.tile == (8, 8) and hadamard(torch.randn(1, 8, 9, 9)).shape == (1, 8, 5, 5)


def test_space_constructor_checks_its_choices():
    with pytest.raises(ValueError, match="fusions: 'fft' is not one of bft, conv, dct, wht"):
        MobileNetV2Space("x", CIFAR_INVERTED_RESIDUAL_SETTING, (3, 32, 32), 10, fusions=("conv", "fft"))
    with pytest.raises(ValueError, match="must contain the baseline"):
        MobileNetV2Space("x", CIFAR_INVERTED_RESIDUAL_SETTING, (3, 32, 32), 10, kernels=(5,))
    with pytest.raises(ValueError, match=r"setting must be non-empty rows of \(t, c, n, s\)"):
        MobileNetV2Space("x", [(6, 24, 2)], (3, 32, 32), 10)
    assert set(list_fusions()) >= {"conv", "wht", "dct", "bft"}


# -- restriction (the study file's [space] lists) -----------------------------------------------


@pytest.mark.parametrize("name", SPACES)
def test_every_space_offers_its_choices_for_restriction(name):
    space = get_space(name)
    offered = space.restrictions()
    assert space.restrict() is not space and space.restrict().choices() == space.choices()
    for key, values in offered.items():
        narrow = space.restrict(**{key: values[:1]})
        assert narrow.restrictions()[key] == values[:1]
        assert narrow.size() < space.size()
        assert (narrow.name, narrow.version, narrow.presets()) == (space.name, space.version, space.presets())


def test_a_restricted_space_samples_only_its_subset():
    space = get_space("mobilenetv2-cifar")
    conv = space.restrict(fusions=["conv"], depthwise=["conv"], expand_ratios=[6], kernels=[5])
    assert set(conv.choices()) == {f"b{i}.width" for i in range(3, 17)}
    assert conv.size() == 2**14
    for arch in _random_archs(conv, 10):
        assert arch.head_fusion == "conv" and arch.space == space.name
        assert {(b.expand, b.depthwise, b.project, b.kernel) for b in arch.blocks} <= {
            ("conv", "conv", "conv", 5), (None, "conv", "conv", 5)}
        assert [b.expand_ratio for b in arch.blocks] == [1] + [6] * 16
        assert Arch.from_json(arch.to_json()).archid == arch.archid  # an Arch of the space itself
        conv.validate(arch)
        assert conv.sample(optuna.trial.FixedTrial(conv.params(arch))) == arch


def test_a_restriction_keeps_the_spaces_baseline_presets_and_models():
    space = get_space("mobilenetv2-cifar")
    bft = space.restrict(fusions=["bft"], widths=[0.75])
    assert bft.baseline() == space.baseline() and bft.preset("all-wht") == space.preset("all-wht")
    with pytest.raises(ValueError, match="head_fusion: 'conv' is not one of bft"):
        bft.params(bft.baseline())  # outside the subset: not something its sampler can propose
    assert count_params(bft.build(bft.baseline())) == count_params(space.build(space.baseline()))
    # where 0.75 rounds to the channels of 1.0, the block keeps 1.0
    assert [b.width for b in _random_archs(bft, 1)[0].blocks] == [1.0] * 3 + [0.75] * 14
    assert repr(bft).endswith("restricted)") and space.restrict(widths=[1]).restrictions()["widths"] == (1.0,)
    narrower = bft.restrict(depthwise=["hadamard"])  # a restriction of a restriction narrows further
    assert narrower.restrictions()["fusions"] == ("bft",) and narrower.baseline() == space.baseline()


@pytest.mark.parametrize(("subsets", "message"), [
    ({"fusions": ["fft"]}, "fusions: 'fft' is not offered by mobilenetv2-cifar; offered: conv, wht, dct, bft"),
    ({"kernels": []}, "kernels: is empty, so nothing could be sampled; list some of: 3, 5"),
    ({"kernels": 3}, "kernels: expected a list, got int 3; write a list of some of: 3, 5"),
    ({"fusions": "conv"}, "fusions: expected a list, got str 'conv'"),
    ({"widths": [1, 1.0]}, "widths: repeats 1.0; remove the duplicate"),
    ({"widths": [True]}, "widths: True is not offered by mobilenetv2-cifar; offered: 0.75, 1.0"),
    ({"kernels": ["3"]}, "kernels: '3' is not offered"),
    ({"fusion": ["conv"]}, "fusion: mobilenetv2-cifar has no such choice to restrict; did you mean 'fusions'? "
                           "restrictable: fusions, depthwise, expand_ratios, kernels, widths"),
])
def test_a_bad_restriction_names_the_list(subsets, message):
    with pytest.raises(RestrictionError, match=re.escape(message)):
        get_space("mobilenetv2-cifar").restrict(**subsets)
