"""Hostile inputs, round two (issue 17): memory bounded by what a file can really hold,
one-line errors for unreadable folders, deep configs, odd names and bad flags."""

from __future__ import annotations

import io
import os
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edsr_tf.images import (
    ImageReadError,
    ImageTooLargeError,
    jpeg_min_bytes,
    max_file_bytes,
    probe_image,
    read_image,
)


def jpeg_claiming(width: int, height: int, *, progressive: bool = False) -> bytes:
    """A real 16x16 JPEG whose frame header is patched to claim ``width x height``: its scan
    data is far too short, so libjpeg pads the rest of the frame with grey."""
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(buf, "JPEG", progressive=progressive)
    data = bytearray(buf.getvalue())
    i = 2
    while data[i + 1] not in (0xC0, 0xC2):
        i += 2 + (data[i + 2] << 8 | data[i + 3])
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def png_head(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming ``width x height`` (8-bit RGB), nothing else."""
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))


# ------------------------------------------------------------------ 1: truncated JPEG padded


@pytest.mark.parametrize("progressive", [False, True])
def test_truncated_jpeg_is_refused_not_padded(tmp_path, progressive):
    path = tmp_path / "tiny.jpg"
    path.write_bytes(jpeg_claiming(2000, 2000, progressive=progressive))
    assert path.stat().st_size < 1000
    for read in (read_image, probe_image):
        with pytest.raises(ImageReadError, match=r"tiny\.jpg: unreadable or truncated image \(\d+ bytes "
                           r"cannot hold a 2000x2000 JPEG, which needs at least 7812\)"):
            read(path)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_smallest_real_jpegs_pass_the_length_bound(tmp_path, mode):
    """Flat images at quality 1 with optimised Huffman tables: the least data a real encoder
    writes (2 bits per block) is still above the 1-bit-per-block bound."""
    for kw in (dict(quality=1, optimize=True), dict(quality=1, progressive=True, optimize=True)):
        path = tmp_path / "flat.jpg"
        Image.new(mode, (1003, 501), 128).save(path, "JPEG", **kw)
        assert path.stat().st_size >= jpeg_min_bytes(1003, 501)
        assert read_image(path).rgb.shape == (501, 1003, 3)


# ------------------------------------------------------------------ 2: header read first


def _peak_bytes(call) -> int:
    tracemalloc.start()
    try:
        call()
    except ImageReadError:
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


@pytest.mark.parametrize("claim", [(20000, 20000), (100, 100)])
def test_sparse_file_is_refused_from_its_header_unread(tmp_path, claim):
    """1 GiB sparse files (a few KB on disk): a bomb header is refused by the pixel limit, a
    small header by the file size (no 100x100 image needs 1 GiB); neither is read whole."""
    path = tmp_path / "sparse.png"
    with open(path, "wb") as f:
        f.write(png_head(*claim))
        f.truncate(1 << 30)
    error = ImageTooLargeError if claim[0] > 10000 else ImageReadError
    with pytest.raises(error, match=r"sparse\.png: "):
        read_image(path)
    assert _peak_bytes(lambda: read_image(path)) < 1 << 20
    assert _peak_bytes(lambda: probe_image(path)) < 1 << 20
    assert max_file_bytes(*claim) < 1 << 30 or claim[0] > 10000


def test_jpeg_frame_header_after_large_metadata_is_found(tmp_path):
    """The SOF of a JPEG after more than the first read's worth of APP segments."""
    buf = io.BytesIO()
    Image.fromarray(np.full((24, 40, 3), 90, np.uint8)).save(buf, "JPEG")
    data = buf.getvalue()
    app = b"".join(b"\xff\xe5" + struct.pack(">H", 65535) + b"\0" * 65533 for _ in range(3))
    path = tmp_path / "meta.jpg"
    path.write_bytes(data[:2] + app + data[2:])
    assert probe_image(path).width == 40 and read_image(path).rgb.shape == (24, 40, 3)
    big = tmp_path / "bigmeta.jpg"
    big.write_bytes(data[:2] + app + jpeg_claiming(20000, 20000)[2:])
    with pytest.raises(ImageTooLargeError, match="20000x20000"):
        read_image(big)


# ------------------------------------------------------------------ 1, 12: serving_bytes


@pytest.fixture(scope="module")
def serving(tmp_path_factory):
    from edsr_tf.export.savedmodel import SavedModelRunner, save_serving_model
    from edsr_tf.models import ModelConfig, build_model

    model = build_model(ModelConfig("edsr", (2,), n_resblocks=1, n_feats=8))
    path = save_serving_model(model, 2, tmp_path_factory.mktemp("sm") / "1", max_pixels=4_000_000)
    return SavedModelRunner(path)


def test_serving_bytes_refuses_truncated_jpeg(serving):
    import tensorflow as tf

    for progressive in (False, True):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"truncated JPEG: \d+ bytes cannot hold "
                           r"a 1000 x 1000 image \(at least 1953 needed\)"):
            serving.run_bytes([jpeg_claiming(1000, 1000, progressive=progressive)])
    buf = io.BytesIO()
    Image.new("RGB", (40, 24), (10, 200, 30)).save(buf, "JPEG", quality=1, optimize=True)
    assert serving.run_bytes([buf.getvalue()])[0].startswith(b"\x89PNG")


def test_serving_bytes_unsupported_bytes_give_a_readable_error(serving):
    """Random bytes and WebP (whose RIFF size field has bytes >= 0x80) were a UnicodeDecodeError."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    webp = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(webp, "WEBP")
    webp = webp.getvalue()
    junk = bytes([0xFF, 0xFE, 0x80, 0x81, 0xC3, 0x28, 0xA0, 0xA1]) + rng.bytes(100)
    for data in (junk, webp, b"\x80"):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"unsupported image format \(first bytes "
                           r"\[\d+( \d+){7}\]\)") as e:
            serving.run_bytes([data])
        e.value.message.encode("utf-8")


# ------------------------------------------------------------------ 7: unreadable folders


def _as_nobody(args: list[str], cwd: Path):
    """Runs ``python -m ...args`` as an unprivileged user (root reads every folder), or as
    ourselves when not root."""
    import shutil
    import subprocess
    import sys

    prefix = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: permissions cannot be tested")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HOME": str(cwd)}
    return subprocess.run(prefix + [sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def open_dir():
    """A world-writable scratch folder (pytest's own are private to the user running it)."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="edsr_perm_"))
    os.chmod(d, 0o777)
    yield d
    for p in [d, *d.rglob("*")]:
        if not p.is_symlink():
            os.chmod(p, 0o700)
    shutil.rmtree(d, ignore_errors=True)


def _png(path: Path, size=(12, 12)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), 77, np.uint8)).save(path)
    os.chmod(path, 0o644)
    return path


def test_upscale_reports_unreadable_folders_and_files_and_goes_on(open_dir):
    _png(open_dir / "locked" / "a.png")
    _png(open_dir / "hidden" / "b.png")
    ok = _png(open_dir / "ok.png")
    os.chmod(open_dir / "locked", 0o000)   # cannot be listed
    os.chmod(open_dir / "hidden", 0o711)   # cannot be listed; its files can be opened by name
    os.chmod(open_dir / "hidden" / "b.png", 0o600)  # ... but this one not read
    (open_dir / "loop.png").symlink_to("loop.png")
    run = _as_nobody(["-m", "edsr_tf.upscale", "--bicubic", "--scale", "2", "--quiet", "--out_dir",
                      str(open_dir / "out"), str(open_dir / "locked"), str(open_dir / "hidden"),
                      str(open_dir / "hidden" / "b.png"), str(open_dir / "loop.png"), str(ok)], open_dir)
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert f"error: {open_dir / 'locked'}: cannot list the folder (Permission denied)" in lines
    assert f"error: {open_dir / 'hidden'}: cannot list the folder (Permission denied)" in lines
    assert f"error: {open_dir / 'hidden' / 'b.png'}: cannot read (Permission denied)" in lines
    assert f"error: {open_dir / 'loop.png'}: cannot read (Too many levels of symbolic links)" in lines
    assert lines[-1] == "error: 4 of 5 input(s) failed"
    assert (open_dir / "out" / "ok_x2_bicubic.png").is_file()


def test_evaluate_names_an_unreadable_dataset_folder(open_dir):
    _png(open_dir / "data" / "Set5" / "HR" / "baby.png", (16, 16))
    os.chmod(open_dir / "data" / "Set5" / "HR", 0o000)
    for p in (open_dir / "data", open_dir / "data" / "Set5"):
        os.chmod(p, 0o755)
    run = _as_nobody(["-m", "edsr_tf.evaluate", "--bicubic", "--scale", "2", "--quiet", "--dataset_dir",
                      str(open_dir / "data"), "--eval_sets", "Set5"], open_dir)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].endswith(
        f"{open_dir / 'data' / 'Set5' / 'HR'}: cannot list the folder (Permission denied)")


# ------------------------------------------------------------------ 8, 3: hostile model files


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    from edsr_tf.models import ModelConfig, build_model, save_model

    config = ModelConfig("edsr", (2,), n_resblocks=1, n_feats=8)
    model = build_model(config)
    folder = tmp_path_factory.mktemp("tw")
    return {s: save_model(model, folder / f"tiny{s}", config) for s in (".weights.h5", ".keras")}


def test_deeply_nested_embedded_config_is_one_line(tmp_path, tiny_weights, capsys):
    import h5py

    from edsr_tf.models import load_model
    from edsr_tf.models.io import ModelFileError
    from edsr_tf.upscale import main

    path = tmp_path / "deep.weights.h5"
    path.write_bytes(tiny_weights[".weights.h5"].read_bytes())
    with h5py.File(path, "a") as f:
        f.attrs["edsr_tf_config"] = "[" * 30000 + "]" * 30000
    with pytest.raises(ModelFileError, match=r"deep\.weights\.h5: invalid embedded model config \(nested too "
                       r"deeply\)"):
        load_model(path)
    Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(tmp_path / "a.png")
    assert main([str(tmp_path / "a.png"), "--weights", str(path), "--out_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nested too deeply" in err


def _rezip(src: Path, dst: Path, replace: dict[str, tuple[bytes, int]]) -> Path:
    """``src`` with members replaced: name -> (data, compression)."""
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename not in replace:
                zout.writestr(info, zin.read(info))
        for name, (data, method) in replace.items():
            zout.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    return dst


def _lie_about_size(path: Path, name: str, size: int) -> None:
    """Patches the declared uncompressed size of member ``name`` (local and central headers)."""
    import zipfile

    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    real = struct.pack("<I", info.file_size)
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        i = raw.find(sig + b"", 0)
        while i >= 0:
            name_at = 30 if sig == b"PK\x03\x04" else 46
            n = struct.unpack("<H", raw[i + name_at - 4 : i + name_at - 2])[0] if sig == b"PK\x03\x04" \
                else struct.unpack("<H", raw[i + 28 : i + 30])[0]
            if raw[i + name_at : i + name_at + n] == name.encode() and raw[i + off : i + off + 4] == real:
                raw[i + off : i + off + 4] = struct.pack("<I", size)
            i = raw.find(sig, i + 4)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("member", ["edsr_tf_config.json", "config.json", "model.weights.h5"])
def test_zip_bomb_members_of_a_keras_file_are_refused_unpacked(tmp_path, tiny_weights, member):
    """A 400 MB run of spaces deflates to ~400 KB: declared honestly it is refused by its size
    (Keras' own config.json is never read, so that one loads, cheaply), declared small it is
    refused because its compressed data is larger than it claims."""
    import zipfile

    from edsr_tf.models import load_model
    from edsr_tf.models.io import ModelFileError

    src = tiny_weights[".keras"]
    with zipfile.ZipFile(src) as zf:
        head = zf.read(member)
    bomb = head + b" " * (400 << 20)
    honest = _rezip(src, tmp_path / "honest.keras", {member: (bomb, zipfile.ZIP_DEFLATED)})
    assert honest.stat().st_size < 2 << 20
    del bomb
    liar = tmp_path / "liar.keras"
    liar.write_bytes(honest.read_bytes())
    _lie_about_size(liar, member, len(head))
    for path in (honest, liar):
        tracemalloc.start()
        if path is honest and member == "config.json":
            load_model(path)
        else:
            with pytest.raises(ModelFileError, match=rf"{path.name}: .*(zip bomb|more than)"):
                load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 50 << 20, f"{path.name}: {peak} bytes"


# ------------------------------------------------------------------ 9: train.py out_dir and seed


@pytest.mark.parametrize("case", ["file", "dangling", "seed"])
def test_train_bad_out_dir_or_seed_is_one_line_exit_2(tmp_path, case):
    import subprocess
    import sys

    out = tmp_path / "run"
    flags = []
    if case == "file":
        out.write_text("not a folder")
        expected = f"--out_dir {out}: exists and is not a folder"
    elif case == "dangling":
        out.symlink_to(tmp_path / "gone")
        expected = f"--out_dir {out}: is a dangling symlink"
    else:
        flags = [f"--seed={2**32}"]
        expected = f"--seed must be in [0, 2147483647], got {2**32}"
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "train.py", f"--out_dir={out}", "--data_source=samples",
                           "--steps=1", *flags], cwd=repo, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and lines[-1].startswith("error: ") and expected in lines[-1], proc.stderr[-2000:]
    if case == "seed":
        assert not out.exists()


# ------------------------------------------------------------------ 13, 15: odd file names


def test_non_utf8_name_under_strict_stdout_is_written_and_exits_0(tmp_path):
    import subprocess
    import sys

    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not UTF-8
    Image.fromarray(np.full((6, 6, 3), 9, np.uint8)).save(tmp_path / name)
    env = {**os.environ, "PYTHONIOENCODING": "ascii:strict", "LC_ALL": "C"}
    proc = subprocess.run([sys.executable, "-m", "edsr_tf.upscale", "--bicubic", "--scale", "2",
                           "--out_dir", str(tmp_path / "o"), str(tmp_path)], capture_output=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert b"Traceback" not in proc.stderr
    assert b"caf\\udce9.png -> " in proc.stdout
    assert os.listdir(os.fsencode(tmp_path / "o")) == [b"caf\xe9_x2_bicubic.png"]


def test_newline_in_a_file_name_keeps_the_error_on_one_line(tmp_path, capsys):
    from edsr_tf.upscale import main

    bad = tmp_path / "two\nlines.png"
    bad.write_bytes(b"not an image")
    assert main(["--bicubic", "--scale", "2", "--quiet", "--out_dir", str(tmp_path / "o"), str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: ") and "two\\nlines.png: " in err[0]
    assert err[1] == "error: 1 of 1 input(s) failed" and len(err) == 2


# ------------------------------------------------------------------ 6: a shared int8 runner


def test_int8_runner_shared_by_threads_gives_serial_results():
    """8 threads, each with its own input size, share one LiteRT runner (as they can share
    the Keras model): every result equals the serial one, no RuntimeError."""
    from concurrent.futures import ThreadPoolExecutor

    from edsr_tf.export.tflite import TFLiteRunner

    path = Path(__file__).resolve().parents[1] / "edsr_tf" / "pretrained" / "edsr_baseline_x2.int8.tflite"
    runner = TFLiteRunner(path, num_threads=1)
    rng = np.random.default_rng(6)
    inputs = [rng.uniform(0, 255, (1, 6 + i, 9 - i % 3, 3)).astype(np.float32) for i in range(8)]
    serial = [runner.run(x) for x in inputs]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(4):
            got = list(pool.map(runner.run, inputs))
            for want, y in zip(serial, got):
                np.testing.assert_array_equal(y, want)


# ------------------------------------------------------------------ 15: small ones


def test_bad_data_range_is_a_usage_error(tmp_path):
    from edsr_tf.training.app import TrainError, TrainOptions, train

    opts = TrainOptions(out_dir=str(tmp_path / "run"), data_source="samples", data_range="zz", steps=1)
    with pytest.raises(TrainError, match=r"--data_range: bad data_range 'zz'"):
        train(opts)
    assert not (tmp_path / "run").exists()


def test_huge_tile_overlap_advice_names_the_overlap_not_a_huge_tile():
    from edsr_tf.inference import receptive_field_radius, small_tile_warning
    from edsr_tf.models import ModelConfig, build_model

    model = build_model(ModelConfig("edsr", (2,), n_resblocks=1, n_feats=8))
    radius = receptive_field_radius(model)
    text = small_tile_warning(model, 2, 64, tile_overlap=1_000_000)
    assert f"--tile_overlap {radius} (the model's receptive field" in text and "1000000 or more" not in text
    assert small_tile_warning(model, 2, 1).endswith(f"--tile {radius} or more")


def test_convert_of_a_text_file_says_what_it_is(tmp_path, capsys):
    pytest.importorskip("torch")
    from edsr_tf import convert

    text = tmp_path / "notes.pt"
    text.write_text("hello, this is not a checkpoint\n")
    rc = convert.main(["--torch_checkpoint", str(text), "--model", "edsr_baseline", "--out_dir",
                       str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "KeyError" not in err[0]
    assert f"{text}: not a PyTorch checkpoint (torch.save writes a zip archive" in err[0]


def test_export_progress_line_without_latency_has_no_nan(tmp_path, capsys):
    from edsr_tf.export import ExportOptions, export_model
    from edsr_tf.models import ModelConfig, build_model

    config = ModelConfig("edsr", (2,), n_resblocks=1, n_feats=8)
    photo = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    lines = []
    export_model(build_model(config), config, tmp_path / "out",
                 ExportOptions(formats=("tflite",), quantize=("none",), latency_runs=0,
                               verify_images=[("noise", photo)]), progress=lines.append)
    done = [ln for ln in lines if "✓" in ln]
    assert done and not any("nan" in ln for ln in done), lines


# ------------------------------------------------------------------ 5: serving_bytes per request


def test_serving_bytes_runs_one_image_at_a_time(serving):
    """The per-image limit bounds a request only if its images are not decoded and run at
    once: the map over the request's images has parallel_iterations 1."""
    graph = serving.loaded.signatures["serving_bytes"].graph.as_graph_def()
    loops = [n for f in graph.library.function for n in f.node_def if n.op in ("While", "StatelessWhile")]
    assert loops and all(n.attr["parallel_iterations"].i == 1 for n in loops)


def test_nan_weights_are_refused_not_run_to_black(tmp_path, tiny_weights):
    import h5py

    from edsr_tf.models import load_model
    from edsr_tf.models.io import ModelFileError

    path = tmp_path / "nan.weights.h5"
    path.write_bytes(tiny_weights[".weights.h5"].read_bytes())
    with h5py.File(path, "a") as f:
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) and o.ndim == 4 else None)
        data = f[names[0]][...]
        data.flat[0] = np.nan
        f[names[0]][...] = data
    with pytest.raises(ModelFileError, match=r"nan\.weights\.h5: 1 weight tensor\(s\) hold NaN or infinity"):
        load_model(path)


# ------------------------------------------------------------------ 4: memory follows the output


def test_bicubic_upscale_holds_the_output_not_float64_images():
    """Bicubic in float64 bands straight into the output: equal bit for bit to the papers'
    whole-image Bicubic, and its peak is the output plus a little (whole-image float64 passes
    were about 39 bytes per output pixel; a 33 KB PNG of 3000x3000 at x4 peaked at 5.6 GB)."""
    from edsr_tf.imresize import bicubic_upscale
    from edsr_tf.upscale import bicubic_channels

    rng = np.random.default_rng(4)
    lr = rng.integers(0, 256, (400, 100, 3), dtype=np.uint8)
    want = np.stack([bicubic_upscale(lr[..., c], 4) for c in range(3)], axis=-1)
    tracemalloc.start()
    try:
        got = bicubic_channels(lr, 4)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(got, want)
    assert peak < got.nbytes * 2, f"{peak / got.nbytes:.1f} bytes per output byte"  # was 13
    lr16 = (lr[..., 0].astype(np.uint16) * 257 + 100).astype(np.uint16)
    from edsr_tf.imresize import imresize

    want16 = np.floor(np.clip(imresize(lr16.astype(np.float64), scale=3), 0, 65535) + 0.5).astype(np.uint16)
    np.testing.assert_array_equal(bicubic_channels(lr16, 3), want16)


def test_upscale_refuses_an_output_over_max_memory_before_decoding(tmp_path, capsys):
    """A small flat PNG (a few KB) whose x4 output needs ~0.5 GiB is refused from its header,
    by the budget, naming the figure; the others still run (exit 1), nothing half-written."""
    from edsr_tf.upscale import main

    big = tmp_path / "flat.png"
    Image.fromarray(np.full((2000, 2000, 3), 9, np.uint8)).save(big)
    assert big.stat().st_size < 50_000
    ok = _png(tmp_path / "ok.png")
    out = tmp_path / "out"
    rc = main(["--bicubic", "--scale", "4", "--quiet", "--out_dir", str(out), "--max_memory", "256M",
               str(big), str(ok)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 1, lines
    assert f"error: {big}: upscaling 2000x2000 x4 (output 8000x8000) needs about 546.1 MiB, over " \
           "--max_memory 256.0 MiB; raise it (0 = no limit)" in lines, lines
    assert lines[-1] == "error: 1 of 2 input(s) failed"
    assert sorted(p.name for p in out.iterdir()) == ["ok_x4_bicubic.png"]


def test_upscale_budget_counts_the_output_and_the_model_tiles():
    from edsr_tf.cli_args import TileOptions
    from edsr_tf.images import ImageInfo
    from edsr_tf.models import ModelConfig, build_model
    from edsr_tf.upscale import DEFAULT_MAX_MEMORY, memory_needed

    info = ImageInfo(Path("x.png"), 10_000, 10_000, 8, "PNG")  # 100 Mpx: the default --max_pixels
    assert memory_needed(info, 4) > 12 * 10**9 > DEFAULT_MAX_MEMORY  # x4 output alone: 4.8 GB
    model = build_model(ModelConfig("edsr", (2,), n_resblocks=1, n_feats=8))
    small = ImageInfo(Path("s.png"), 300, 200, 8, "PNG")
    whole = memory_needed(small, 2, model, TileOptions(tile=None))
    tiled = memory_needed(small, 2, model, TileOptions(tile=32, overlap=4))
    assert whole > tiled > memory_needed(small, 2) * 0.5
    assert memory_needed(small, 2, model, TileOptions(tile=32, overlap=4, batch_size=8)) > tiled


def test_auto_tile_shares_its_memory_among_the_batch():
    from edsr_tf.inference import as_runner, resolve_tile
    from edsr_tf.models import ModelConfig, build_model

    runner = as_runner(build_model(ModelConfig("edsr", (2,), n_resblocks=4, n_feats=64)), 2)
    one, eight = resolve_tile(runner, "auto", 10, 1), resolve_tile(runner, "auto", 10, 8)
    assert eight < one and (eight + 20) ** 2 * 8 <= (one + 20 + 8) ** 2 * 1.05


@pytest.mark.parametrize("flag,value", [("--batch", "65"), ("--tile", "16385"), ("--tile_overlap", "513")])
def test_tiling_flags_have_upper_bounds(flag, value, capsys):
    from edsr_tf.upscale import main

    with pytest.raises(SystemExit) as e:
        main(["x.png", "--bicubic", "--scale", "2", flag, value])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and f"argument {flag}: must be <= " in err[0]


# ------------------------------------------------------------------ 15: more small ones


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_train_infinite_or_nan_lr_is_one_line_exit_2(tmp_path, value):
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "train.py", f"--out_dir={tmp_path / 'run'}", "--data_source=samples",
                           "--steps=1", f"--lr={value}"], cwd=repo, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith(f"error: flag --lr={value}: --lr must be a finite number > 0"), lines
    assert not (tmp_path / "run").exists()


def test_evaluate_names_every_bad_file_and_a_too_small_hr(tmp_path, capsys):
    """A 6x6 HR at x4 passes the crop (LR 1x1) but leaves nothing once shaved: it is named up
    front with the other bad files, not found mid-run as an anonymous metrics error."""
    from edsr_tf.evaluate import main

    hr = tmp_path / "data" / "Set5" / "HR"
    for name, side in (("a", 40), ("b", 1), ("c", 6), ("d", 30)):
        _png(hr / f"{name}.png", (side, side))
    (hr / "e.png").write_bytes(b"garbage")
    rc = main(["--bicubic", "--scale", "4", "--quiet", "--dataset_dir", str(tmp_path / "data"),
               "--eval_sets", "Set5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and "Traceback" not in "\n".join(err)
    for name, size in (("b", "1x1"), ("c", "6x6")):
        assert f"error: Set5: {hr / (name + '.png')}: HR {size} is too small to score at x4 (at least 20x20" \
               in "\n".join(err), err
    assert any(str(hr / "e.png") in line for line in err)
    assert err[-1] == "error: nothing evaluated: fix or remove these files"


# ------------------------------------------------------------------ 14: a malicious .pt


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_convert_of_a_malicious_pt_gives_our_one_line_not_torchs_advice(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    from edsr_tf import convert

    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    torch.save({"a": _Evil()}, evil)
    rc = convert.main(["--torch_checkpoint", str(evil), "--model", "edsr_baseline", "--out_dir",
                       str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1, err
    assert err[0] == (f"error: {evil}: pickles a Python object (posix.system), not only tensors, so "
                      "torch.load(weights_only=True) refuses it; re-save it with "
                      "torch.save(model.state_dict(), ...)")
    assert "weights_only=False" not in err[0] and not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("alpha", [False, True])
def test_format_keep_writes_a_lossless_webp_losslessly(tmp_path, alpha, capsys):
    from edsr_tf.images import read_image as read
    from edsr_tf.upscale import bicubic_channels, main, webp_is_lossless

    rng = np.random.default_rng(8)
    px = rng.integers(0, 256, (20, 24, 4 if alpha else 3), dtype=np.uint8)
    src = tmp_path / "in.webp"
    Image.fromarray(px).save(src, "WEBP", lossless=True, exact=True)
    lossy = tmp_path / "lossy.webp"
    Image.fromarray(px).save(lossy, "WEBP", quality=80)
    rc = main(["--bicubic", "--scale", "2", "--quiet", "--format", "keep", "--out_dir", str(tmp_path / "o"),
               str(src), str(lossy)])
    assert rc == 0, capsys.readouterr().err
    got = read(tmp_path / "o" / "in_x2_bicubic.webp")
    np.testing.assert_array_equal(got.channels(), bicubic_channels(px[..., :3], 2))
    if alpha:
        np.testing.assert_array_equal(got.alpha, bicubic_channels(px[..., 3], 2))
    assert webp_is_lossless(src) and not webp_is_lossless(lossy)
    assert not webp_is_lossless(tmp_path / "o" / "lossy_x2_bicubic.webp")  # a lossy input stays lossy


# ------------------------------------------------------------------ 10: export into a mount point


@pytest.mark.parametrize("case", ["mount_point", "read_only_parent"])
def test_export_into_a_mount_point_or_under_a_read_only_parent(tmp_path, monkeypatch, case):
    """A container volume cannot be renamed (EBUSY), and a read-only parent takes no hidden
    ``.partial`` sibling: the export is staged inside the folder and swapped in entry by entry;
    the user's files there stay, nothing is left behind."""
    import errno as errno_

    from edsr_tf.export import ExportOptions, common, export_model
    from edsr_tf.models import ModelConfig, build_model

    out = tmp_path / "vol"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "report.md").write_text("an earlier export's report")
    if case == "mount_point":
        real_rename, real_exchange = os.rename, common._renameat2_exchange

        def rename(a, b, *args, **kw):
            if Path(a) == out or Path(b) == out:
                raise OSError(errno_.EBUSY, "Device or resource busy", str(out))
            return real_rename(a, b, *args, **kw)

        def exchange(a, b):
            if Path(a) == out or Path(b) == out:
                raise OSError(errno_.EBUSY, "Device or resource busy", str(out))
            return real_exchange(a, b)

        monkeypatch.setattr(os, "rename", rename)
        monkeypatch.setattr(common, "_renameat2_exchange", exchange)
        monkeypatch.setattr(common.os.path, "ismount", lambda p: Path(p) == out)
    else:
        real_make_dir = common.make_dir

        def make_dir(path):
            if Path(path).parent == tmp_path:
                raise PermissionError(errno_.EACCES, "Permission denied", str(path))
            return real_make_dir(path)

        monkeypatch.setattr(common, "make_dir", make_dir)
    config = ModelConfig("edsr", (2,), n_resblocks=1, n_feats=8)
    photo = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    export_model(build_model(config), config, out,
                 ExportOptions(formats=("tflite",), quantize=("none",), latency_runs=0,
                               verify_images=[("noise", photo)]))
    names = sorted(p.name for p in out.iterdir())
    assert names == ["notes.txt", "report.json", "report.md", "tflite"], names
    assert (out / "notes.txt").read_text() == "mine"
    assert "an earlier" not in (out / "report.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol"]
