"""Crop-window samplers, drawn on the host before decoding so the window can drive a ROI decode
(nvJPEG / libjpeg-turbo decode only the crop) and be recorded per row.

``random_resized_crop`` follows torchvision ``RandomResizedCrop.get_params`` (the Inception-style
crop of Szegedy et al. 2015 used by every ImageNet ResNet recipe): up to 10 tries of
``area ~ U(scale) * H * W`` and ``log(ratio) ~ U(log ratio)``, ``w = round(sqrt(area * ratio))``,
``h = round(sqrt(area / ratio))``, offset uniform; after 10 failures a centre crop with the ratio
clamped into range. Windows are ``(y0, x0, h, w)`` in original-image pixels.
"""
from __future__ import annotations

import math

import numpy as np

_TRIES = 10


def random_resized_crop(rng: np.random.Generator, heights, widths, scale=(0.08, 1.0),
                        ratio=(3.0 / 4.0, 4.0 / 3.0)) -> np.ndarray:
    """One window per image: ``(N, 4)`` int32 ``(y0, x0, h, w)`` for images of the given sizes."""
    heights = np.asarray(heights, dtype=np.int64).reshape(-1)
    widths = np.asarray(widths, dtype=np.int64).reshape(-1)
    if heights.shape != widths.shape or (heights.size and (heights.min() < 1 or widths.min() < 1)):
        raise ValueError(f"image sizes must be positive and paired, got heights={heights} widths={widths}")
    if not (0.0 < scale[0] <= scale[1] <= 1.0):
        raise ValueError(f"scale must satisfy 0 < lo <= hi <= 1, got {scale}")
    if not (0.0 < ratio[0] <= ratio[1]):
        raise ValueError(f"ratio must satisfy 0 < lo <= hi, got {ratio}")
    n = heights.size
    area = (heights * widths).astype(np.float64)[:, None]
    target = area * rng.uniform(scale[0], scale[1], size=(n, _TRIES))
    aspect = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), size=(n, _TRIES)))
    w = np.rint(np.sqrt(target * aspect)).astype(np.int64)
    h = np.rint(np.sqrt(target / aspect)).astype(np.int64)
    ok = (w > 0) & (w <= widths[:, None]) & (h > 0) & (h <= heights[:, None])
    first = np.argmax(ok, axis=1)
    found = ok[np.arange(n), first]
    h = h[np.arange(n), first]
    w = w[np.arange(n), first]
    # Fallback of torchvision: the whole image, or the largest centred crop with the ratio clamped.
    in_ratio = widths / heights
    fb_w = np.where(in_ratio < ratio[0], widths,
                    np.where(in_ratio > ratio[1], np.rint(heights * ratio[1]).astype(np.int64), widths))
    fb_h = np.where(in_ratio < ratio[0], np.rint(widths / ratio[0]).astype(np.int64), heights)
    h = np.where(found, h, np.minimum(fb_h, heights))
    w = np.where(found, w, np.minimum(fb_w, widths))
    u = rng.random(size=(n, 2))
    y0 = np.where(found, np.floor(u[:, 0] * (heights - h + 1)), (heights - h) // 2).astype(np.int64)
    x0 = np.where(found, np.floor(u[:, 1] * (widths - w + 1)), (widths - w) // 2).astype(np.int64)
    return np.stack([y0, x0, h, w], axis=1).astype(np.int32)


def center_crop_window(heights, widths, resize_shorter: int = 256, crop: int = 224) -> np.ndarray:
    """The window of the original image seen by ``Resize(resize_shorter) + CenterCrop(crop)``.

    ``(N, 4)`` int32 ``(y0, x0, h, w)``: the validation transform of the ImageNet recipes, expressed
    in original-image pixels so a val row can be related to the source image like a train row.
    """
    heights = np.asarray(heights, dtype=np.float64).reshape(-1)
    widths = np.asarray(widths, dtype=np.float64).reshape(-1)
    side = np.minimum(heights, widths) * (crop / resize_shorter)
    h = np.minimum(np.rint(side), heights)
    w = np.minimum(np.rint(side), widths)
    y0 = np.floor((heights - h) / 2)
    x0 = np.floor((widths - w) / 2)
    return np.stack([y0, x0, h, w], axis=1).astype(np.int32)
