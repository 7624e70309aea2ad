"""Image IO: formats, grayscale/alpha/16-bit kept, clear errors, atomic writes."""

import io
import os
import stat

import numpy as np
import pytest
from PIL import Image

from edsr_tf.images import (
    ImageReadError,
    ImageWriteError,
    atomic_write_bytes,
    quantize_to,
    read_image,
    write_image,
)
from edsr_tf.metrics import quantize


@pytest.fixture(scope="module")
def rgb(photo):
    return np.ascontiguousarray(photo[40:63, 100:131])  # 23x31, odd on purpose


def test_png_rgb_gray_rgba_roundtrip_exact(tmp_path, rgb):
    write_image(tmp_path / "c.png", rgb)
    img = read_image(tmp_path / "c.png")
    assert (img.bit_depth, img.grayscale, img.alpha, img.format) == (8, False, None, "PNG")
    np.testing.assert_array_equal(img.rgb, rgb)

    write_image(tmp_path / "g.png", rgb[..., 1])
    g = read_image(tmp_path / "g.png")
    assert g.grayscale and g.rgb.shape == rgb.shape
    np.testing.assert_array_equal(g.channels(), rgb[..., 1])
    assert Image.open(tmp_path / "g.png").mode == "L"

    alpha = rgb[..., 2][::-1].copy()
    write_image(tmp_path / "a.png", rgb, alpha=alpha)
    a = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(a.rgb, rgb)
    np.testing.assert_array_equal(a.alpha, alpha)

    write_image(tmp_path / "ga.png", rgb[..., 0], alpha=alpha)
    ga = read_image(tmp_path / "ga.png")
    assert ga.grayscale and Image.open(tmp_path / "ga.png").mode == "LA"
    np.testing.assert_array_equal(ga.alpha, alpha)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16bit_png_keeps_all_bits(tmp_path, channels):
    rng = np.random.default_rng(channels)
    data = rng.integers(0, 65536, (9, 13, channels), dtype=np.uint16)
    image = data[..., 0] if channels == 1 else data[..., :3]
    alpha = data[..., 3] if channels == 4 else None
    path = write_image(tmp_path / "x.png", image, alpha=alpha)
    img = read_image(path)
    assert img.bit_depth == 16 and img.rgb.dtype == np.uint16 and img.max_value == 65535
    assert img.grayscale == (channels == 1)
    np.testing.assert_array_equal(img.channels(), image)
    if alpha is not None:
        np.testing.assert_array_equal(img.alpha, alpha)
    # The values the model sees: 16-bit scaled into [0, 255].
    np.testing.assert_allclose(img.rgb_float255().max(), img.rgb.max() / 257.0, rtol=1e-6)
    assert (img.rgb % 257 != 0).any()  # not just 8-bit values scaled up: 16 bits survived


def test_jpeg_bmp_webp_read(tmp_path, rgb):
    write_image(tmp_path / "x.bmp", rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "x.bmp").rgb, rgb)
    write_image(tmp_path / "x.webp", rgb, quality=100)  # quality 100 = lossless WebP
    np.testing.assert_array_equal(read_image(tmp_path / "x.webp").rgb, rgb)
    for name, fmt in (("x.jpg", "JPEG"), ("y.webp", "WEBP")):
        write_image(tmp_path / name, rgb, quality=95)
        img = read_image(tmp_path / name)
        assert img.format == fmt and img.rgb.shape == rgb.shape and img.bit_depth == 8
        assert np.abs(img.rgb.astype(int) - rgb).mean() < 6  # lossy, but the same picture


def test_palette_with_transparency_becomes_rgba(tmp_path, rgb):
    im = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    im.info["transparency"] = 0
    im.save(tmp_path / "p.png", transparency=0)
    img = read_image(tmp_path / "p.png")
    assert img.alpha is not None and not img.grayscale
    assert set(np.unique(img.alpha)) <= {0, 255} and (img.alpha == 0).any()


# EXIF orientation → quarter turns counter-clockwise (np.rot90's k) that display the stored pixels upright.
@pytest.mark.parametrize("orientation, k", [(3, 2), (6, -1), (8, 1)])
def test_jpeg_exif_orientation_applied(tmp_path, rgb, orientation, k):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(tmp_path / "r.jpg", quality=95, exif=exif)
    with Image.open(tmp_path / "r.jpg") as im:
        stored = np.asarray(im.convert("RGB"))  # decoded as stored, the tag not applied
    img = read_image(tmp_path / "r.jpg")
    # Pixels, not only the shape: a turn the wrong way keeps the shape of 6 and 8 (and all of 3's).
    np.testing.assert_array_equal(img.rgb, np.rot90(stored, k))


@pytest.mark.parametrize("bits", [8, 16])
def test_truncated_png_is_an_error_naming_the_file(tmp_path, rgb, bits):
    data = rgb.astype(np.uint16) * 257 if bits == 16 else rgb
    full = write_image(tmp_path / "full.png", data).read_bytes()
    bad = tmp_path / f"cut{bits}.png"
    bad.write_bytes(full[: len(full) // 2])
    with pytest.raises(ImageReadError, match=f"cut{bits}.png"):
        read_image(bad)


def test_unreadable_inputs(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.png: empty"):
        read_image(tmp_path / "empty.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageReadError, match="notes.png"):
        read_image(tmp_path / "notes.png")
    with pytest.raises(ImageReadError, match="not a file"):
        read_image(tmp_path)


def test_write_errors_leave_no_file(tmp_path, rgb):
    with pytest.raises(ImageWriteError, match="16-bit"):
        write_image(tmp_path / "x.jpg", rgb.astype(np.uint16))
    with pytest.raises(ImageWriteError, match="alpha"):
        write_image(tmp_path / "y.jpg", rgb, alpha=rgb[..., 0])
    with pytest.raises(ImageWriteError, match="suffix"):
        write_image(tmp_path / "z.tif", rgb)
    with pytest.raises(ImageWriteError, match="uint8 or uint16"):
        write_image(tmp_path / "f.png", rgb.astype(np.float32))
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_and_cleans_up(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temp files left
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0600


def test_quantize_to_matches_metric_rounding():
    rng = np.random.default_rng(0)
    x = rng.uniform(-20, 280, (300, 7, 3)).astype(np.float32)
    x[0, :3, 0] = [0.5, 1.5, 254.5]  # MATLAB rounds halves away from zero
    q = quantize_to(x, 8, rows_per_chunk=64)
    np.testing.assert_array_equal(q, quantize(x))
    assert tuple(q[0, :3, 0]) == (1, 2, 255)
    q16 = quantize_to(np.array([0.0, 255.0, 300.0, 1.0]), 16)
    assert q16.dtype == np.uint16 and tuple(q16) == (0, 65535, 65535, 257)


def test_encoded_pixels_readable_by_pillow(tmp_path, rgb):
    # Written files are ordinary images other tools open.
    write_image(tmp_path / "o.png", rgb)
    with Image.open(io.BytesIO((tmp_path / "o.png").read_bytes())) as im:
        np.testing.assert_array_equal(np.asarray(im), rgb)
