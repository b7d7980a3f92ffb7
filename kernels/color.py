"""ColorJitter and PCA Lighting as clovaai's ImageNet pipeline runs them, composed into one affine colour
transform per image.

Reference: ``clovaai/CutMix-PyTorch`` ``utils.py`` (after ``eladhoffer/convNet.pytorch`` and fb.resnet.torch),
used by CutMix (Yun et al. 2019, arXiv 1905.04899) and SaliencyMix (Uddin et al. 2021, arXiv 2006.01791) for
ImageNet: ``ToTensor`` (values in [0, 1]), then ``ColorJitter(0.4, 0.4, 0.4)``, then ``Lighting(0.1)``, then
``Normalize``; nothing is clamped.

* ColorJitter: the enabled steps among brightness, contrast, saturation in a random order
  (``random.shuffle``), each with ``alpha ~ U(-v, v)``:
  brightness ``img.lerp(0, alpha)``, contrast ``img.lerp(mean(gray(img)), alpha)``, saturation
  ``img.lerp(gray(img), alpha)``, with ``gray = 0.299 R + 0.587 G + 0.114 B``.
* Lighting (AlexNet's PCA noise): ``img + eigvec @ (alpha * eigval)`` with ``alpha ~ N(0, alphastd)`` per
  component.

Every step is affine in the pixel and in the image's mean colour (contrast reads it), so the chain is
``out = A @ px + B @ mean(px) + b0``. :func:`color_params` composes ``A``, ``B``, ``b0`` per image in float64
(pixel units, 0..255) and packs them as the 21 floats ``fn.occlusion.normalize_occlude``'s ``color`` takes
(``dali_ops/csrc/normalize_occlude/normalize_occlude_math.h`` applies them). :func:`draw_color` draws the
steps' order and strengths from a seeded generator.
"""
from __future__ import annotations

import numpy as np

#: clovaai's ``Lighting`` eigenvalues and eigenvectors (ImageNet RGB, fb.resnet.torch)
EIGVAL = np.array([0.2175, 0.0188, 0.0045])
EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                   [-0.5808, -0.0045, -0.8140],
                   [-0.5836, -0.6948, 0.4203]])
#: clovaai's ``Grayscale``: ``0.299 R + 0.587 G + 0.114 B``
GRAY = np.array([0.299, 0.587, 0.114])
#: the ColorJitter steps, in the order clovaai builds its list before shuffling it
STEPS = ("brightness", "contrast", "saturation")
#: floats per image: A (3 x 3), B (3 x 3), b0 (3)
PARAMS = 21


def draw_color(rng: np.random.Generator, n: int, jitter, lighting: float) -> dict:
    """The draws of ``n`` images: ``order`` (n, 3) step indices (-1 past the enabled ones), ``alpha`` (n, 3)
    each step's strength by :data:`STEPS` index (0 for a disabled one), ``light`` (n, 3) the PCA weights.

    ``jitter``: one strength for every step (clovaai's 0.4) or one per step; ``lighting``: ``alphastd``."""
    strengths = np.broadcast_to(np.asarray(jitter, np.float64), (3,))
    enabled = np.flatnonzero(strengths != 0)
    order = np.full((n, 3), -1, np.int64)
    alpha = np.zeros((n, 3))
    for i in range(n):
        order[i, :enabled.size] = rng.permutation(enabled)
    alpha[:, enabled] = rng.uniform(-strengths[enabled], strengths[enabled], (n, enabled.size))
    light = rng.normal(0.0, lighting, (n, 3)) if lighting else np.zeros((n, 3))
    return {"order": order, "alpha": alpha, "light": light}


def color_params(order: np.ndarray, alpha: np.ndarray, light: np.ndarray) -> np.ndarray:
    """``(n, 21)`` float32: per image ``A``, ``B`` (row-major) and ``b0`` in pixel units such that the chain of
    :func:`draw_color`'s draws maps a pixel ``px`` of an image of mean colour ``mu`` to
    ``A @ px + B @ mu + b0``."""
    n = order.shape[0]
    out = np.empty((n, PARAMS), np.float64)
    ones = np.ones(3)
    for i in range(n):
        a_m, b_m, c = np.eye(3), np.zeros((3, 3)), np.zeros(3)  # x = a_m @ px + b_m @ mu + c
        for step in order[i]:
            if step < 0:
                break
            t = alpha[i, step]
            p = (1 - t) * np.eye(3)
            r = np.zeros(3)
            if STEPS[step] == "contrast":  # towards the mean of the current image's gray plane
                r = t * ones
            elif STEPS[step] == "saturation":  # towards the current pixel's gray
                p = p + t * np.outer(ones, GRAY)
            mean_a = a_m + b_m  # the current image's mean colour is mean_a @ mu + c
            a_m, b_m, c = p @ a_m, p @ b_m + np.outer(r, GRAY @ mean_a), p @ c + r * (GRAY @ c)
        c = c + 255.0 * (EIGVEC @ (light[i] * EIGVAL))
        out[i] = np.concatenate([a_m.ravel(), b_m.ravel(), c])
    return out.astype(np.float32)
