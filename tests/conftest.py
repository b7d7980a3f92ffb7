"""Shared fixtures: a folder of good and bad image files."""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

# The reader's file records (pipelines.data.file_cache) go to a throw-away folder, not ~/.cache;
# subprocesses started by the tests inherit it.
os.environ["DALI_OCCLUSION_CACHE"] = tempfile.mkdtemp(prefix="dali-occlusion-verified-")


def _photo(rng, h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // max(w, 1), yy * 255 // max(h, 1), ((xx + yy) * 5) % 256], -1)
    return np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


@pytest.fixture(scope="session")
def bad_images_dir(tmp_path_factory):
    """ImageFolder with two classes of good JPEGs plus one file of every troublesome kind.

    Returns ``(root, files)`` where ``files`` maps a kind to its path. Unreadable kinds:
    ``corrupt``, ``truncated``, ``empty``, ``text``; readable odd kinds: ``gray``, ``cmyk``,
    ``rgba_png``, ``palette_png``, ``tiny``, ``exif_rotated``.
    """
    root = tmp_path_factory.mktemp("badimages")
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir()
        for i in range(4):
            Image.fromarray(_photo(rng, 120, 160)).save(root / c / f"good{i}.jpg", quality=90)
    good = _jpeg(Image.fromarray(_photo(rng, 150, 200)))
    files = {
        "corrupt": (root / "a" / "corrupt.jpg", good[:2] + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()),
        "truncated": (root / "a" / "truncated.jpg", good[: len(good) // 2]),
        "empty": (root / "a" / "empty.jpg", b""),
        "text": (root / "a" / "notes.jpg", b"this is not an image, just text\n" * 20),
    }
    for path, data in files.values():
        path.write_bytes(data)
    out = {k: v[0] for k, v in files.items()}
    photo = Image.fromarray(_photo(rng, 100, 140))
    out["gray"] = root / "b" / "gray.jpg"
    photo.convert("L").save(out["gray"], quality=90)
    out["cmyk"] = root / "b" / "cmyk.jpg"
    photo.convert("CMYK").save(out["cmyk"], quality=90)
    out["rgba_png"] = root / "b" / "rgba.png"
    photo.convert("RGBA").save(out["rgba_png"])
    out["palette_png"] = root / "b" / "palette.png"
    photo.convert("P", palette=Image.ADAPTIVE).save(out["palette_png"])
    out["tiny"] = root / "b" / "tiny.jpg"
    Image.fromarray(_photo(rng, 15, 20)).save(out["tiny"], quality=90)
    out["exif_rotated"] = root / "b" / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_photo(rng, 60, 180)).save(out["exif_rotated"], quality=90, exif=exif)
    return root, out


UNREADABLE = ("corrupt", "truncated", "empty", "text")
READABLE_ODD = ("gray", "cmyk", "rgba_png", "palette_png", "tiny", "exif_rotated")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A small deterministic demo set for loader tests: 3 classes, 64-120 px JPEGs.

    Returns the dataset root: ``root/train/<class>/`` holds 8 images per class and
    ``root/val/<class>/`` 2 per class (classes ``00_disc``, ``01_square``, ``02_triangle``).
    """
    from pipelines.data.demo_data import ensure_demo_data

    return ensure_demo_data(tmp_path_factory.mktemp("tiny") / "data", train_per_class=8, val_per_class=2,
                            num_classes=3, width_range=(64, 120), height_range=(64, 120), workers=1)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """The full-size demo generator with few images: 10 classes, 4 train + 2 val per class.

    Returns the dataset root (``root/train/<class>/``, ``root/val/<class>/``).
    """
    from pipelines.data.demo_data import ensure_demo_data

    return ensure_demo_data(tmp_path_factory.mktemp("demo") / "data", train_per_class=4, val_per_class=2)


@pytest.fixture(scope="session")
def structured_root(tmp_path_factory):
    """Gradients plus coloured ellipses: a wrong crop or flip changes the pixels a lot."""
    root = tmp_path_factory.mktemp("structured")
    rng = np.random.default_rng(1)
    for c in range(3):
        (root / f"class{c}").mkdir()
        for i in range(7):
            h, w = int(rng.integers(90, 220)), int(rng.integers(90, 220))
            yy, xx = np.mgrid[0:h, 0:w]
            a = np.stack([xx * 255 // w, yy * 255 // h, ((xx + yy) * 3) % 256], -1).astype(np.uint8)
            im = Image.fromarray(a)
            draw = ImageDraw.Draw(im)
            for _ in range(4):
                x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
                draw.ellipse([x0, y0, x0 + int(rng.integers(10, 60)), y0 + int(rng.integers(10, 60))],
                             fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
            im.save(root / f"class{c}" / f"{i:02d}.jpg", quality=95)
    return root


@pytest.fixture()
def flat_root(tmp_path):
    """Two classes of 8 JPEGs each (40x50), sample i = class i // 8, file i % 8 in sorted order."""
    from helpers import photo_folder

    return photo_folder(tmp_path / "ds", 8)


def cuda_devices() -> int:
    """CUDA devices DALI sees, 0 when there is none or the plugin was built without CUDA."""
    try:
        import dali_ops
        from nvidia.dali import backend

        return backend.GetCUDADeviceCount() if dali_ops.has_cuda() else 0
    except Exception:  # noqa: BLE001 - no driver, no GPU: nothing to test
        return 0


def torch_devices() -> list[str]:
    """The devices a torch rule is checked on: the CPU, and CUDA where torch sees a GPU."""
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


#: GPU-only tests: they run where a GPU is lent and are skipped (and reported as such) elsewhere.
requires_gpu = pytest.mark.skipif(cuda_devices() == 0, reason="needs a CUDA device and a plugin built with CUDA")


#: the plugin's C++ sources; includes name their folder from here ("common/boxes.h")
CSRC = Path(__file__).resolve().parents[1] / "dali_ops" / "csrc"
#: the flags CMakeLists.txt compiles the numerics-sensitive CPU kernels with (no FMA contraction)
CXXFLAGS = ["-std=c++20", "-O1", "-ffp-contract=off"]


def build_shared(tmp_dir, name: str, sources, include_dirs=()):
    """``sources`` compiled with g++ (:data:`CXXFLAGS`, include path ``dali_ops/csrc`` and ``include_dirs``) into
    ``tmp_dir/<name>.so`` and loaded with ctypes; the test is skipped where there is no g++."""
    import ctypes
    import shutil
    import subprocess

    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip(f"needs g++ to build {name}")
    so = Path(tmp_dir) / f"{name}.so"
    subprocess.run([cxx, *CXXFLAGS, "-shared", "-fPIC", *[f"-I{d}" for d in (*include_dirs, CSRC)],
                    *map(str, sources), "-o", str(so)], check=True)
    return ctypes.CDLL(str(so))


def build_emulation(tmp_dir, name: str):
    """``tests/cuda_emulation/<name>.cc`` (the unchanged ``*_gpu.cuh`` kernels, each block run as host threads)
    compiled with g++ into a shared library and loaded; the test is skipped where there is no g++."""
    emu = Path(__file__).resolve().parent / "cuda_emulation"
    return build_shared(tmp_dir, name, [emu / f"{name}.cc"], [emu])


@pytest.fixture(scope="module")
def box_search_emu(tmp_path_factory):
    """The GPU ``box_search`` kernel compiled for the host (tests/cuda_emulation), as a ctypes library."""
    import ctypes

    from helpers import Sample

    lib = build_emulation(tmp_path_factory.mktemp("emu"), "box_search_emu")
    lib.emu_box_search.argtypes = [ctypes.POINTER(Sample), ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                   ctypes.c_int, ctypes.c_double, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    return lib
