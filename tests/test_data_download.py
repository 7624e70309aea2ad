"""datasets/_download.py: resume with HTTP Range, checksum checks (local server, no network)."""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import os
import threading
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "datasets" / "_download.py"
_spec = importlib.util.spec_from_file_location("edsr_datasets_download", _PATH)
dl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dl)

DATA = os.urandom(2 * 2**20 + 123)


@pytest.fixture
def server():
    ranges = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            header = self.headers.get("Range")
            start = int(header.split("=")[1].split("-")[0]) if header else 0
            ranges.append(start)
            self.send_response(206 if header else 200)
            self.send_header("Content-Length", str(len(DATA) - start))
            self.end_headers()
            self.wfile.write(DATA[start:])

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}/file.zip", ranges
    srv.shutdown()
    srv.server_close()


def test_resume_and_verify(tmp_path, server):
    url, ranges = server
    sha = hashlib.sha256(DATA).hexdigest()
    (tmp_path / "file.zip.part").write_bytes(DATA[:1_000_000])
    out = dl.fetch(url, tmp_path / "file.zip", size=len(DATA), sha256=sha)
    assert out.read_bytes() == DATA and ranges == [1_000_000]
    assert not (tmp_path / "file.zip.part").exists()
    dl.fetch(url, tmp_path / "file.zip", size=len(DATA), sha256=sha)  # verified: no request
    assert ranges == [1_000_000]


def test_checksum_mismatch_removes_partial_file(tmp_path, server):
    url, _ = server
    (tmp_path / "bad.zip.part").write_bytes(b"not the start of the file")
    with pytest.raises(dl.DownloadError, match="checksum mismatch"):
        dl.fetch(url, tmp_path / "bad.zip", size=len(DATA), sha256=hashlib.sha256(DATA).hexdigest())
    assert not (tmp_path / "bad.zip.part").exists() and not (tmp_path / "bad.zip").exists()


def test_unreachable_url_names_it(tmp_path):
    with pytest.raises(dl.DownloadError, match=r"http://127\.0\.0\.1:9/x\.zip failed.*run the same command"):
        dl.fetch("http://127.0.0.1:9/x.zip", tmp_path / "x.zip")


def test_extract_refuses_paths_outside(tmp_path):
    import zipfile

    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../outside.txt", "x")
    with pytest.raises(dl.DownloadError, match="outside"):
        dl.extract(archive, tmp_path / "out")
    assert not (tmp_path / "outside.txt").exists()
