"""Architecture documents: canonical JSON, archid, validation errors."""
import dataclasses
import json
import subprocess
import sys

import optuna
import pytest

from fusionnas.spaces import Arch, BlockChoice, get_space, list_spaces

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _random_archs(space, n, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [space.sample(study.ask()) for _ in range(n)]


@pytest.mark.parametrize("name", list_spaces())
def test_json_round_trip_of_100_random_samples(name):
    space = get_space(name)
    archs = _random_archs(space, 100)
    assert len({a.archid for a in archs}) == 100
    for arch in archs:
        text = arch.to_json()
        again = Arch.from_json(text)
        assert again == arch
        assert again.to_json() == text
        assert again.archid == arch.archid
        assert Arch.from_dict(json.loads(arch.to_json(indent=2))) == arch


def test_canonical_json_is_sorted_compact_and_versioned():
    arch = get_space("mobilenetv2-cifar").baseline()
    text = arch.to_json()
    data = json.loads(text)
    assert text == json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert data["space"] == "mobilenetv2-cifar" and data["version"] == 1
    assert data["blocks"][0]["expand"] is None and data["blocks"][0]["expand_ratio"] == 1
    assert len(arch.archid) == 12 and int(arch.archid, 16) >= 0


def test_archid_is_the_same_in_another_process():
    space = get_space("mobilenetv2-cifar")
    archs = [space.baseline(), space.preset("wht-last-third"), *_random_archs(space, 3)]
    code = (
        "import sys; from fusionnas.spaces import Arch\n"
        "for line in sys.stdin: print(Arch.from_json(line).archid)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], input="\n".join(a.to_json() for a in archs),
        capture_output=True, text=True, check=True,
    )
    assert result.stdout.split() == [a.archid for a in archs]


def test_width_1_and_1_0_are_one_document():
    arch = get_space("mobilenetv2-cifar").baseline()
    data = arch.to_dict()
    data["blocks"][4]["width"] = 1
    assert Arch.from_dict(data).archid == arch.archid


def test_arch_is_immutable_and_hashable():
    arch = get_space("mobilenetv2-cifar").baseline()
    with pytest.raises(dataclasses.FrozenInstanceError):
        arch.head_fusion = "wht"
    assert isinstance(arch.blocks, tuple)
    assert len({arch, get_space("mobilenetv2-cifar").baseline()}) == 1


def test_describe_gives_short_block_forms():
    arch = get_space("mobilenetv2-cifar").preset("wht-last-third")
    assert arch.blocks[0].describe() == "e1 k3 -/dw/conv"
    assert arch.blocks[16].describe() == "e6 k3 wht/dw/wht"
    assert arch.describe().startswith("b0 e1 k3 -/dw/conv, b1 e6 k3 conv/dw/conv")
    assert arch.describe().endswith("b16 e6 k3 wht/dw/wht; head wht")
    block = BlockChoice("bft", "hadamard", "dct", 4, 5, 0.75)
    assert block.describe() == "e4 k5 bft/hd/dct w0.75"


def _mutated(change):
    data = get_space("mobilenetv2-cifar").baseline().to_dict()
    change(data)
    return json.dumps(data)


BAD_DOCUMENTS = [
    (lambda d: d["blocks"][3].update(project="fft9"),
     r"blocks\[3\]\.project: 'fft9' is not one of conv, wht, dct, bft"),
    (lambda d: d["blocks"][3].update(depthwise="sep"), r"blocks\[3\]\.depthwise: 'sep' is not one of conv, hadamard"),
    (lambda d: d["blocks"][0].update(expand="wht"), r"blocks\[0\]\.expand: 'wht' is not one of null"),
    (lambda d: d["blocks"][2].update(expand=None), r"blocks\[2\]\.expand: null is not one of conv, wht, dct, bft"),
    (lambda d: d["blocks"][0].update(expand_ratio=6), r"blocks\[0\]\.expand_ratio: 6 is not one of 1"),
    (lambda d: d["blocks"][5].update(expand_ratio=5), r"blocks\[5\]\.expand_ratio: 5 is not one of 3, 4, 6"),
    (lambda d: d["blocks"][5].update(kernel=7), r"blocks\[5\]\.kernel: 7 is not one of 3, 5"),
    (lambda d: d["blocks"][5].update(kernel="3"), r"blocks\[5\]\.kernel: '3' is not an integer"),
    (lambda d: d["blocks"][5].update(kernel=True), r"blocks\[5\]\.kernel: True is not an integer"),
    (lambda d: d["blocks"][5].update(width=0.5), r"blocks\[5\]\.width: 0\.5 is not one of 0\.75, 1\.0"),
    (lambda d: d["blocks"][1].update(width=0.75), r"blocks\[1\]\.width: 0\.75 is not one of 1\.0"),
    (lambda d: d["blocks"][5].pop("kernel"), r"blocks\[5\]\.kernel: missing field"),
    (lambda d: d["blocks"][5].update(stride=2), r"blocks\[5\]\.stride: unknown field; known: expand, "),
    (lambda d: d["blocks"].__setitem__(2, [1]), r"blocks\[2\]: \[1\] is not a JSON object"),
    (lambda d: d["blocks"].pop(), r"blocks: space 'mobilenetv2-cifar' has 17 blocks, got 16"),
    (lambda d: d.update(blocks="all"), r"blocks: 'all' is not a list of blocks"),
    (lambda d: d.update(space="resnet"), r"space: 'resnet' is not one of mobilenetv2-cifar, mobilenetv2-imagenet"),
    (lambda d: d.update(version=2), r"version: 2 is not one of 1"),
    (lambda d: d.update(stem_channels=16), r"stem_channels: 16 is not one of 32"),
    (lambda d: d.update(head_fusion="fft"), r"head_fusion: 'fft' is not one of conv, wht, dct, bft"),
    (lambda d: d.pop("head_fusion"), r"head_fusion: missing field"),
    (lambda d: d.update(extra=1), r"extra: unknown field; known: space, version, "),
]


@pytest.mark.parametrize("change,message", BAD_DOCUMENTS)
def test_bad_documents_name_field_value_and_allowed_values(change, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        Arch.from_json(_mutated(change))


@pytest.mark.parametrize("text,message", [
    ("{", r"invalid architecture JSON: Expecting property name"),
    ("", r"invalid architecture JSON: Expecting value: line 1 column 1"),
    ("[]", r"document: \[\] is not a JSON object with keys space, version,"),
])
def test_invalid_json_text_names_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        Arch.from_json(text)


def test_an_invalid_arch_constructed_directly_is_refused_where_it_is_used():
    space = get_space("mobilenetv2-cifar")
    base = space.baseline()
    blocks = list(base.blocks)
    blocks[3] = dataclasses.replace(blocks[3], project="fft9")
    bad = dataclasses.replace(base, blocks=tuple(blocks))  # a plain value: its types are checked, not its space
    for use in (space.validate, space.params, space.build, lambda arch: Arch.from_json(arch.to_json())):
        with pytest.raises(ValueError, match=r"blocks\[3\]\.project: 'fft9'"):
            use(bad)
    with pytest.raises(ValueError, match=r"^kernel: 3\.0 is not an integer"):
        BlockChoice("conv", "conv", "conv", 6, 3.0, 1.0)


def test_an_arch_is_checked_against_the_space_it_is_read_with():
    space = get_space("mobilenetv2-cifar")
    text = space.preset("all-wht").to_json()
    assert Arch.from_json(text, space) == space.preset("all-wht")
    with pytest.raises(ValueError, match="^head_fusion: 'wht' is not one of conv$"):
        Arch.from_json(text, space.restrict(fusions=["conv"]))
