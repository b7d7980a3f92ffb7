"""Issue 23, class 5: what passes the reader's check decodes as the photo. Every image mode a user meets is written,
read by the reader (``read_checked``, the check at every ``verify`` level) and decoded by DALI's CPU decoder as the
graph decodes it (``fn.decoders.image``, ``output_type=RGB``); the oracle is Pillow's view of the file,
``ImageOps.exif_transpose(im).convert("RGB")``. A mode is either refused by the check, naming the file, or decodes
to those pixels with the size the reader reported (the crop windows are drawn on it). Special files (a FIFO, a
device) and oversized files are refused before a byte is read."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import cv2
import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def, types
from PIL import Image, ImageOps

from pipelines.data.file_cache import read_checked
from pipelines.data.imagefiles import BadImageError, max_file_bytes

H, W = 48, 64
YY, XX = np.mgrid[0:H, 0:W]
RGB = Image.fromarray(np.stack([XX * 4, YY * 5, ((XX + YY) * 3) % 256], -1).astype(np.uint8))
RAMP16 = (YY * 1300 + XX * 10).astype(np.uint16)  # a 16-bit grey ramp, well above 255


def _rgba():
    im = RGB.convert("RGBA")
    im.putalpha(Image.fromarray((XX * 4).astype(np.uint8)))
    return im


def _palette(transparency=None):
    im = RGB.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    if transparency is not None:
        im.info["transparency"] = transparency
    return im


def _exif(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _cv2(path, array):
    assert cv2.imwrite(str(path), array)


# name -> writer(path). The modes Pillow opens them in are in the comment where the name does not say it.
CASES = {
    "L.png": lambda p: RGB.convert("L").save(p),
    "L.jpg": lambda p: RGB.convert("L").save(p, quality=95),
    "LA.png": lambda p: RGB.convert("LA").save(p),
    "P.png": lambda p: _palette().save(p),
    "P_transparent.png": lambda p: _palette(0).save(p, transparency=0),
    "P_alpha_table.png": lambda p: _palette(bytes(range(0, 256, 16))).save(p, transparency=bytes(range(0, 256, 16))),
    "RGBA.png": lambda p: _rgba().save(p),
    "CMYK.jpg": lambda p: RGB.convert("CMYK").save(p, quality=95),
    "YCbCr.jpg": lambda p: RGB.convert("YCbCr").save(p, quality=95),  # opens as RGB
    "progressive.jpg": lambda p: RGB.save(p, quality=95, progressive=True),
    "I16.png": lambda p: Image.fromarray(RAMP16).save(p),  # I;16
    "I16B.png": lambda p: Image.frombytes("I;16B", (W, H), RAMP16.astype(">u2").tobytes()).save(p),
    "I16_cv2.png": lambda p: _cv2(p, RAMP16),
    "I16.pgm": lambda p: _cv2(p, RAMP16),  # I
    "I16.tif": lambda p: Image.fromarray(RAMP16).save(p),
    "I32.tif": lambda p: Image.fromarray(RAMP16.astype(np.int32), "I").save(p),
    "F.tif": lambda p: Image.fromarray((YY / H).astype(np.float32), "F").save(p),
    "1.png": lambda p: RGB.convert("1").save(p),
    "1.bmp": lambda p: RGB.convert("1").save(p),
    "1.pbm": lambda p: RGB.convert("1").save(p),
    "1.tif": lambda p: RGB.convert("1").save(p),
    "RGB16.png": lambda p: _cv2(p, (np.asarray(RGB, np.uint16) * 257 + 100)[:, :, ::-1]),  # RGB (8 bits)
    "RGBA16.png": lambda p: _cv2(p, np.dstack([np.asarray(RGB, np.uint16)[:, :, ::-1] * 257, RAMP16])),
    "RGB16.tif": lambda p: _cv2(p, (np.asarray(RGB, np.uint16) * 257)[:, :, ::-1]),
    "L.pgm": lambda p: RGB.convert("L").save(p),
    "RGB.ppm": lambda p: RGB.save(p),
    "RGB.bmp": lambda p: RGB.save(p),
    "RGBA.bmp": lambda p: _rgba().save(p),
    "P.bmp": lambda p: _palette().save(p),
    "L.bmp": lambda p: RGB.convert("L").save(p),
    "RGB.tif": lambda p: RGB.save(p),
    "RGB_jpeg.tif": lambda p: RGB.save(p, compression="jpeg"),
    "RGBA.tif": lambda p: _rgba().save(p),
    "CMYK.tif": lambda p: RGB.convert("CMYK").save(p),
    "L.tif": lambda p: RGB.convert("L").save(p),
    "LA.tif": lambda p: RGB.convert("LA").save(p),
    "P.tif": lambda p: _palette().save(p),
    "YCbCr.tif": lambda p: RGB.convert("YCbCr").save(p),
    "LAB.tif": lambda p: RGB.convert("LAB").save(p),
    "RGB.webp": lambda p: RGB.save(p, lossless=True),
    "RGBA.webp": lambda p: _rgba().save(p, lossless=True),
    "L.webp": lambda p: RGB.convert("L").save(p, lossless=True),  # RGB
    "RGB.jp2": lambda p: RGB.save(p),
    "L.jp2": lambda p: RGB.convert("L").save(p),
    "RGBA.jp2": lambda p: _rgba().save(p),
    "LA.jp2": lambda p: RGB.convert("LA").save(p),
}
# EXIF orientations 1..8 in every format that carries one (a TIFF in its own tag)
for _o in range(1, 9):
    CASES[f"exif{_o}.jpg"] = lambda p, o=_o: RGB.save(p, quality=95, exif=_exif(o))
    CASES[f"exif{_o}.png"] = lambda p, o=_o: RGB.save(p, exif=_exif(o))
    CASES[f"exif{_o}.webp"] = lambda p, o=_o: RGB.save(p, lossless=True, exif=_exif(o))
    CASES[f"exif{_o}.tif"] = lambda p, o=_o: RGB.save(p, tiffinfo={0x0112: o})

#: what a user must be able to train on (the rest may be refused, but only by the check, naming the file)
MUST_PASS = {"L.png", "L.jpg", "LA.png", "P.png", "P_transparent.png", "RGBA.png", "CMYK.jpg", "YCbCr.jpg",
             "progressive.jpg", "1.png", "RGB16.png", "RGB.bmp", "RGB.tif", "RGB.webp", "RGBA.webp"} | {
             f"exif{o}.{e}" for o in range(1, 9) for e in ("jpg", "png", "webp", "tif")}


@pipeline_def(batch_size=1, num_threads=1, device_id=None, prefetch_queue_depth=1, exec_async=False,
              exec_pipelined=False)
def _decode():
    return fn.decoders.image(fn.external_source(name="encoded"), device="cpu", output_type=types.RGB)


def decode(data: bytes) -> np.ndarray:
    """``data`` decoded by DALI's CPU decoder as the graph decodes it (a fresh pipeline: an error ends one)."""
    pipe = _decode()
    pipe.build()
    pipe.feed_input("encoded", [np.frombuffer(data, np.uint8)])
    (out,) = pipe.run()
    return np.asarray(out[0])


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_mode_decodes_as_pillow_shows_it_or_is_refused_naming_the_file(tmp_path, name):
    path = tmp_path / name
    CASES[name](path)
    shown = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"), np.int16)
    outcomes = []
    for verify in ("full", "header", "none"):
        try:
            outcomes.append(read_checked(str(path), 0, None, verify))
        except BadImageError as exc:
            assert str(path) in str(exc)
            outcomes.append(None)
    assert all(o is None for o in outcomes) or all(o is not None for o in outcomes), "one rule at every level"
    if outcomes[0] is None:
        assert name not in MUST_PASS
        return
    data, h, w = outcomes[0]
    decoded = decode(data).astype(np.int16)
    assert decoded.shape == shown.shape == (h, w, 3)  # the reader's size is the decoded one
    assert np.abs(decoded - shown).max() <= 1  # DALI's and Pillow's decoders round alike here


def _in_thread(fn, timeout):
    """``fn()``'s exception (or None) if it ends within ``timeout`` s; fails the test if it hangs."""
    box = {}

    def run():
        try:
            fn()
            box["exc"] = None
        except BaseException as exc:  # noqa: BLE001 -- handed back to the test
            box["exc"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert "exc" in box, f"still blocked after {timeout} s"
    return box["exc"]


@pytest.mark.parametrize("verify", ["full", "none"])
def test_a_fifo_named_jpg_is_refused_without_blocking(tmp_path, verify):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    try:
        exc = _in_thread(lambda: read_checked(str(fifo), 0, None, verify), 10)
    finally:
        try:  # lets a reader stuck in open() (the old behaviour) go; ENXIO when none is
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    assert isinstance(exc, BadImageError) and "pipe.jpg: not a regular file (a FIFO)" in str(exc)


def test_a_link_to_dev_zero_is_refused_before_reading(tmp_path):
    link = tmp_path / "zero.jpg"
    os.symlink("/dev/zero", link)
    # in a child under a 1 GB address-space limit: reading first (the old reader) ends in a MemoryError, not here
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            "from pipelines.data.file_cache import read_checked\n"
            "from pipelines.data.imagefiles import BadImageError\n"
            "try:\n"
            f"    read_checked({str(link)!r}, 0, None, 'none')\n"
            "except BadImageError as exc:\n"
            "    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert f"{link}: not a regular file (a character device)" in out.stdout, out.stderr[-2000:]


def test_a_file_larger_than_any_image_within_the_pixel_limit_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    big = tmp_path / "big.jpg"
    with open(big, "wb") as f:
        f.truncate(max_file_bytes() + 1)  # sparse: nothing is written
    with pytest.raises(BadImageError, match=r"big\.jpg: \d+ bytes, larger than any image within the pixel limit"):
        read_checked(str(big), 0, None, "none")
