"""vtrbench: a reproducibility benchmark suite for text-video retrieval (dual encoders, cross-encoders, CRET)."""

__version__ = "0.1.0"
