"""Channel-fusion and spatial operators built on fast transforms.

Operators register themselves by name (:mod:`fusionnas.layers.registry`);
``create_fusion("wht", 24, 144)`` builds one. Every public module of this
package is imported here, found by listing the package: a new operator is
one new file, with no import list to keep.
"""
import importlib
import pkgutil

from fusionnas.layers._folded import Folded, fold_batch_norm
from fusionnas.layers.butterfly import ButterflyPointwise, butterfly_factors
from fusionnas.layers.dct import DCTPointwise, dct_matrix, frequency_regularizer
from fusionnas.layers.depthwise_conv import ConvBNReLU6
from fusionnas.layers.fwht import fwht, hadamard
from fusionnas.layers.hadamard_depthwise import HadamardDepthwise
from fusionnas.layers.registry import (
    OperatorSpec,
    PointwiseConv,
    create_depthwise,
    create_fusion,
    list_depthwise,
    list_fusions,
    operator_letters,
    operator_loss,
    operator_spec,
    operator_specs,
    register_depthwise,
    register_fusion,
)
from fusionnas.layers.thresholds import SmoothThreshold, smooth_threshold
from fusionnas.layers.wht import WHT2d, WHTPointwise

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

from fusionnas.plugins import load_entry_point_plugins  # noqa: E402 (the built-in operators first)

load_entry_point_plugins()

__all__ = [
    "fwht",
    "hadamard",
    "SmoothThreshold",
    "smooth_threshold",
    "WHTPointwise",
    "WHT2d",
    "HadamardDepthwise",
    "ConvBNReLU6",
    "DCTPointwise",
    "dct_matrix",
    "frequency_regularizer",
    "ButterflyPointwise",
    "butterfly_factors",
    "PointwiseConv",
    "OperatorSpec",
    "register_fusion",
    "register_depthwise",
    "create_fusion",
    "create_depthwise",
    "list_fusions",
    "list_depthwise",
    "operator_spec",
    "operator_specs",
    "operator_letters",
    "operator_loss",
    "Folded",
    "fold_batch_norm",
]
