"""The project's build backend: setuptools', with its work folders kept out of the source tree.

setuptools builds in ``build/`` and writes ``edsr_tf.egg-info/`` beside the sources, so
``pip install <clone>`` used to leave an untracked ``build/`` in the clone. Here each hook that
runs setuptools' commands gets an extra configuration file (read from ``$DIST_EXTRA_CONFIG``)
that points ``[build] build_base`` and ``[egg_info] egg_base`` into a temporary folder, deleted
afterwards. Editable installs are setuptools' own: their files must outlive the build.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403 (every hook not wrapped below, as setuptools has it)

_EXTRA_CONFIG = "DIST_EXTRA_CONFIG"


@contextlib.contextmanager
def _work_outside_the_tree() -> Iterator[None]:
    with tempfile.TemporaryDirectory(prefix="edsr-tf-build-") as tmp:
        work = Path(tmp).as_posix()
        config = Path(tmp) / "setup.cfg"
        config.write_text(f"[build]\nbuild_base = {work}/build\n\n[egg_info]\negg_base = {work}\n")
        previous = os.environ.get(_EXTRA_CONFIG)
        os.environ[_EXTRA_CONFIG] = str(config)
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop(_EXTRA_CONFIG, None)
            else:
                os.environ[_EXTRA_CONFIG] = previous


def get_requires_for_build_wheel(config_settings=None):
    with _work_outside_the_tree():  # runs egg_info
        return _setuptools.get_requires_for_build_wheel(config_settings)


def get_requires_for_build_sdist(config_settings=None):
    with _work_outside_the_tree():
        return _setuptools.get_requires_for_build_sdist(config_settings)


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    with _work_outside_the_tree():
        return _setuptools.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    with _work_outside_the_tree():
        return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_sdist(sdist_directory, config_settings=None):
    with _work_outside_the_tree():
        return _setuptools.build_sdist(sdist_directory, config_settings)
