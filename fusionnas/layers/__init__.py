"""Channel-fusion and spatial operators built on fast transforms.

Fusion operators (drop-ins for a 1x1 convolution) register themselves by
name; ``create_fusion("wht", 24, 144)`` builds one.
"""
from fusionnas.layers.butterfly import ButterflyPointwise, butterfly_factors
from fusionnas.layers.dct import DCTPointwise, dct_matrix, frequency_regularizer
from fusionnas.layers.fwht import fwht, hadamard
from fusionnas.layers.hadamard_depthwise import HadamardDepthwise
from fusionnas.layers.registry import PointwiseConv, create_fusion, list_fusions, register_fusion
from fusionnas.layers.thresholds import SmoothThreshold, smooth_threshold
from fusionnas.layers.wht import WHT2d, WHTPointwise

__all__ = [
    "fwht",
    "hadamard",
    "SmoothThreshold",
    "smooth_threshold",
    "WHTPointwise",
    "WHT2d",
    "HadamardDepthwise",
    "DCTPointwise",
    "dct_matrix",
    "frequency_regularizer",
    "ButterflyPointwise",
    "butterfly_factors",
    "PointwiseConv",
    "register_fusion",
    "create_fusion",
    "list_fusions",
]
