"""The seed DALI's own random operators get (``auto_augment``, ``keep_paste``'s RandAugment).

Everything the reader draws (order, crops, boxes) is keyed by ``(seed, epoch, batch, shard)`` and
resumes exactly. DALI's random operators draw from generators seeded once, when the pipeline is
built, and DALI offers no way to move them to "batch k of epoch e": its generators have no skip-ahead,
and its checkpointing (``enable_checkpointing``) does not cover a parallel ``external_source``, which
this pipeline is built around. So the seed is derived from where the pipeline starts: the shard (ranks
draw different ops for row i of batch k) and the start ``(epoch, batch)`` (a rebuild after a resume,
``break`` or ``set_epoch`` does not replay batch 0's ops). A run that is not interrupted builds once and
so continues one stream; a resumed run gets a fresh, reproducible stream from the resume point rather
than the exact continuation of the interrupted one.
"""
from __future__ import annotations

import numpy as np

_DALI_DOMAIN = 0x44414C49  # "DALI": keeps this stream apart from the reader's (seed, epoch, ...) keys


def pipeline_seed(seed: int, shard_id: int, epoch: int, batch: int) -> int:
    """A non-negative 63-bit DALI pipeline seed from ``(seed, shard_id, epoch, batch)``."""
    words = np.random.SeedSequence([_DALI_DOMAIN, int(seed), int(shard_id), int(epoch), int(batch)])
    return int(words.generate_state(1, np.uint64)[0] >> np.uint64(1))
