"""SavedModel for TF Serving: uint8 image signatures, a float signature, an encoded-bytes signature.

Signatures (all take a batch of any H×W):

=================  =================================  =====================================
name               inputs                             outputs
=================  =================================  =====================================
serving_default    ``images`` float32 [N,H,W,3]       ``sr`` uint8 [N,sH,sW,3]
serving_uint8      ``images`` uint8 [N,H,W,3]         ``sr`` uint8 [N,sH,sW,3]
serving_bytes      ``image_bytes`` string [N]         ``sr_image_bytes`` string [N] (PNG)
predict_float      ``images`` float32 [N,H,W,3]       ``sr`` float32 [N,sH,sW,3] (unrounded)
=================  =================================  =====================================

One signature cannot take two dtypes, so ``serving_default`` is float32 (JSON
numbers in REST requests are converted to it; integers 0..255 are fine) and
``serving_uint8`` takes uint8 tensors for gRPC clients that send raw pixels.
Outputs are clipped to [0, 255] and rounded, as a saved image would be.
``image_bytes`` ends in ``_bytes`` so TF Serving's REST API accepts
``{"b64": "..."}`` for it and base64-encodes ``sr_image_bytes`` in the reply.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np

from edsr_tf.export.common import ExportError

#: Signature names, in the order documented above.
SIGNATURES = ("serving_default", "serving_uint8", "serving_bytes", "predict_float")


def _endpoints(model: keras.Model):
    """The four serving functions (plain callables, traced by the export archive)."""
    import tensorflow as tf

    def as_float(images):
        images = tf.cast(images, tf.float32)
        return tf.clip_by_value(model(images, training=False), 0.0, 255.0)

    def as_uint8(images):
        # round half away from zero on non-negative values == floor(x + 0.5), as metrics.quantize
        return tf.cast(tf.floor(as_float(images) + 0.5), tf.uint8)

    def serve_float(images):
        return {"sr": as_uint8(images)}

    def serve_uint8(images):
        return {"sr": as_uint8(images)}

    def predict_float(images):
        return {"sr": as_float(images)}

    def serve_bytes(image_bytes):
        def one(data):
            img = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
            img.set_shape([None, None, 3])
            return tf.io.encode_png(as_uint8(img[tf.newaxis])[0])

        out = tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec([], tf.string))
        return {"sr_image_bytes": out}

    f32 = tf.TensorSpec([None, None, None, 3], tf.float32, name="images")
    u8 = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")
    raw = tf.TensorSpec([None], tf.string, name="image_bytes")
    return {
        "serving_default": (serve_float, [f32]),
        "serving_uint8": (serve_uint8, [u8]),
        "serving_bytes": (serve_bytes, [raw]),
        "predict_float": (predict_float, [f32]),
    }


def save_serving_model(
    model: keras.Model, scale: int, version_dir: str | os.PathLike
) -> Path:
    """Saves ``model`` (single scale, float [0,255] in/out) for TF Serving at ``version_dir``.

    ``version_dir`` is the numbered folder, e.g. ``.../savedmodel/edsr_baseline_x2/1``.
    Built with ``keras.export.ExportArchive``: it tracks the Keras variables so that
    the graph-mode loader (TF Serving, ``saved_model_cli run``) restores them; a
    plain ``tf.Module`` holding a Keras 3 model loads with ``tf.saved_model.load``
    but fails there with "Could not find variable".
    """
    version_dir = Path(version_dir)
    if not version_dir.name.isdigit():
        raise ExportError(f"{version_dir}: TF Serving needs a numeric version folder")
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, (fn, signature) in _endpoints(model).items():
        archive.add_endpoint(name, fn, input_signature=signature)
    version_dir.parent.mkdir(parents=True, exist_ok=True)
    archive.write_out(str(version_dir), verbose=False)
    return version_dir


class SavedModelRunner:
    """Runs a serving SavedModel through its signatures (what TF Serving executes)."""

    runtime = "tensorflow"

    def __init__(self, version_dir: str | os.PathLike):
        import tensorflow as tf

        self.path = Path(version_dir)
        try:
            self.loaded = tf.saved_model.load(str(self.path))
        except Exception as e:
            raise ExportError(f"{self.path}: tf.saved_model.load failed: {e}") from None
        missing = [s for s in SIGNATURES if s not in self.loaded.signatures]
        if missing:
            raise ExportError(f"{self.path}: missing signatures {missing}")

    def run(self, images: np.ndarray) -> np.ndarray:
        """float32 [N,H,W,3] → the unrounded float output (``predict_float``)."""
        import tensorflow as tf

        x = tf.constant(np.asarray(images, np.float32))
        return self.loaded.signatures["predict_float"](images=x)["sr"].numpy()

    def run_uint8(self, images: np.ndarray, signature: str = "serving_default") -> np.ndarray:
        """The uint8 output of ``serving_default`` (float input) or ``serving_uint8``."""
        import tensorflow as tf

        dtype = tf.uint8 if signature == "serving_uint8" else tf.float32
        x = tf.constant(np.asarray(images), dtype=dtype)
        return self.loaded.signatures[signature](images=x)["sr"].numpy()

    def run_bytes(self, encoded: list[bytes]) -> list[bytes]:
        """Encoded images (PNG/JPEG/...) → PNG bytes via ``serving_bytes``."""
        import tensorflow as tf

        out = self.loaded.signatures["serving_bytes"](image_bytes=tf.constant(encoded))
        return [bytes(b) for b in out["sr_image_bytes"].numpy()]
