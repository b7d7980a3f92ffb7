"""The seed DALI's own random operators get (``auto_augment``, ``keep_paste``'s RandAugment).

Everything the reader draws (order, crops, boxes) is keyed by ``(seed, epoch, batch, shard)`` and
resumes exactly. DALI's random operators draw from generators seeded once, when the pipeline is
built, and their generators have no skip-ahead to "batch k of epoch e". So the seed is derived from
where the pipeline starts: the shard (ranks draw different ops for row i of batch k) and the start
``(epoch, batch)`` (a rebuild after a resume, ``set_epoch`` or an interrupt does not replay batch 0's
ops). A run that is not interrupted builds once and so continues one stream; a resumed run gets a
fresh, reproducible stream from the resume point rather than the exact continuation.

Exact continuation would need DALI's checkpointing (``enable_checkpointing=True``,
``pipeline.checkpoint()`` in ``state_dict``, ``checkpoint=`` at the rebuild). Tried: on a pipeline of
built-in operators with a parallel ``BatchInfo`` ``external_source`` and ``exec_dynamic`` (this
graph's set-up), a pipeline restored from the checkpoint taken after 3 served batches reproduced
RandAugment's batches 3-5 bit for bit and resumed the source at iteration 3. But every operator of the
pipeline must implement DALI's checkpoint interface, and this plugin's operators do not
(``Checkpointing is not implemented for this operator: fn.occlusion.normalize_occlude``); they are
stateless, so a no-op ``SaveState``/``RestoreState`` in ``dali_ops/csrc`` (and a rebuild) would enable it.
"""
from __future__ import annotations

import numpy as np

_DALI_DOMAIN = 0x44414C49  # "DALI": keeps this stream apart from the reader's (seed, epoch, ...) keys


def pipeline_seed(seed: int, shard_id: int, epoch: int, batch: int) -> int:
    """A non-negative 63-bit DALI pipeline seed from ``(seed, shard_id, epoch, batch)``."""
    words = np.random.SeedSequence([_DALI_DOMAIN, int(seed), int(shard_id), int(epoch), int(batch)])
    return int(words.generate_state(1, np.uint64)[0] >> np.uint64(1))
