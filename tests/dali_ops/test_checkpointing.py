"""The plugin's operators are pure functions of their inputs (DALI ``StatelessOperator``s), so a pipeline that
uses every one of them checkpoints: built with ``enable_checkpointing=True`` it returns ``pipe.checkpoint()``,
and a pipeline built from that checkpoint continues with the very outputs the first one goes on to give (the
random inputs come from DALI's own checkpointed ``fn.random`` operators)."""
from __future__ import annotations

import numpy as np
from nvidia.dali import fn, pipeline_def, types

import dali_ops

N, H, W = 4, 32, 40


@pipeline_def(batch_size=N, num_threads=2, device_id=None, seed=123, enable_checkpointing=True)
def every_operator():
    def ints(hi, shape):
        return fn.cast(fn.random.uniform(range=[0, hi], shape=shape), dtype=types.INT32)

    u8 = fn.reshape(fn.cast(fn.random.uniform(range=[0, 256], shape=[H, W, 3]), dtype=types.UINT8), layout="HWC")
    mirror = fn.random.coin_flip(dtype=types.INT32)
    skip = fn.random.coin_flip(dtype=types.INT32)
    partner = fn.batch_permutation()
    occ = fn.occlusion
    sal = occ.fine_grained_saliency(u8, mirror=mirror)
    sal_skip = occ.fine_grained_saliency(u8, skip=skip)
    peak = occ.box_search(sal, ints(H, [2]), partner, method="peak")
    window = occ.box_search(sal_skip, ints(10**9, [2]), method="max_window", size=9, jitter=4)
    keep = occ.box_search(sal, ints(H, [8, 2]), method="keep_cut", size=8)
    kw = dict(mirror=mirror, mean=[120.0], std=[60.0], fill=[0.5])
    erased = occ.normalize_occlude(u8, window, **kw)
    pasted = occ.normalize_occlude(u8, peak, partner, **kw)
    blended = occ.normalize_occlude(u8, keep, partner, blend=fn.random.uniform(range=[0, 1]), **kw)
    paste = occ.paste_boxes(u8, keep, u8, partner)
    color = fn.random.uniform(range=[0.0, 1.0], shape=[21])  # any 21 numbers: a colour transform's parameters
    noisy = occ.normalize_occlude(u8, keep, fill_mode="pixel", noise_seed=ints(2 ** 30, []), color=color,
                                  mirror=mirror, mean=[120.0], std=[60.0])
    return sal, sal_skip, peak, window, keep, erased, pasted, blended, paste, noisy


def outputs(pipe, iterations):
    return [[np.array(o.as_tensor()) for o in pipe.run()] for _ in range(iterations)]


def test_a_pipeline_of_every_plugin_operator_resumes_from_its_checkpoint():
    dali_ops.load()
    first = every_operator()
    first.build()
    outputs(first, 2)
    checkpoint = first.checkpoint()
    assert checkpoint
    expected = outputs(first, 3)
    resumed = every_operator(checkpoint=checkpoint)
    resumed.build()
    got = outputs(resumed, 3)
    for it, (want_outs, got_outs) in enumerate(zip(expected, got)):
        for k, (want, out) in enumerate(zip(want_outs, got_outs)):
            np.testing.assert_array_equal(out, want, err_msg=f"iteration {it}, output {k}")
    # the inputs move on between iterations, so equal outputs are the checkpoint's doing
    assert not np.array_equal(expected[0][0], expected[1][0])
