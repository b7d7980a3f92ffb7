"""The JPEG entropy-data walk (issue 20): it passes every valid JPEG the encoders here write, refuses corrupt scan data
that decoders turn grey or garbled without an error, and refuses whatever Pillow's strict decode refuses.

The oracle of "corrupt" is libjpeg itself, through the decoders built on it: Pillow (strict, truncation refused) and
nvImageCodec's CPU decoder (the one DALI's CPU decoder uses). Neither reports libjpeg's warnings, which is the point:
the walk must refuse files they decode."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from conftest import UNREADABLE
from helpers import grey_scan_jpeg, photo
from pipelines.data.imagefiles import BadImageError, check_image
from pipelines.data.jpeg_scan import scan_error, walk_scans


def jpeg(img, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def pillow_refuses(data: bytes) -> bool:
    try:
        img = Image.open(io.BytesIO(data))
        img.draft(img.mode, (max(1, img.size[0] // 8), max(1, img.size[1] // 8)))
        saved, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
        try:
            img.load()
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = saved
        return False
    except Exception:  # noqa: BLE001 - any failure is a refusal
        return True


def nvimgcodec_decoder():
    from nvidia import nvimgcodec as nv  # DALI's own decoder library (a dependency of nvidia-dali)

    dec = nv.Decoder(device_id=nv.NVIMGCODEC_DEVICE_CPU_ONLY, backends=[nv.Backend(nv.CPU_ONLY)])

    def refuses(data: bytes) -> bool:
        try:
            return dec.decode(data) is None
        except Exception:  # noqa: BLE001
            return True

    return refuses


VALID = {
    **{f"pillow {mode} q{q} sub{sub}{' progressive' if prog else ''}{f' rst{rst}' if rst else ''} {h}x{w}":
       jpeg(photo(h, w, mode=mode), quality=q, progressive=prog, **({} if mode == "L" else {"subsampling": sub}),
            **({"restart_marker_blocks": rst} if rst else {}))
       for (h, w) in ((1, 1), (9, 17), (16, 16), (231, 97), (8, 1500))
       for mode in ("RGB", "L", "CMYK") for q in (5, 90) for sub in (0, 2) for prog in (False, True)
       for rst in (0, 3) if not (mode == "L" and sub)},
    **{f"opencv {params} {h}x{w}": cv2.imencode(".jpg", np.asarray(photo(h, w)), params)[1].tobytes()
       for (h, w) in ((1, 1), (33, 47), (375, 500))
       for params in ([cv2.IMWRITE_JPEG_PROGRESSIVE, 1], [cv2.IMWRITE_JPEG_RST_INTERVAL, 3],
                      [cv2.IMWRITE_JPEG_OPTIMIZE, 1, cv2.IMWRITE_JPEG_PROGRESSIVE, 1, cv2.IMWRITE_JPEG_RST_INTERVAL, 2],
                      [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_411],
                      [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_440])},
    "pillow optimized tables": jpeg(photo(120, 160), quality=75, optimize=True),
    "pillow with exif": jpeg(photo(60, 80), exif=Image.Exif()),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_every_valid_jpeg_is_walked_and_passes(name):
    """Baseline, progressive, restart intervals, 4:4:4 / 4:2:0 / 4:1:1 / 4:4:0, grey and CMYK, optimised tables,
    one pixel to 1500 wide, from Pillow's and OpenCV's libjpeg: walked (nothing left to a full decode) and clean.
    (Run once over 1,766 such files and the system's JPEGs while the walk was written: no false refusal.)"""
    assert walk_scans(VALID[name]) == (True, None)


def test_the_issues_grey_jpeg_is_refused_where_decoders_accept_it(tmp_path):
    """The EOI in the scan: Pillow's strict decode and nvImageCodec's decode both return an image; the walk names
    the marker, and check_image (the reader's full check) refuses the file naming it."""
    data = grey_scan_jpeg()
    assert not pillow_refuses(data)
    assert not nvimgcodec_decoder()(data)
    assert "a marker where the blocks still need data" in scan_error(data)
    path = tmp_path / "grey.jpg"
    path.write_bytes(data)
    with pytest.raises(BadImageError, match=r"grey\.jpg: corrupt scan data"):
        check_image(path)
    check_image(path, full=False)  # the header is intact


def test_random_overwrites_walk_refuses_what_pillow_refuses_and_more():
    """Random overwrites (1-400 bytes) of baseline, progressive and restart-interval JPEGs, in the scan data or
    anywhere: every file Pillow's strict decode refuses, the walk refuses too (so check_image decodes a walked JPEG
    no more); the walk refuses nearly all scan-data overwrites, most of which Pillow decodes; nvImageCodec refuses
    fewer than Pillow (it is no better checker: it decodes what libjpeg warns about)."""
    nv_refuses = nvimgcodec_decoder()
    rng = np.random.default_rng(5)
    counts = dict(files=0, scan=0, walk_scan=0, walk_only=0, nv=0, pillow=0)
    for kw in (dict(), dict(progressive=True), dict(restart_marker_blocks=4)):
        good = jpeg(photo(375, 500, seed=1), quality=90, **kw)
        sos = good.find(b"\xff\xda")
        for t in range(30):
            data = bytearray(good)
            in_scan = t % 3 != 0
            at = int(rng.integers(sos + 20, len(data) - 200)) if in_scan else int(rng.integers(2, len(data) - 50))
            length = min(int(rng.integers(1, 400)), len(data) - at)
            data[at:at + length] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
            data = bytes(data)
            if data == good:
                continue
            walk, pillow, nv = scan_error(data) is not None, pillow_refuses(data), nv_refuses(data)
            assert walk or not pillow, f"Pillow refuses an overwrite at {at} that the walk passes ({kw})"
            counts["files"] += 1
            counts["scan"] += in_scan
            counts["walk_scan"] += walk and in_scan
            counts["walk_only"] += walk and not pillow
            counts["pillow"] += pillow
            counts["nv"] += nv
            assert not nv or pillow, f"nvImageCodec refuses an overwrite at {at} that Pillow decodes ({kw})"
    assert counts["walk_scan"] >= 0.95 * counts["scan"], counts
    assert counts["walk_only"] >= 0.2 * counts["files"], counts
    assert counts["nv"] < counts["pillow"], counts


@pytest.mark.parametrize("cut", [0.3, 0.9, 0.999])
def test_truncated_jpegs_are_refused(cut):
    for kw in (dict(), dict(progressive=True)):
        data = jpeg(photo(120, 160), quality=90, **kw)
        assert scan_error(data[:int(len(data) * cut)]) is not None


def test_bad_files_of_the_fixture(bad_images_dir):
    """The fixture's unreadable kinds are still refused by check_image (the walk leaves what it cannot parse to
    Pillow)."""
    _, files = bad_images_dir
    for kind in UNREADABLE:
        with pytest.raises(BadImageError):
            check_image(files[kind])


def test_a_walk_the_file_does_not_allow_is_left_to_the_decoder():
    """An arithmetic-coded frame (SOF9) and a non-JPEG are not walked: check_image decodes them instead."""
    data = bytearray(jpeg(photo(16, 16), quality=90))
    sof = data.find(b"\xff\xc0")
    data[sof + 1] = 0xC9
    assert walk_scans(bytes(data)) == (False, None)
    assert walk_scans(b"not a jpeg at all") == (False, None)
