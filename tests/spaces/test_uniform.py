"""The space answers "the architecture with one operator everywhere, the rest at its smallest or largest"."""
import optuna
import pytest

from fusionnas.evaluators import count_params
from fusionnas.spaces import get_space, list_spaces, random_archs

VARIANTS = {
    "whole": lambda space: space,
    "network-defaults": lambda space: space.with_network_defaults(),
    "restricted": lambda space: space.restrict(fusions=["bft", "wht"], widths=[0.75], kernels=[5]),
    "one-operator": lambda space: space.restrict(fusions=["dct"], depthwise=["hadamard"]).with_network_defaults(),
}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", list_spaces())
@pytest.mark.parametrize("size,pick", [("smallest", min), ("largest", max)])
def test_uniform_has_one_operator_everywhere_and_the_rest_at_one_end(name, variant, size, pick):
    space = VARIANTS[variant](get_space(name))
    choices = space.choices()
    fixed = random_archs(space, 1)[0]  # what a block does not choose, every architecture has
    for fusion in space.fusions:
        for depthwise in space.depthwise:
            arch = space.uniform(fusion, depthwise, size=size)
            assert arch.head_fusion == fusion
            for i, (block, other) in enumerate(zip(arch.blocks, fixed.blocks)):
                assert (block.project, block.depthwise) == (fusion, depthwise)
                assert block.expand == (fusion if f"b{i}.expand" in choices or other.expand else None)
                for field in ("expand_ratio", "kernel", "width"):
                    offered = choices.get(f"b{i}.{field}", [getattr(other, field)])
                    assert getattr(block, field) == pick(offered), (i, field)
            assert space.sample(optuna.trial.FixedTrial(space.params(arch))) == arch  # one of the space's


def test_the_smallest_uniform_architecture_is_smaller_than_any_other_of_its_operators():
    space = get_space("mobilenetv2-cifar").restrict(fusions=["conv"], depthwise=["conv"])
    smallest = count_params(space.build(space.uniform("conv")))
    assert all(smallest <= count_params(space.build(arch)) for arch in random_archs(space, 5))
    assert smallest < count_params(space.build(space.uniform("conv", size="largest")))


def test_a_given_kernel_and_the_default_depthwise():
    space = get_space("mobilenetv2-cifar")
    arch = space.uniform("wht", kernel=5, size="largest")
    assert {(b.depthwise, b.kernel, b.width) for b in arch.blocks} == {("conv", 5, 1.0)}
    assert space.uniform("conv", "conv", kernel=3, size="largest").blocks[1:] == space.baseline().blocks[1:]


@pytest.mark.parametrize("arguments,message", [
    (dict(fusion="fft"), "^fusion: 'fft' is not one of conv, wht, dct, bft"),
    (dict(fusion="conv", depthwise="sep"), "^depthwise: 'sep' is not one of conv, hadamard"),
    (dict(fusion="conv", kernel=7), "^kernel: 7 is not one of 3, 5$"),
    (dict(fusion="conv", size="tiny"), "^size: 'tiny' is not one of smallest, largest$"),
])
def test_uniform_names_what_the_space_does_not_offer(arguments, message):
    with pytest.raises(ValueError, match=message):
        get_space("mobilenetv2-cifar").uniform(**arguments)
    with pytest.raises(ValueError, match="^fusion: 'conv' is not one of bft$"):
        get_space("mobilenetv2-cifar").restrict(fusions=["bft"]).uniform("conv")
