"""Fine-grained saliency (SaliencyMix's saliency) against OpenCV contrib, the oracle.

``cv2.saliency.StaticSaliencyFineGrained`` takes BGR; ours takes RGB: both are given the same image
in their own channel order. Images are the generated demo photographs (objects on cluttered
backgrounds, JPEG-compressed), resized to several sizes, one of them above 65k pixels where the
float32 integral image starts to round.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

cv2 = pytest.importorskip("cv2", reason="opencv-contrib-python-headless is a test dependency (make test installs it)")

from kernels.saliency import fine_grained  # noqa: E402

SIZES = [(224, 224), (193, 257), (64, 80), (17, 23), (375, 500)]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from pipelines.demo_data import ensure_demo_data

    root = ensure_demo_data(tmp_path_factory.mktemp("demo"), train_per_class=1, val_per_class=0, num_classes=4)
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted((root / "train").rglob("*.jpg"))]


def opencv_saliency(rgb):
    ok, sal = cv2.saliency.StaticSaliencyFineGrained_create().computeSaliency(np.ascontiguousarray(rgb[..., ::-1]))
    assert ok
    return sal


def resized(rgb, h, w):
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))


def assert_matches_opencv(ours, ref):
    assert ours.shape == ref.shape and ours.dtype == np.float32
    assert ours.min() >= 0.0 and ours.max() <= 1.0
    assert np.corrcoef(ours.ravel(), ref.ravel())[0, 1] >= 0.99
    assert np.abs(ours - ref).max() <= 0.02
    py, px = np.unravel_index(np.argmax(ours), ours.shape)
    ry, rx = np.unravel_index(np.argmax(ref), ref.shape)
    assert max(abs(py - ry), abs(px - rx)) <= 2


@pytest.mark.parametrize("size", SIZES)
def test_kernel_matches_opencv(photos, size):
    for rgb in photos:
        img = resized(rgb, *size)
        ours, ref = fine_grained(img), opencv_saliency(img)
        assert_matches_opencv(ours, ref)
        # The port is exact, not just close: OpenCV's steps reproduced in the same arithmetic.
        assert np.array_equal(ours, ref)


def test_kernel_batch_and_list_forms_agree(photos):
    imgs = [resized(p, 96, 128) for p in photos]
    batch = fine_grained(np.stack(imgs))
    listed = fine_grained(imgs)
    assert all(np.array_equal(a, b) for a, b in zip(batch, listed))


def test_reduced_working_resolution_stays_close(photos):
    img = resized(photos[0], 375, 500)
    ref = opencv_saliency(img)
    small = fine_grained(img, max_side=250)
    assert small.shape == ref.shape
    assert np.corrcoef(small.ravel(), ref.ravel())[0, 1] > 0.8


def run_op(images, **kw):
    import dali_ops
    from nvidia.dali import fn, pipeline_def

    dali_ops.load()

    @pipeline_def(batch_size=len(images), num_threads=2, device_id=None)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout="HWC")
        return fn.occlusion.fine_grained_saliency(x, **kw)

    p = pipe()
    p.build()
    (out,) = p.run()
    return [np.array(out[i]) for i in range(len(images))]


def test_dali_cpu_operator_matches_opencv_and_the_kernel(photos):
    imgs = [resized(p, *size) for p, size in zip(photos * 2, SIZES * 2)]
    for img, ours in zip(imgs, run_op(imgs)):
        ref = opencv_saliency(img)
        assert_matches_opencv(ours, ref)
        assert np.array_equal(ours, fine_grained(img))


def test_dali_operator_reduced_resolution_equals_the_kernel(photos):
    imgs = [resized(p, 300, 400) for p in photos]
    for img, ours in zip(imgs, run_op(imgs, max_side=200)):
        assert np.allclose(ours, fine_grained(img, max_side=200), atol=1e-6)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((8, 8, 4), np.uint8), "must have 3 channels"),
    (np.zeros((8, 8, 3), np.float32), "must be uint8"),
])
def test_dali_operator_rejects_bad_input(bad, match):
    with pytest.raises(RuntimeError, match=match):
        run_op([bad])


@pytest.mark.parametrize("bad, err", [(np.zeros((8, 8, 4), np.uint8), ValueError),
                                      (np.zeros((8, 8, 3), np.float32), TypeError)])
def test_kernel_rejects_bad_input(bad, err):
    with pytest.raises(err, match="fine_grained"):
        fine_grained(bad)
