"""Fine-grained saliency (SaliencyMix's saliency) against OpenCV contrib, the oracle.

``cv2.saliency.StaticSaliencyFineGrained`` takes BGR; ours takes RGB: both are given the same image
in their own channel order. Images are the generated demo photographs (objects on cluttered
backgrounds, JPEG-compressed), resized to several sizes, one of them above 65k pixels where the
float32 integral image starts to round.
"""
from __future__ import annotations

import cv2  # opencv-contrib-python-headless, a test dependency (make test installs it)
import numpy as np
import pytest
from PIL import Image

from conftest import requires_gpu
from kernels.saliency import fine_grained
from oracles_saliency import fine_grained_float

SIZES = [(224, 224), (193, 257), (64, 80), (17, 23), (375, 500)]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from pipelines.data.demo_data import ensure_demo_data

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


def run_op(images, layout="HWC", **kw):
    import dali_ops
    from nvidia.dali import fn, pipeline_def

    dali_ops.load()

    @pipeline_def(batch_size=len(images), num_threads=2, device_id=None)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout=layout)
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


def test_mirror_argument_is_the_saliency_of_the_flipped_image(photos):
    """``mirror`` (a per-sample argument input) = OpenCV's saliency of the horizontally flipped image."""
    import dali_ops
    from nvidia.dali import fn, pipeline_def

    dali_ops.load()
    imgs = [resized(photos[0], 61, 83), resized(photos[1 % len(photos)], 96, 128), resized(photos[0], 300, 400)]
    flags = [np.array(1, np.int32), np.array(0, np.int32), np.array(1, np.int32)]
    for max_side in (0, 200):
        @pipeline_def(batch_size=3, num_threads=2, device_id=None)
        def pipe():
            x = fn.external_source(source=lambda: imgs, batch=True, layout="HWC")
            m = fn.external_source(source=lambda: flags, batch=True)
            return fn.occlusion.fine_grained_saliency(x, mirror=m, max_side=max_side)

        p = pipe()
        p.build()
        (out,) = p.run()
        for img, flag, got in zip(imgs, flags, out):
            seen = img[:, ::-1] if flag else img
            if max_side == 0:
                assert np.array_equal(np.array(got), opencv_saliency(np.ascontiguousarray(seen)))
            else:
                assert np.array_equal(np.array(got), fine_grained(np.ascontiguousarray(seen), max_side=max_side))


def test_dali_operator_reduced_resolution_equals_the_kernel(photos):
    imgs = [resized(p, 300, 400) for p in photos]
    for img, ours in zip(imgs, run_op(imgs, max_side=200)):
        assert np.allclose(ours, fine_grained(img, max_side=200), atol=1e-6)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((8, 8, 4), np.uint8), "must have 3 channels"),
    (np.zeros((8, 8, 3), np.int16), "must be uint8"),
])
def test_dali_operator_rejects_bad_input(bad, match):
    with pytest.raises(RuntimeError, match=match):
        run_op([bad])


@pytest.mark.parametrize("bad, err", [(np.zeros((8, 8, 4), np.uint8), ValueError),
                                      (np.zeros((8, 8, 3), np.float32), TypeError)])
def test_kernel_rejects_bad_input(bad, err):
    with pytest.raises(err, match="fine_grained"):
        fine_grained(bad)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (9, 1), (2, 2), (3, 5), (12, 13)])
def test_tiny_images_match_opencv(photos, shape):
    # Border cases: reflect-101 on 1-pixel sides, a 0/0 surround mean on 1x1, clamped corners everywhere.
    img = resized(photos[0], *shape)
    ref = opencv_saliency(img)
    assert np.array_equal(fine_grained(img), ref)
    assert np.array_equal(run_op([img])[0], ref)


def test_constant_image_is_zero_like_opencv():
    img = np.full((40, 60, 3), 77, np.uint8)
    ref = opencv_saliency(img)
    assert not ref.any()
    assert not fine_grained(img).any()
    assert not run_op([img])[0].any()


def test_max_side_at_or_above_the_image_size_is_exact(photos):
    img = resized(photos[1], 120, 160)
    ref = opencv_saliency(img)
    assert np.array_equal(fine_grained(img, max_side=160), ref)
    (ours,) = run_op([img], max_side=500)
    assert np.array_equal(ours, ref)


def test_dali_operator_reduced_resolution_is_bit_exact_with_the_kernel(photos):
    # Integer box downsampling and fixed-point bilinear upsampling: no float tolerance needed.
    imgs = [resized(p, *s) for p, s in zip(photos, [(301, 407), (500, 120), (90, 700), (257, 193)])]
    for img, ours in zip(imgs, run_op(imgs, max_side=97)):
        assert ours.shape == img.shape[:2] and ours.dtype == np.float32
        assert np.array_equal(ours, fine_grained(img, max_side=97))


def test_dali_operator_empty_sample_gives_empty_map(photos):
    imgs = [resized(photos[0], 32, 48), np.zeros((0, 5, 3), np.uint8)]
    out = run_op(imgs)
    assert out[1].shape == (0, 5)
    assert np.array_equal(out[0], opencv_saliency(imgs[0]))


@pytest.mark.parametrize("bad, layout, match", [
    (np.zeros((8, 8), np.uint8), None, "must have 3 dimensions"),
    (np.zeros((3, 8, 8), np.uint8), "CHW", 'layout "HWC"'),
])
def test_dali_operator_rejects_wrong_ndim_or_layout(bad, layout, match):
    with pytest.raises(RuntimeError, match=match):
        run_op([bad], layout=layout)


def test_negative_max_side_is_rejected():
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(RuntimeError, match="max_side"):
        run_op([img], max_side=-1)
    with pytest.raises(ValueError, match="max_side"):
        fine_grained(img, max_side=-1)


@requires_gpu
@pytest.mark.parametrize("max_side", [0, 97])
def test_dali_gpu_operator_equals_the_cpu_operator(photos, max_side):
    import dali_ops
    from nvidia.dali import fn, pipeline_def

    dali_ops.load()
    imgs = [resized(p, *s) for p, s in zip(photos * 2, SIZES * 2)] + [resized(photos[0], 1, 1)]

    @pipeline_def(batch_size=len(imgs), num_threads=2, device_id=0)
    def pipe():
        x = fn.external_source(source=lambda: imgs, batch=True, layout="HWC")
        return fn.occlusion.fine_grained_saliency(x.gpu(), max_side=max_side)

    p = pipe()
    p.build()
    (out,) = p.run()
    out = out.as_cpu()
    for i, (img, cpu) in enumerate(zip(imgs, run_op(imgs, max_side=max_side))):
        assert np.array_equal(np.array(out[i]), cpu)


# ------------------------------------------------------------------------ float32 input (SaliencyMix official)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
# widths 1..39 cover every rounding case of OpenCV's float gray conversion (w % 8, the 4-pixel block) and of
# its integral's 8-column blocks; 224 is the training size
FLOAT_SIZES = [(224, 224), (17, 23), (1, 1), (1, 7), (9, 1), (2, 2), (61, 83), (100, 101), (7, 13), (224, 229),
               (5, 12), (3, 31), (40, 36), (12, 39), (33, 20), (8, 14)]


def normalised_images(rng, sizes, photos=None):
    """What the official code hands OpenCV: (u8 / 255 - mean) / std as float32 HWC, RGB order (random pixels,
    blocky random pixels, and photographs when given)."""
    out = []
    for k, (h, w) in enumerate(sizes):
        if photos is not None and k % 3 == 2:
            u8 = resized(photos[k % len(photos)], h, w)
        elif k % 3 == 1:
            u8 = np.repeat(np.repeat(rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8), 4, 0), 4, 1)
            u8 = u8[:h, :w]
        else:
            u8 = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        out.append(np.ascontiguousarray(((u8.astype(np.float32) / np.float32(255) - IMAGENET_MEAN) / IMAGENET_STD)
                                        .astype(np.float32)))
    return out


def opencv_float_saliency(img):
    """OpenCV on the float32 array as it is (the official ``saliency_bbox``: no conversion, no channel swap)."""
    ok, sal = cv2.saliency.StaticSaliencyFineGrained_create().computeSaliency(img)
    assert ok
    return sal


def test_float_oracle_matches_opencv_bit_for_bit(photos):
    rng = np.random.default_rng(0)
    imgs = normalised_images(rng, FLOAT_SIZES * 3, photos)
    imgs += normalised_images(rng, [(int(h), int(w)) for h, w in rng.integers(1, 70, (30, 2))])
    # far from ImageNet values: huge responses (above 2**31) and tiny ones, a constant image
    imgs += [(rng.standard_normal((19, 27, 3)) * scale).astype(np.float32) for scale in (1e-3, 1e3, 1e12)]
    imgs += [np.full((10, 12, 3), 0.7, np.float32)]
    for img in imgs:
        assert np.array_equal(fine_grained_float(img), opencv_float_saliency(img)), img.shape


def test_dali_cpu_operator_on_float_input_matches_opencv_and_the_oracle(photos):
    """float32 HWC input: OpenCV's map of that very array (the official SaliencyMix call), and with ``mirror``
    the map of the flipped array."""
    rng = np.random.default_rng(1)
    imgs = normalised_images(rng, FLOAT_SIZES * 2, photos)
    flags = [np.array(k % 2, np.int32) for k in range(len(imgs))]
    import dali_ops
    from nvidia.dali import fn, pipeline_def

    dali_ops.load()

    @pipeline_def(batch_size=len(imgs), num_threads=2, device_id=None)
    def pipe():
        x = fn.external_source(source=lambda: imgs, batch=True, layout="HWC")
        m = fn.external_source(source=lambda: flags, batch=True)
        return fn.occlusion.fine_grained_saliency(x, mirror=m)

    p = pipe()
    p.build()
    (out,) = p.run()
    for img, flag, got in zip(imgs, flags, out):
        seen = np.ascontiguousarray(img[:, ::-1]) if flag else img
        ref = opencv_float_saliency(seen)
        assert np.array_equal(np.array(got), ref), (img.shape, int(flag))
        assert np.array_equal(ref, fine_grained_float(seen))


def test_float_input_map_is_not_the_photos_map(photos):
    """Why it matters: OpenCV reads the float plane's bytes, so the official map's peak is not the photo's."""
    img = resized(photos[0], 224, 224)
    norm = ((img.astype(np.float32) / np.float32(255) - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)
    official, photo = fine_grained_float(norm), opencv_saliency(img)
    assert np.argmax((official * 255).astype(np.uint8)) != np.argmax((photo * 255).astype(np.uint8))


def test_float_input_rejects_max_side():
    with pytest.raises(RuntimeError, match="max_side.*must be 0 for float32"):
        run_op([np.zeros((8, 8, 3), np.float32)], max_side=4)


@requires_gpu
def test_dali_gpu_operator_on_float_input_equals_the_cpu_operator(photos):
    import dali_ops
    from nvidia.dali import fn, pipeline_def

    dali_ops.load()
    imgs = normalised_images(np.random.default_rng(2), FLOAT_SIZES, photos)
    flags = [np.array(k % 2, np.int32) for k in range(len(imgs))]

    @pipeline_def(batch_size=len(imgs), num_threads=2, device_id=0)
    def pipe():
        x = fn.external_source(source=lambda: imgs, batch=True, layout="HWC")
        m = fn.external_source(source=lambda: flags, batch=True)
        return fn.occlusion.fine_grained_saliency(x.gpu(), mirror=m)

    p = pipe()
    p.build()
    (out,) = p.run()
    out = out.as_cpu()
    for i, (img, flag) in enumerate(zip(imgs, flags)):
        seen = np.ascontiguousarray(img[:, ::-1]) if flag else img
        assert np.array_equal(np.array(out[i]), opencv_float_saliency(seen)), img.shape
