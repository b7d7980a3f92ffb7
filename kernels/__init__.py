"""Array-level algorithms of the occlusion methods (no DALI): samplers, saliency, search, apply, labels.

Conventions shared by every module here:

* images are NHWC uint8 or NCHW float arrays (the docstring says which); saliency maps are (N, H, W) float32;
* a box is ``(y0, x0, y1, x1)`` int32 in pixels of the image it applies to, half-open (``y0 <= y < y1``);
  per-row box lists are ``(N, K, 4)`` padded with -1;
* every random draw comes from a ``numpy.random.Generator`` passed in by the caller (never a global RNG),
  so the same generator state gives the same parameters;
* ``lam`` is the share of a row's own label: 1 - (area replaced from the partner) / (H * W).
"""
