"""DALI operators for occlusion and saliency-guided augmentation.

``import dali_ops; dali_ops.load()`` loads the C++/CUDA plugin (built by ``CMakeLists.txt`` through
``pip install -e .``) once; its operators then live under ``nvidia.dali.fn.occlusion``.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

_LIB_NAME = "libdali_occlusion.so"
_BUILD_INFO = "_build_info.txt"
_lock = threading.Lock()
_loaded: Path | None = None


def library_path() -> Path:
    """Path of the plugin shared library beside this file (it may not exist yet)."""
    return Path(__file__).resolve().parent / _LIB_NAME


def build_info() -> dict[str, str]:
    """What the plugin was built against: ``{"dali": version, "cuda": "0"|"1"}``."""
    path = library_path().with_name(_BUILD_INFO)
    if not path.exists():
        return {}
    return dict(line.split("=", 1) for line in path.read_text().split() if "=" in line)


def load() -> Path:
    """Load the plugin into DALI once (idempotent, thread-safe) and return its path.

    Raises ``RuntimeError`` saying what to do when the library is missing or was built against
    another DALI version than the one installed.
    """
    global _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        import nvidia.dali as dali
        from nvidia.dali import plugin_manager

        path = library_path()
        if not path.exists():
            raise RuntimeError(
                f"The dali_ops plugin is not built: {path} does not exist. "
                "Build it with `make build` (or `pip install --no-build-isolation -e .`) "
                "in the repository root.")
        built_for = build_info().get("dali")
        if built_for != dali.__version__:
            raise RuntimeError(
                f"{path} was built for DALI {built_for or 'unknown'} but DALI {dali.__version__} "
                "is installed. Rebuild it with `make build` (or `pip install --no-build-isolation -e .`).")
        plugin_manager.load_library(os.fspath(path))
        _loaded = path
        return path


def has_cuda() -> bool:
    """Whether the built plugin contains the CUDA operators."""
    return build_info().get("cuda") == "1"
