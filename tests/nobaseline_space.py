"""A search space from outside fusionnas, registered by a study file's plugin, without a baseline preset.

Used by tests/test_plugin_space.py: the CIFAR MobileNetV2 offering conv and WHT, whose only preset is
all-WHT; no all-conv baseline is registered.
"""
from fusionnas.spaces import MobileNetV2Space, register_space
from fusionnas.spaces.mobilenetv2 import CIFAR_INVERTED_RESIDUAL_SETTING

SPACE = register_space(MobileNetV2Space("plugin-cifar", CIFAR_INVERTED_RESIDUAL_SETTING, input_shape=(3, 32, 32),
                                        num_classes=10, stem_stride=1, fusions=["conv", "wht"]))
SPACE.add_preset("all-wht", lambda i, n: ("wht", "conv", "wht"), "WHT in every 1x1 layer")
