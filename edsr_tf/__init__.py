"""edsr-tf: EDSR / MDSR single-image super-resolution in TensorFlow / Keras 3."""

__version__ = "0.1.0"
