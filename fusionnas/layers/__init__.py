"""Channel-fusion and spatial operators built on fast transforms."""
from fusionnas.layers.fwht import fwht, hadamard

__all__ = ["fwht", "hadamard"]
