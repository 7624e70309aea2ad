"""Training/evaluation data: DIV2K folders, tensorflow-datasets DIV2K, any folder of HR images.

``build_train_dataset`` streams aligned, augmented (LR, HR) patch batches; ``build_eval_dataset``
yields whole image pairs for PSNR. See :mod:`edsr_tf.data.sources` for the layouts,
:mod:`edsr_tf.data.cache` for the decoded-image cache and :mod:`edsr_tf.data.pipeline` for
the pipeline itself.
"""

from edsr_tf.data.cache import DecodedImageCache
from edsr_tf.data.pipeline import (
    build_eval_dataset,
    build_train_dataset,
    downscale_patches,
    prepare_cache,
)
from edsr_tf.data.sources import DataError, DataSource, DataWarning, image_pairs

__all__ = [
    "DataError",
    "DataSource",
    "DataWarning",
    "DecodedImageCache",
    "build_eval_dataset",
    "build_train_dataset",
    "downscale_patches",
    "image_pairs",
    "prepare_cache",
]
