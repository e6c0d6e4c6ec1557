"""mcuformer: vision transformers on microcontrollers."""

__version__ = "0.1.0"
