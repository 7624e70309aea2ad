"""MATLAB-compatible bicubic imresize (NumPy and TF), and the benchmark "Bicubic" figures.

The figures test evaluates bicubic upscaling of the official Set5/Set14 LR images with our metric
and compares them to the reference figures of ../shared/data/README.md.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from edsr_tf.imresize import (
    bicubic_upscale,
    contributions,
    imresize,
    imresize_tf,
    output_length,
    resize_matrix,
    resize_matrix_tf,
)
from edsr_tf.metrics import psnr, quantize, ssim

SCALES = (2, 3, 4)
# Reference figures (dB) from ../shared/data/README.md: bicubic x2/x3/x4, Y PSNR, shave = scale.
README_FIGURES = {
    ("benchmark", "Set5"): (33.65, 30.39, 28.42),
    ("benchmark", "Set14"): (30.22, 27.53, 25.99),
    ("edsr_benchmark", "Set5"): (33.64, 30.39, 28.42),
    ("edsr_benchmark", "Set14"): (30.22, 27.53, 25.99),
}


# --- independent per-pixel reference ---------------------------------------------------------


def _keys(x: float) -> float:
    x = abs(x)
    if x <= 1:
        return 1.5 * x**3 - 2.5 * x**2 + 1
    if x <= 2:
        return -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2
    return 0.0


def _reference_resize_1d(signal: np.ndarray, out_len: int, scale: float) -> np.ndarray:
    """Loop transcription of MATLAB's imresize along axis 0, padding with np.pad('symmetric')."""
    support = 2.0 / min(scale, 1.0)  # half width of the (stretched) kernel
    pad = int(support) + 3
    padded = np.pad(signal, [(pad, pad)] + [(0, 0)] * (signal.ndim - 1), mode="symmetric")
    out = np.zeros((out_len,) + signal.shape[1:])
    for i in range(out_len):
        centre = (i + 1) / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinate
        taps = range(math.floor(centre - support), math.floor(centre + support) + 1)
        if scale < 1:
            w = [scale * _keys(scale * (centre - j)) for j in taps]
        else:
            w = [_keys(centre - j) for j in taps]
        total = sum(w)
        for j, wj in zip(taps, w):
            out[i] += wj / total * padded[j - 1 + pad]
    return out


def _reference_resize(img: np.ndarray, out_shape: tuple[int, int]) -> np.ndarray:
    img = img.astype(np.float64)
    rows = _reference_resize_1d(img, out_shape[0], out_shape[0] / img.shape[0])
    cols = _reference_resize_1d(np.swapaxes(rows, 0, 1), out_shape[1], out_shape[1] / img.shape[1])
    return np.swapaxes(cols, 0, 1)


@pytest.fixture(scope="module")
def small(photo) -> np.ndarray:
    return photo[100:131, 200:243]  # 31x43: odd sizes on purpose


# --- NumPy ----------------------------------------------------------------------------------


def test_output_length_is_matlab_ceil():
    assert output_length(255, 1 / 3) == 85
    assert output_length(100, 1.1) == 110  # 100 * 1.1 = 110.00000000000001 in floating point
    assert output_length(101, 1.1) == 112  # 111.1 -> ceil
    assert output_length(7, 0.5) == 4
    assert output_length(10, 1.25) == 13
    assert output_length(3, 0.1) == 1
    assert output_length(100, 3) == 300


@pytest.mark.parametrize(
    "out_shape", [(62, 86), (93, 129), (16, 22), (11, 15), (8, 11), (22, 70), (40, 20)]
)
def test_matches_per_pixel_reference(small, out_shape):
    ours = imresize(small.astype(np.float64), output_shape=out_shape)
    np.testing.assert_allclose(ours, _reference_resize(small, out_shape), atol=1e-9)


def test_scale_argument_uses_the_given_scale(small):
    # A scale that does not divide the size: MATLAB maps with the given scale, not out/in.
    ours = imresize(small.astype(np.float64), 0.3)
    assert ours.shape == (10, 13, 3)
    ref_rows = _reference_resize_1d(small.astype(np.float64), 10, 0.3)
    ref = np.swapaxes(_reference_resize_1d(np.swapaxes(ref_rows, 0, 1), 13, 0.3), 0, 1)
    np.testing.assert_allclose(ours, ref, atol=1e-9)


def test_shapes_and_dtypes(small):
    assert imresize(small, 2).shape == (62, 86, 3)
    assert imresize(small, 1 / 3).shape == (11, 15, 3)
    assert imresize(small[..., 0], 1 / 4).shape == (8, 11)
    assert imresize(small[..., :1], output_shape=(5, 70)).shape == (5, 70, 1)
    assert imresize(small, 2).dtype == np.uint8
    assert imresize(small.astype(np.float32), 2).dtype == np.float64
    u16 = small.astype(np.uint16) * 257
    out16 = imresize(u16, 3)
    assert out16.dtype == np.uint16
    assert abs(out16.astype(float) / 257 - imresize(small.astype(float), 3)).max() < 1.0
    signed = imresize(np.array([[-3, 5], [7, -9]], np.int16), 2)
    assert signed.dtype == np.int16 and signed.min() < -9  # overshoot kept, not clipped at 0


def test_identity_at_scale_one(small):
    np.testing.assert_array_equal(imresize(small, 1), small)
    f = small.astype(np.float64) / 7
    np.testing.assert_allclose(imresize(f, 1.0), f, atol=1e-12)
    np.testing.assert_allclose(imresize(f, output_shape=f.shape[:2]), f, atol=1e-12)


@pytest.mark.parametrize("scale", [1 / 4, 1 / 3, 0.5, 0.7, 1.6, 2, 3, 4])
def test_constant_image_and_flip_symmetry(photo, scale):
    const = np.full((13, 17), 93.25)
    np.testing.assert_allclose(imresize(const, scale), 93.25, atol=1e-10)
    # The mapping is centred: flipping commutes with resizing when scale * size is an integer.
    f = photo[:120, :60].astype(np.float64)
    out = imresize(f, scale)
    np.testing.assert_allclose(imresize(f[::-1, ::-1], scale), out[::-1, ::-1], atol=1e-9)
    np.testing.assert_allclose(imresize(f[:, ::-1], scale), out[:, ::-1], atol=1e-9)


def test_uint8_rounds_between_passes_like_matlab(small):
    # MATLAB's imresizemex returns the input class: a uint8 image is rounded after each pass.
    w_r, i_r = contributions(small.shape[0], 11, 1 / 3)
    w_c, i_c = contributions(small.shape[1], 15, 1 / 3)
    rows = np.einsum("op,opwc->owc", w_r, small.astype(np.float64)[i_r])
    rows = np.clip(np.floor(rows + 0.5), 0, 255)
    cols = np.einsum("op,hopc->hoc", w_c, rows[:, i_c])
    np.testing.assert_array_equal(imresize(small, 1 / 3), np.clip(np.floor(cols + 0.5), 0, 255))


def test_bicubic_upscale_rounds_once(small):
    out = bicubic_upscale(small, 3)
    assert out.dtype == np.uint8 and out.shape == (93, 129, 3)
    np.testing.assert_array_equal(out, quantize(imresize(small.astype(np.float64), 3)))
    np.testing.assert_array_equal(bicubic_upscale(small.astype(np.float32), 3), out)


def test_resize_matrix_is_the_same_operator(small):
    f = small[..., 0].astype(np.float64)
    m_r, m_c = resize_matrix(31, 62, 2.0), resize_matrix(43, 11, 11 / 43)
    np.testing.assert_allclose(m_r.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(m_r @ f @ m_c.T, imresize(f, output_shape=(62, 11)), atol=1e-9)
    for args in [(31, 62, 2.0), (43, 11, 0.25), (5, 3, 0.6), (2, 9, 4.5)]:
        np.testing.assert_allclose(resize_matrix_tf(*args).numpy(), resize_matrix(*args), atol=1e-12)


def test_clear_errors(small):
    with pytest.raises(ValueError, match="exactly one of scale and output_shape"):
        imresize(small)
    with pytest.raises(ValueError, match="exactly one of scale and output_shape"):
        imresize(small, 2, output_shape=(4, 4))
    with pytest.raises(ValueError, match="positive finite"):
        imresize(small, -2)
    with pytest.raises(TypeError, match="positive number"):
        imresize(small, "x")
    with pytest.raises(ValueError, match=r"HxW or HxWxC.*\(1, 31, 43, 3\)"):
        imresize(small[None], 2)
    with pytest.raises(ValueError, match="output_shape must be positive"):
        imresize(small, output_shape=(0, 5))
    with pytest.raises(ValueError, match="two integers"):
        imresize(small, output_shape=(5,))
    with pytest.raises(TypeError, match="dtype bool"):
        imresize(small > 3, 2)
    with pytest.raises(ValueError, match="give exactly one"):
        imresize_tf(tf.zeros([4, 4, 3]))
    with pytest.raises(ValueError, match=r"\[H, W, C\]"):
        imresize_tf(tf.zeros([4, 4]), 2)


# --- TensorFlow -----------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1 / 4, 1 / 3, 0.5, 1, 2, 3, 4])
def test_tf_matches_numpy(small, scale):
    f = small.astype(np.float32)
    want = imresize(f.astype(np.float64), scale)
    got = imresize_tf(tf.constant(f), scale)
    assert got.dtype == tf.float32 and tuple(got.shape) == want.shape
    np.testing.assert_allclose(got.numpy(), want, atol=1e-3)
    batch = imresize_tf(tf.constant(np.stack([f, f[::-1]])), scale).numpy()
    np.testing.assert_allclose(batch[0], want, atol=1e-3)
    np.testing.assert_allclose(batch[1], imresize(f[::-1].astype(np.float64), scale), atol=1e-3)


def test_tf_output_shape_and_matlab_uint8(small):
    f = tf.constant(small, tf.float32)
    got = imresize_tf(f, output_shape=(20, 90))
    np.testing.assert_allclose(
        got.numpy(), imresize(small.astype(np.float64), output_shape=(20, 90)), atol=1e-3
    )
    for kwargs in ({"scale": 1 / 3}, {"output_shape": (20, 90)}, {"output_shape": (70, 12)}):
        exact = imresize_tf(tf.constant(small), matlab_uint8=True, **kwargs)
        np.testing.assert_array_equal(exact.numpy(), imresize(small, **kwargs))


def test_tf_dynamic_shapes_in_tf_data(photo):
    sizes = [(31, 43), (48, 48), (17, 60), (96, 30)]
    # Slicing by tensors gives [None, None, 3] elements, like decoded images of varying size.
    # (Not Dataset.from_generator: in TF 2.21 it lowers glibc's M_TRIM_THRESHOLD for the whole
    # process, which makes every later large NumPy allocation page-fault.)
    heights, widths = (tf.constant(v) for v in zip(*sizes))
    source = tf.constant(photo, tf.float32)
    ds = tf.data.Dataset.from_tensor_slices((heights, widths)).map(lambda h, w: source[:h, :w])
    ds = ds.map(lambda x: (x, imresize_tf(x, 1 / 3), imresize_tf(x, 2)), num_parallel_calls=2)
    assert ds.element_spec[1].shape.as_list() == [None, None, 3]
    images = []
    for img, down, up in ds.as_numpy_iterator():
        images.append(img)
        np.testing.assert_allclose(down, imresize(img.astype(np.float64), 1 / 3), atol=1e-3)
        np.testing.assert_allclose(up, imresize(img.astype(np.float64), 2), atol=1e-3)
    assert [i.shape[:2] for i in images] == sizes

    spec = [tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([2], tf.int32)]
    fn = tf.function(lambda x, hw: imresize_tf(x, output_shape=hw), input_signature=spec)
    out = fn(np.stack([images[1], images[1]]), tf.constant([13, 29]))
    assert out.shape == (2, 13, 29, 3)
    want = imresize(images[1].astype(np.float64), output_shape=(13, 29))
    np.testing.assert_allclose(out.numpy()[1], want, atol=1e-3)


def test_tf_keeps_static_shapes():
    out = imresize_tf(tf.zeros([2, 48, 30, 3]), 1 / 3)
    assert out.shape.as_list() == [2, 16, 10, 3]
    out = imresize_tf(tf.zeros([9, 7, 1], tf.float64), output_shape=(4, 5))
    assert out.shape.as_list() == [4, 5, 1] and out.dtype == tf.float64


# --- real data: official LR files and the papers' Bicubic figures ----------------------------


def _load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _benchmark_pairs(root: Path, layout: str, name: str, scale: int):
    """(hr, official_lr) pairs of one set, HR cropped to LR size x scale."""
    if layout == "benchmark":
        folder = root / "benchmark" / name / f"image_SRF_{scale}"
        hr_files = sorted(folder.glob("*_HR.png"))
        lr_files = [f.with_name(f.name.replace("_HR", "_LR")) for f in hr_files]
    else:
        hr_files = sorted((root / "edsr_benchmark" / name / "HR").glob("*.png"))
        lr_dir = root / "edsr_benchmark" / name / "LR_bicubic" / f"X{scale}"
        lr_files = [lr_dir / f"{f.stem}x{scale}.png" for f in hr_files]
    assert hr_files, f"no HR images under {root} for {layout}/{name}"
    for hr_file, lr_file in zip(hr_files, lr_files):
        hr, lr = _load(hr_file), _load(lr_file)
        yield hr[: lr.shape[0] * scale, : lr.shape[1] * scale], lr


@pytest.fixture(scope="module")
def bicubic_results(shared_data):
    """Per (layout, set, scale): mean PSNR/SSIM from official and own LR, LR agreement."""
    results = {}
    for (layout, name) in README_FIGURES:
        for scale in SCALES:
            official, own, own_ssim, close, total = [], [], [], 0, 0
            for hr, lr in _benchmark_pairs(shared_data, layout, name, scale):
                official.append(psnr(bicubic_upscale(lr, scale), hr, shave=scale))
                ours_lr = imresize(hr, 1 / scale)
                assert ours_lr.shape == lr.shape
                close += int(np.sum(np.abs(ours_lr.astype(int) - lr) <= 1))
                total += lr.size
                sr = bicubic_upscale(ours_lr, scale)
                own.append(psnr(sr, hr, shave=scale))
                own_ssim.append(ssim(sr, hr, shave=scale))
            results[layout, name, scale] = {
                "official": float(np.mean(official)),
                "own": float(np.mean(own)),
                "own_ssim": float(np.mean(own_ssim)),
                "lr_within_1": close / total,
            }
    return results


def _print_table(capsys, results) -> None:
    lines = [
        "",
        "Bicubic (Y PSNR dB, shave=scale): official LR | own LR (SSIM) | README | LR within 1 level",
    ]
    for (layout, name), targets in README_FIGURES.items():
        for scale, target in zip(SCALES, targets):
            r = results[layout, name, scale]
            lines.append(
                f"  {layout:>14}/{name:<5} x{scale}: {r['official']:.4f} | {r['own']:.4f} "
                f"({r['own_ssim']:.4f}) | {target:.2f} | {100 * r['lr_within_1']:.2f}%"
            )
    with capsys.disabled():  # visible in CI logs without -s
        print("\n".join(lines))


def test_bicubic_figures_match_readme(bicubic_results, capsys):
    _print_table(capsys, bicubic_results)
    for (layout, name), targets in README_FIGURES.items():
        for scale, target in zip(SCALES, targets):
            r = bicubic_results[layout, name, scale]
            label = f"{layout}/{name} x{scale}"
            assert abs(r["official"] - target) <= 0.01, f"{label}: {r['official']:.4f} vs {target}"
            assert abs(r["own"] - target) <= 0.02, f"{label}: {r['own']:.4f} vs {target}"
            assert r["lr_within_1"] >= 0.99, f"{label}: {r['lr_within_1']:.4f}"


def test_div2k_downscale_is_exact_and_fast(shared_data, capsys):
    hr = _load(shared_data / "DIV2K" / "DIV2K_train_HR" / "0004.png")
    lr = _load(shared_data / "DIV2K" / "DIV2K_train_LR_bicubic" / "X2" / "0004x2.png")
    timings = {}
    for scale in SCALES:
        start = time.perf_counter()
        out = imresize(hr, 1 / scale)
        timings[scale] = time.perf_counter() - start
        assert out.shape == (math.ceil(1344 / scale), math.ceil(2040 / scale), 3)
        if scale == 2:
            exact_np = float(np.mean(out == lr))
    exact_tf = float(np.mean(imresize_tf(tf.constant(hr), 0.5, matlab_uint8=True).numpy() == lr))
    with capsys.disabled():
        print(
            "\nDIV2K 0004 (2040x1344) downscale: "
            + ", ".join(f"x{s} {t:.2f}s" for s, t in timings.items())
            + f"; equal to official X2 LR: numpy {100 * exact_np:.3f}%, tf {100 * exact_tf:.3f}%"
        )
    assert exact_np >= 0.999 and exact_tf >= 0.999
    # Generous bound (shared 2-core CI machine); typical is ~0.1-0.3 s.
    assert max(timings.values()) < 3.0, timings
