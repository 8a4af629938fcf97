"""fusionnas: hardware-aware search over MobileNet blocks with transform-based channel fusion."""
__version__ = "0.1.0"
