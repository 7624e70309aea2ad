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

Input size limit: every signature refuses a request past ``max_pixels`` LR pixels
(set at export time, ``edsr-export --max_pixels``) with an ``InvalidArgument``
error that names the limit, which TF Serving returns to the client (HTTP 400). The
tensor signatures check N x H x W (the pixels run at once); ``serving_bytes`` checks
each image's W x H from its header *before* decoding it (PNG: the IHDR chunk, JPEG:
``tf.io.extract_jpeg_shape``, BMP: the info header), so a few-KB file that declares a
huge image costs nothing, decodes and runs the images of a request one at a time (its
memory is that of one image at the limit), and refuses a JPEG too short for its frame (truncated: libjpeg
would pad it with grey; :func:`edsr_tf.images.jpeg_min_bytes`). ``serving_bytes`` takes
PNG, JPEG and BMP (GIF and WebP are refused: they may hold many frames, all decoded).

Scale: :func:`save_serving_model` exports the network for the ``scale`` it is given (an
MDSR model's sub-network for that scale; any other model is checked to upscale by it)
and records it, with ``max_pixels``, in the SavedModel: ``tf.saved_model.load(d).scale[0]``
and ``.max_pixels[0]`` (int64 variables; :func:`serving_metadata`, ``SavedModelRunner.metadata``).
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np

from edsr_tf.export.common import DEFAULT_MAX_PIXELS, ExportError, ExportUsageError
from edsr_tf.images import HEADER_FORMATS, header_size_tf

#: Signature names, in the order documented above.
SIGNATURES = ("serving_default", "serving_uint8", "serving_bytes", "predict_float")
#: Text every input-size rejection contains (clients and tests can match it).
LIMIT_TEXT = "LR pixels, more than max_pixels ="
#: The InvalidArgument message of a float request holding NaN or Inf (``images`` must be finite, 0-255).
NONFINITE_TEXT = "images holds NaN or Inf values; send finite pixel values in [0, 255]"
#: ``serving_bytes``' formats as :data:`edsr_tf.images.HEADER_FORMATS` codes (GIF and WebP may
#: hold many frames, all decoded, so they are refused).
_SERVED_FORMATS = tuple(HEADER_FORMATS.index(name) for name in ("PNG", "JPEG", "BMP"))


def _endpoints(model: keras.Model, max_pixels: int = DEFAULT_MAX_PIXELS):
    """The four serving functions (plain callables, traced by the export archive)."""
    import tensorflow as tf

    limit = tf.constant(int(max_pixels), tf.int64)

    def checked(images):
        """``images`` once their N x H x W is within the limit (InvalidArgument otherwise)."""
        shape = tf.shape(images, out_type=tf.int64)
        pixels = shape[0] * shape[1] * shape[2]
        check = tf.debugging.Assert(
            pixels <= limit,
            [tf.strings.format(
                "input of N x H x W = {} x {} x {} = {} " + LIMIT_TEXT + " {} "
                "(set at export with --max_pixels); send smaller images or tiles",
                (shape[0], shape[1], shape[2], pixels, limit))],
        )
        with tf.control_dependencies([check]):
            return tf.identity(images)

    def as_float(images):
        if images.dtype.is_floating:  # NaN/Inf would come back as a black image with status OK
            images = tf.debugging.check_numerics(images, NONFINITE_TEXT)
        images = tf.cast(checked(images), tf.float32)
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
            fmt, w, h = header_size_tf(data)
            # The first bytes as numbers, never raw: the error text must be valid UTF-8
            # (raw bytes made the client's error a UnicodeDecodeError).
            first = tf.io.decode_raw(tf.strings.substr(tf.strings.join([data, b"\0" * 8]), 0, 8), tf.uint8)
            known = tf.debugging.Assert(
                tf.reduce_any(tf.equal(fmt, _SERVED_FORMATS)),
                [tf.strings.format("serving_bytes: unsupported image format (first bytes {}); "
                                   "expected PNG, JPEG or BMP (GIF and WebP are refused)",
                                   (first,), summarize=8)],
            )
            with tf.control_dependencies([known]):
                pixels = w * h
                fits = tf.debugging.Assert(
                    (pixels <= limit) & (w > 0) & (h > 0),
                    [tf.strings.format(
                        "serving_bytes: image of {} x {} = {} " + LIMIT_TEXT + " {} "
                        "(set at export with --max_pixels); send smaller images or tiles",
                        (w, h, pixels, limit))],
                )
                # A JPEG holds at least one bit per 8x8 block (edsr_tf.images.jpeg_min_bytes):
                # a shorter one is truncated and libjpeg would pad it with grey at full size.
                n_bytes = tf.cast(tf.strings.length(data), tf.int64)
                need = ((w + 7) // 8) * ((h + 7) // 8) // 8
                whole = tf.debugging.Assert(
                    tf.not_equal(fmt, HEADER_FORMATS.index("JPEG")) | (n_bytes >= need),
                    [tf.strings.format(
                        "serving_bytes: truncated JPEG: {} bytes cannot hold a {} x {} image "
                        "(at least {} needed)", (n_bytes, w, h, need))],
                )
            with tf.control_dependencies([fits, whole]):
                img = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
            img.set_shape([None, None, 3])
            return tf.io.encode_png(as_uint8(img[tf.newaxis])[0])

        # One image at a time (map_fn's default runs 10 at once): a request's memory is that of
        # its largest image, which max_pixels bounds, not up to 10 times it.
        out = tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec([], tf.string),
                        parallel_iterations=1)
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


def upscale_factor(model: keras.Model) -> int:
    """The factor by which a single-output image model upscales (run once on a 4x4 input)."""
    y = model(np.zeros((1, 4, 4, 3), np.float32), training=False)
    if isinstance(y, dict):
        raise ExportError(f"{model.name}: has outputs {sorted(y)}; pick one scale first")
    h, w = (int(d) for d in y.shape[1:3])
    if h != w or h % 4:
        raise ExportError(f"{model.name}: maps a 4x4 input to {h}x{w}, not an integer upscale")
    return h // 4


def serving_network(model: keras.Model, scale: int) -> keras.Model:
    """The single-scale network ``save_serving_model`` exports for ``scale``.

    A model with one output per scale (MDSR: ``{"x2": ..., "x3": ...}``) gives its sub-network
    for ``scale``; any other model is returned once it is checked to upscale by ``scale``
    (:class:`ExportUsageError` otherwise).
    """
    from edsr_tf.models.mdsr import mdsr_scale_model

    scale = int(scale)
    if isinstance(getattr(model, "output", None), dict):
        try:
            return mdsr_scale_model(model, scale)
        except ValueError as e:
            raise ExportUsageError(f"--scale {scale}: {e}") from None
    got = upscale_factor(model)
    if got != scale:
        raise ExportUsageError(f"--scale {scale}: the model upscales by {got}")
    return model


def save_serving_model(
    model: keras.Model, scale: int, version_dir: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Path:
    """Saves the ``scale`` network of ``model`` (float [0,255] in/out) for TF Serving at ``version_dir``.

    ``model``: a single-scale model, which must upscale by ``scale``, or an MDSR model, whose
    ``scale`` sub-network is exported (:func:`serving_network`). ``scale`` and ``max_pixels``
    are recorded in the SavedModel (:func:`serving_metadata`).
    ``version_dir`` is the numbered folder, e.g. ``.../savedmodel/edsr_baseline_x2/1``.
    ``max_pixels``: the input size limit every signature checks (module docstring).
    Built with ``keras.export.ExportArchive``: it tracks the Keras variables so that
    the graph-mode loader (TF Serving, ``saved_model_cli run``) restores them; a
    plain ``tf.Module`` holding a Keras 3 model loads with ``tf.saved_model.load``
    but fails there with "Could not find variable".
    """
    import tensorflow as tf

    version_dir = Path(version_dir)
    if not version_dir.name.isdigit():
        raise ExportError(f"{version_dir}: TF Serving needs a numeric version folder")
    if int(max_pixels) < 1:
        raise ExportUsageError(f"--max_pixels must be >= 1, got {max_pixels}")
    net = serving_network(model, scale)
    archive = keras.export.ExportArchive()
    archive.track(net)
    for name, (fn, signature) in _endpoints(net, max_pixels).items():
        archive.add_endpoint(name, fn, input_signature=signature)
    for name, value in (("scale", int(scale)), ("max_pixels", int(max_pixels))):
        archive.add_variable_collection(name, [tf.Variable(value, dtype=tf.int64, trainable=False, name=name)])
    version_dir.parent.mkdir(parents=True, exist_ok=True)
    archive.write_out(str(version_dir), verbose=False)
    return version_dir


def serving_metadata(loaded) -> dict[str, int | None]:
    """``{"scale", "max_pixels"}`` recorded in a loaded serving SavedModel (None: not recorded)."""
    out = {}
    for name in ("scale", "max_pixels"):
        values = getattr(loaded, name, None)
        out[name] = int(values[0].numpy()) if values else None
    return out


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
        #: ``{"scale", "max_pixels"}`` recorded at export (:func:`serving_metadata`).
        self.metadata = serving_metadata(self.loaded)

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
