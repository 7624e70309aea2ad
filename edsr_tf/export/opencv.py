"""OpenCV ``dnn_superres`` drop-in: an ONNX file that ``DnnSuperResImpl`` runs with ``setModel("edsr", S)``.

What ``DnnSuperResImpl::upsample`` does for ``"edsr"`` (opencv_contrib
``modules/dnn_superres/src/dnn_superres.cpp``, the same on the 4.x and 5.x branches)::

    mean   = Scalar(103.1545782, 111.561547, 114.35629928)         # its DIV2K mean, B, G, R
    blob   = blobFromImage(float(img), 1.0, Size(), mean)           # NCHW, channels as given (BGR), minus mean
    out    = net.forward(blob)                                      # NCHW
    result = (imagesFromBlob(out)[0] + mean).convertTo(CV_8U)       # plus mean, rounded, saturated to [0, 255]

Our networks take RGB NHWC in [0, 255] and subtract/add their own DIV2K mean inside
(``DIV2K_RGB_MEAN`` x 255 = 114.444, 111.4605, 103.02 in R, G, B: not OpenCV's numbers).
:func:`opencv_network` folds every difference into the network itself, so OpenCV's own
pre/post-processing yields our model's output and no user code changes:

* BGR ↔ RGB: the input channels of the first conv (``head``) and the output channels of
  the last conv (``tail``, weights and bias) are reversed: a permutation, exact.
* The means: the input gets ``OpenCV mean − ours`` added where our ``sub_mean`` subtracted
  ours (so the head conv sees exactly what it saw before). It is not folded into the head
  conv's bias: the conv zero-pads, and a constant folded into the bias would also be added
  where the kernel overlaps the padding, changing the border pixels. At the output
  ``ours − OpenCV mean`` joins the tail conv's bias (after the conv, so exact), replacing
  ``add_mean``; OpenCV adds its mean back.
* Layout: tf2onnx writes the graph with an NCHW input and output (``--inputs-as-nchw``).
* Clipping: none in the graph; ``convertTo(CV_8U)`` saturates to [0, 255].
* The pixel shuffle: ``dnn_superres`` registers its own ``DepthToSpace`` layer (for ESPCN)
  in OpenCV's layer registry, which takes the place of the ONNX op of that name and assumes
  1 or 3 output channels; EDSR shuffles 64. Each ``DepthToSpace`` is therefore written as
  the Reshape/Transpose/Reshape the ONNX spec defines it by (:func:`nchw_depth_to_space`).

OpenCV 5 reads ONNX in ``readModel``; OpenCV 4.x reads only frozen TensorFlow graphs
there (``readNetFromTensorflow``), which this export does not write (docs/use_it_from.md says why).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from edsr_tf.export.common import ExportError, ExportUsageError, VerificationError

if TYPE_CHECKING:
    import keras

    from edsr_tf.export.verify import KerasRunner, VerificationImage

#: The mean ``dnn_superres`` subtracts before and adds after an "edsr" network, B, G, R.
OPENCV_EDSR_MEAN_BGR: tuple[float, float, float] = (103.1545782, 111.561547, 114.35629928)
#: The algorithm name users pass to ``setModel``.
ALGORITHM = "edsr"
#: The OpenCV major version whose ``dnn_superres.readModel`` reads ONNX.
MIN_OPENCV_MAJOR = 5
#: How to get it (the package the tests use).
INSTALL_HINT = "pip install 'opencv-contrib-python-headless>=5'"
#: OpenCV returns uint8: its output may differ from the float Keras output by this much from rounding alone.
OUTPUT_ROUNDING = 0.5


def require_opencv():
    """The ``cv2`` module, if it has ``dnn_superres`` and reads ONNX there (OpenCV 5+).

    Raises :class:`ExportUsageError` naming ``--formats opencv`` and the package to install.
    """
    try:
        import cv2
    except ImportError as e:
        raise ExportUsageError(
            f"--formats opencv: OpenCV is not installed ({e}); it is needed to verify the file: "
            f"{INSTALL_HINT}") from None
    if not hasattr(cv2, "dnn_superres"):
        raise ExportUsageError(
            f"--formats opencv: the installed OpenCV {cv2.__version__} has no dnn_superres module (a "
            f"contrib module); install the contrib build: {INSTALL_HINT}")
    major = int(str(cv2.__version__).split(".")[0])
    if major < MIN_OPENCV_MAJOR:
        raise ExportUsageError(
            f"--formats opencv: writes ONNX for OpenCV {MIN_OPENCV_MAJOR}'s dnn_superres, and the installed "
            f"OpenCV {cv2.__version__} reads only TensorFlow .pb files there: {INSTALL_HINT}")
    return cv2


def version() -> str | None:
    """The installed OpenCV's version (None: not installed)."""
    try:
        import cv2
    except ImportError:
        return None
    return str(cv2.__version__)


def _layer(net: "keras.Model", name: str, kind: type):
    try:
        layer = net.get_layer(name)
    except ValueError:
        layer = None
    if not isinstance(layer, kind):
        raise ExportError(
            f"{net.name}: not an EDSR/MDSR network of this project (no {kind.__name__} layer {name!r}); "
            "the OpenCV export folds the colour order and mean into those layers")
    return layer


def opencv_network(net: "keras.Model") -> "keras.Model":
    """``net`` (one scale, RGB in [0, 255]) refolded for ``dnn_superres``'s "edsr" conventions.

    The result maps ``BGR − OpenCV mean`` to ``BGR output − OpenCV mean`` (NHWC here; the ONNX
    file is NCHW), so ``upsample`` returns ``net``'s output in BGR. Its weights are copies:
    ``net`` is left as it is. See the module docstring for what is folded where.
    """
    import keras

    from edsr_tf.models.layers import MeanShift

    sub_mean, add_mean = _layer(net, "sub_mean", MeanShift), _layer(net, "add_mean", MeanShift)
    head, tail = _layer(net, "head", keras.layers.Conv2D), _layer(net, "tail", keras.layers.Conv2D)
    if head.kernel.shape[2] != 3 or tail.filters != 3:
        raise ExportError(f"{net.name}: head/tail convs are not 3-channel in/out; cannot fold BGR into them")
    cv_bgr = np.asarray(OPENCV_EDSR_MEAN_BGR, np.float64)
    shift_in, shift_out = (np.asarray(m.rgb_mean, np.float64)[::-1] * m.rgb_range * m.sign
                           for m in (sub_mean, add_mean))

    def clone(layer):
        if layer.name == "sub_mean":  # (x − OpenCV mean) + (OpenCV mean − ours) == x − ours, in BGR
            return MeanShift(1.0, tuple(cv_bgr + shift_in), 1.0, name="sub_mean", dtype=layer.dtype_policy)
        if layer.name == "add_mean":  # folded into the tail bias below
            return keras.layers.Identity(name="add_mean", dtype=layer.dtype_policy)
        return layer.__class__.from_config(layer.get_config())

    folded = keras.models.clone_model(net, clone_function=clone)
    for layer in folded.layers:
        weights = net.get_layer(layer.name).get_weights()
        if layer.name == "head":
            weights = [weights[0][:, :, ::-1, :], weights[1]]
        elif layer.name == "tail":
            bias = weights[1][::-1].astype(np.float64) + shift_out - cv_bgr
            weights = [weights[0][..., ::-1], bias.astype(np.float32)]
        if weights:
            layer.set_weights([np.ascontiguousarray(w) for w in weights])
    return folded


def nchw_depth_to_space(model) -> int:
    """Rewrites each ONNX ``DepthToSpace`` (DCR) as the Reshape/Transpose/Reshape the spec defines it by.

    ``dnn_superres`` replaces the op ``DepthToSpace`` with its own layer (module docstring);
    these ops are OpenCV's own. The shapes come from ``Shape`` at run time, so any input
    size works. Returns how many were rewritten.
    """
    from onnx import helper, numpy_helper

    from edsr_tf.export.onnx import rewrite_depth_to_space

    def expand(graph, x: str, y: str, r: int, name: str) -> list:
        p = f"{name}_d2s"
        graph.initializer.extend([
            numpy_helper.from_array(np.array([0], np.int64), f"{p}_0"),
            numpy_helper.from_array(np.array([1], np.int64), f"{p}_1"),
            numpy_helper.from_array(np.array([2], np.int64), f"{p}_2"),
            numpy_helper.from_array(np.array([4], np.int64), f"{p}_4"),
            numpy_helper.from_array(np.array([r, r, -1], np.int64), f"{p}_rrc"),
            numpy_helper.from_array(np.array([-1], np.int64), f"{p}_c"),
            numpy_helper.from_array(np.array([r, r], np.int64), f"{p}_r"),
        ])
        return [
            helper.make_node("Shape", [x], [f"{p}_shape"]),
            helper.make_node("Slice", [f"{p}_shape", f"{p}_0", f"{p}_1"], [f"{p}_n"]),
            helper.make_node("Slice", [f"{p}_shape", f"{p}_2", f"{p}_4"], [f"{p}_hw"]),
            helper.make_node("Mul", [f"{p}_hw", f"{p}_r"], [f"{p}_hw_r"]),
            helper.make_node("Concat", [f"{p}_n", f"{p}_rrc", f"{p}_hw"], [f"{p}_6d_shape"], axis=0),
            helper.make_node("Concat", [f"{p}_n", f"{p}_c", f"{p}_hw_r"], [f"{p}_out_shape"], axis=0),
            # [N, (i, j, c), H, W] → [N, i, j, c, H, W] → [N, c, H, i, W, j] → [N, c, H·r, W·r]
            helper.make_node("Reshape", [x, f"{p}_6d_shape"], [f"{p}_6d"]),
            helper.make_node("Transpose", [f"{p}_6d"], [f"{p}_6d_t"], perm=[0, 3, 4, 1, 5, 2]),
            helper.make_node("Reshape", [f"{p}_6d_t", f"{p}_out_shape"], [y]),
        ]

    return rewrite_depth_to_space(model, expand, strict=True)


def _name_dims(model) -> None:
    """Readable names for the symbolic dims of the NCHW input and output."""
    for value, names in ((model.graph.input[0], ("batch", None, "height", "width")),
                         (model.graph.output[0], ("batch", None, "out_height", "out_width"))):
        for d, n in zip(value.type.tensor_type.shape.dim, names):
            if n and not d.HasField("dim_value"):
                d.dim_param = n


def convert(net: "keras.Model", path: str | os.PathLike, work_dir: str | os.PathLike) -> Path:
    """Writes the OpenCV ONNX file of ``net`` (one scale) at ``path``; ``work_dir`` holds the
    conversion SavedModel. Input ``images`` and output ``sr`` are NCHW float32, BGR minus
    :data:`OPENCV_EDSR_MEAN_BGR`, as ``dnn_superres`` feeds and reads them."""
    from edsr_tf.export import onnx as onnx_export
    from edsr_tf.export.common import export_conversion_savedmodel

    path, work_dir = Path(path), Path(work_dir)
    source = export_conversion_savedmodel(opencv_network(net), work_dir / f"{path.stem}_opencv")
    model = onnx_export.run_tf2onnx(
        source, path.parent, extra_args=["--inputs-as-nchw", onnx_export.INPUT_NAME,
                                          "--outputs-as-nchw", onnx_export.OUTPUT_NAME])
    onnx_export.fix_conv_bias_inputs(model)
    nchw_depth_to_space(model)
    _name_dims(model)
    return onnx_export.save_checked(model, path)


class OpenCVRunner:
    """Runs an OpenCV export as users do: ``DnnSuperResImpl`` with ``setModel("edsr", scale)``."""

    runtime = "opencv"

    def __init__(self, path: str | os.PathLike, scale: int):
        cv2 = require_opencv()
        self.path, self.scale = Path(path), int(scale)
        self.sr = cv2.dnn_superres.DnnSuperResImpl_create()
        try:
            self.sr.readModel(str(self.path))
        except cv2.error as e:
            raise ExportError(f"{self.path.name}: OpenCV {cv2.__version__} cannot read it: "
                              f"{str(e).strip().splitlines()[-1]}") from None
        self.sr.setModel(ALGORITHM, self.scale)

    def upsample(self, bgr: np.ndarray) -> np.ndarray:
        """``sr.upsample``: a BGR image (uint8 ``[H, W, 3]``) → the BGR uint8 ``[sH, sW, 3]`` result."""
        return self.sr.upsample(bgr)

    def run(self, images: np.ndarray) -> np.ndarray:
        """float32 RGB ``[N,H,W,3]`` in [0, 255] → float32 RGB ``[N,sH,sW,3]`` (whole numbers: OpenCV rounds).

        Whole-valued images go in as uint8, as ``cv2.imread`` gives them; others as float32
        (``upsample`` converts either to float).
        """
        images = np.asarray(images, np.float32)
        whole = np.array_equal(images, np.round(images)) and images.min(initial=0) >= 0 \
            and images.max(initial=0) <= 255
        outs = []
        for im in images:
            bgr = np.ascontiguousarray(im[..., ::-1].astype(np.uint8) if whole else im[..., ::-1])
            outs.append(self.upsample(bgr)[..., ::-1])
        return np.stack(outs).astype(np.float32)


def check_levels(runner: OpenCVRunner, reference: "KerasRunner",
                 images: Sequence["VerificationImage"]) -> dict:
    """``upsample``'s uint8 output against the rounded Keras output: at most 1 grey level apart.

    (Rounding alone gives 1 where the Keras value is within float error of a half.)
    Raises :class:`VerificationError` past 1 level.
    """
    from edsr_tf.metrics import quantize

    worst, differing, total = 0, 0, 0
    for im in images:
        got = runner.run(im.lr[None].astype(np.float32))[0].astype(np.int16)
        want = quantize(reference.reference(im)).astype(np.int16)
        diff = np.abs(got - want)
        worst = max(worst, int(diff.max()))
        differing += int(np.count_nonzero(diff))
        total += diff.size
    if worst > 1:
        raise VerificationError(f"OpenCV upsample differs from the rounded Keras output by {worst} grey levels "
                                "(at most 1 allowed)")
    return {
        "max_level_diff": worst,
        "values_off_by_one": differing,
        "checks": [f"upsample(BGR uint8) vs round(keras): max {worst} grey level, "
                   f"{differing} of {total} values differ"],
    }
