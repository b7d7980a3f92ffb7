"""The seed DALI's own random operators get (``auto_augment``, ``keep_paste``'s policy), and how they resume.

Everything the reader draws (order, crops, boxes, colour) is keyed by ``(seed, epoch, batch, shard)`` and
resumes exactly. DALI's random operators draw from generators seeded once, when the pipeline is built, and
their generators have no skip-ahead to "batch k of epoch e". So the seed is derived from where the
pipeline starts: the shard (ranks draw different ops for row i of batch k) and the start ``(epoch, batch)``
(a pipeline built at another position -- ``set_epoch`` to a new place, an interrupt, a bad file -- does not
replay batch 0's ops). A run that is not interrupted builds once and so continues one stream (with a saliency
bank, one per epoch: the pipeline ends with its epoch).

A resumed run continues that stream exactly through DALI's checkpointing. The graph is built with
``enable_checkpointing=True``: every operator in it is checkpointable (the plugin's operators are DALI
``StatelessOperator``s, ``tests/dali_ops/test_checkpointing.py``; the reader is a ``BatchInfo`` callback).
``OcclusionLoader.state_dict()`` stores ``pipe.checkpoint()`` -- the state of DALI's random operators after
the last batch *served*: DALI keeps one checkpoint per iteration and returns the one of the last outputs
the consumer took, not of the batches its prefetch queue and the reader's workers have prepared since --
with the position the pipeline's reader started at. ``load_state_dict`` and the next rebuild at that
position restore it (``checkpoint=``): the reader starts at the same origin and goes on from the checkpoint's
iteration, and the batches equal the uninterrupted run's bit for bit, mid-epoch, at an epoch's end and from
a loader that was itself resumed (``tests/loader/test_resume_exact.py``). A state saved where the loader
would have built a new pipeline anyway (the bank's epoch end) carries no checkpoint, and the rebuild seeds
from its position as the uninterrupted run does.
"""
from __future__ import annotations

import numpy as np

_DALI_DOMAIN = 0x44414C49  # "DALI": keeps this stream apart from the reader's (seed, epoch, ...) keys


def pipeline_seed(seed: int, shard_id: int, epoch: int, batch: int) -> int:
    """A non-negative 63-bit DALI pipeline seed from ``(seed, shard_id, epoch, batch)``."""
    words = np.random.SeedSequence([_DALI_DOMAIN, int(seed), int(shard_id), int(epoch), int(batch)])
    return int(words.generate_state(1, np.uint64)[0] >> np.uint64(1))
