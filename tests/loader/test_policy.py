"""``auto_augment`` policies (:mod:`pipelines.loader.policy`): timm's ``--aa`` strings against timm's own parser and
level rules (``timm/data/auto_augment.py``), what is refused, and the op probability's identity padding."""
from __future__ import annotations

import numpy as np
import pytest

from pipelines.loader.policy import TIMM_OPS, parse_policy, timm_suite


def test_loader_names_and_timm_strings():
    assert parse_policy(None) is None
    assert (parse_policy("rand_augment").n, parse_policy("rand_augment").m, parse_policy("rand_augment").bins) == (2, 9, 31)
    assert parse_policy("auto_augment").kind == parse_policy("original").kind == "auto_augment"
    p = parse_policy("rand-m9-mstd0.5-inc1")
    assert (p.kind, p.n, p.m, p.bins, p.suite, p.p) == ("rand_augment", 2, 9, 11, "timm_inc", 0.5)
    assert p.notes and "mstd0.5" in p.notes[0]
    assert parse_policy("rand-m7-n3-p1.0").suite == "timm" and parse_policy("rand-m7-n3-p1.0").p == 1.0
    assert not parse_policy("rand-m9-mstd0").notes and parse_policy("rand-m9-mmax10").m == 9


@pytest.mark.parametrize("text, match", [("v0", "no DALI policy"), ("augmix-m5", "no DALI policy"),
                                         ("rand-m9-tweights", "not offered"), ("rand-m11", "m must be"),
                                         ("rand-m9-p0.4", "whole number"), ("rand-m9.5x", "cannot read"), (3, "timm")])
def test_what_is_refused_is_named(text, match):
    with pytest.raises(ValueError, match=match):
        parse_policy(text)


def _dali_params(op, bins=11):
    """DALI's argument at each bin (the first component of a warp's (x, y) pair)."""
    return [np.ravel(op.mag_to_param(m))[0] for m in op._get_magnitudes(bins)]


@pytest.mark.parametrize("increasing", [True, False])
def test_timm_level_rules_map_exactly(increasing):
    """At every bin m of 11, each op's argument is timm's ``*_level_to_arg(m)`` (its magnitude; the sign is the
    random negation both draw)."""
    import timm.data.auto_augment as ta

    suite = {op.name: op for op in timm_suite(increasing)}
    assert sorted(suite) == sorted(TIMM_OPS)
    timm_names = ta._RAND_INCREASING_TRANSFORMS if increasing else ta._RAND_TRANSFORMS
    assert len(timm_names) == len(TIMM_OPS)
    levels = range(11)
    level = {k: ta.LEVEL_TO_ARG[n] for k, n in [
        ("posterize", "PosterizeIncreasing" if increasing else "Posterize"),
        ("solarize", "SolarizeIncreasing" if increasing else "Solarize"), ("solarize_add", "SolarizeAdd"),
        ("brightness", "BrightnessIncreasing" if increasing else "Brightness"), ("rotate", "Rotate"),
        ("shear_x", "ShearX"), ("translate_x", "TranslateXRel")]}
    for m in levels:
        bits = level["posterize"](m, {})[0]
        assert _dali_params(suite["posterize"])[m] == np.uint8(255 ^ (2 ** (8 - bits) - 1)), m
        assert _dali_params(suite["solarize"])[m] == level["solarize"](m, {})[0], m
        assert _dali_params(suite["solarize_add"])[m] == level["solarize_add"](m, {})[0], m
        for name in ("rotate", "shear_x", "translate_x"):  # |argument|: both negate it at random
            assert _dali_params(suite[name])[m] == pytest.approx(abs(level[name](m, {"translate_pct": 0.45})[0]),
                                                                 rel=1e-6)
        want = level["brightness"](m, {})[0]
        got = _dali_params(suite["brightness"])[m]  # the enhance factor (DALI's shift_enhance_range: 1 + level)
        if increasing:  # timm draws the sign: 1 + level or 1 - level
            assert got == pytest.approx(max(want, 2 - want), rel=1e-6), m
        else:
            assert got == pytest.approx(want, rel=1e-6), m
    assert suite["rotate"].randomly_negate and suite["shear_x"].randomly_negate
    assert suite["brightness"].randomly_negate == increasing


def test_op_probability_is_identity_padding(tiny_dataset):
    """timm applies each drawn op with probability p (0.5): with n=1 about half the crops leave the policy
    unchanged (a few more: ops that change nothing on some images)."""
    import torch

    from helpers import make

    kw = dict(batch=8, seed=4, shuffle=False)
    plain = [b.images for b in make(tiny_dataset / "train", **kw)]
    aug = [b.images for b in make(tiny_dataset / "train", auto_augment="rand-m9-n1-inc1", **kw)]
    same = torch.cat([(a == b).flatten(1).all(1) for a, b in zip(aug, plain)]).float().mean().item()
    assert 0.4 <= same <= 0.75, same
