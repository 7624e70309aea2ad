"""``upscale``'s int8 output name, and its progress bars kept apart from the per-file lines."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np

from edsr_tf import upscale
from edsr_tf.images import write_image

REPO = Path(__file__).resolve().parents[1]
PER_FILE = re.compile(r"^\S+\.png -> \S+_x2_bicubic\.png \(8x6, \d+\.\ds\)$")


def _images(folder: Path, n: int = 3) -> list[str]:
    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        write_image(folder / f"im{i}.png", rng.integers(0, 256, (3, 4, 3), dtype=np.uint8))
        names.append(str(folder / f"im{i}.png"))
    return names


def test_int8_outputs_sit_beside_the_float_one(tmp_path):
    """int8 computes another image (integer arithmetic): its own name. bf16 (and auto) is the float
    image to 0.01 dB: the plain name, so a default that picks it per machine names alike."""
    src = tmp_path / "a.png"
    names = {p: upscale.output_path(tmp_path, src, 2, precision=p).name for p in ("fp32", "bf16", "auto", "int8")}
    assert names == {"fp32": "a_x2.png", "bf16": "a_x2.png", "auto": "a_x2.png", "int8": "a_x2_int8.png"}
    assert upscale.output_path(tmp_path, src, 2, bicubic=True).name == "a_x2_bicubic.png"
    write_image(src, np.zeros((4, 4, 3), np.uint8))
    write_image(tmp_path / "a_x2.png", np.zeros((8, 8, 3), np.uint8))  # an earlier fp32 run's output
    plan = upscale.make_plan([src], tmp_path, 2, precision="int8")
    assert [dst.name for _, _, dst in plan.jobs] == ["a_x2_int8.png"] and not plan.existing


def test_the_cli_names_outputs_by_precision(tmp_path, monkeypatch, capsys):
    seen = {}

    def plan(*args, **kwargs):
        seen.update(kwargs)
        return upscale.Plan()

    monkeypatch.setattr(upscale, "make_plan", plan)
    (src,) = _images(tmp_path, 1)
    assert upscale.main([src, "--precision", "int8", "--out_dir", str(tmp_path / "o"), "--quiet"]) == 0
    assert seen["precision"] == "int8"


def test_per_file_lines_never_run_into_a_progress_bar(tmp_path):
    """stdout and stderr in one pipe (`2>&1 | tee log`): whole lines, no bar redraws (\\r)."""
    files = _images(tmp_path)
    r = subprocess.run([sys.executable, "-m", "edsr_tf.upscale", *files, "--bicubic", "--scale=2",
                        "--out_dir", str(tmp_path / "o")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       cwd=REPO, timeout=120)
    text = r.stdout.decode()
    assert r.returncode == 0, text
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 3 and all(PER_FILE.match(ln) for ln in lines), lines


def test_a_terminal_still_gets_the_bar(tmp_path):
    """stderr on a terminal: the bar is drawn there; the per-file lines (stdout, a file) stay whole."""
    files = _images(tmp_path)
    main, sub = pty.openpty()
    fcntl.ioctl(sub, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))  # a 100-column terminal
    try:
        r = subprocess.run([sys.executable, "-m", "edsr_tf.upscale", *files, "--bicubic", "--scale=2",
                            "--out_dir", str(tmp_path / "o")], stdout=subprocess.PIPE, stderr=sub,
                           cwd=REPO, timeout=120)
        os.close(sub)
        drawn = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(main)
    assert r.returncode == 0
    assert "3/3" in drawn.decode(errors="replace")  # the bar, on the terminal
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 3 and all(PER_FILE.match(ln) for ln in lines), lines
