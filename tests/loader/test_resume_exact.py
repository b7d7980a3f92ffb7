"""Exact resume with DALI's own random operators (issue 22): ``auto_augment="rand_augment"`` and ``"auto_augment"``
(and a timm string) draw their ops from DALI's seeded generators, which ``state_dict()`` carries as DALI's
checkpoint. Stop after batch k, load the state into a new loader, and batch k+1 onwards equal the uninterrupted
run's bit for bit: mid-epoch, across the epoch boundary, and from a loader that was itself resumed (its pipeline
built from a checkpoint, then checkpointed again). The reference run prefetches (DALI's queue depth 2, the reader's
workers ahead of it): the checkpoint describes the batches served, not the ones prefetched.

Without the checkpoint the same resume gives other images (the last test): the equality is the checkpoint's doing.
"""
from __future__ import annotations

import pytest
import torch

from helpers import make

BATCH = 4  # tiny_dataset: 24 training images, 6 batches per epoch


def loader(root, policy):
    return make(root, batch=BATCH, method="cutout", size=12, auto_augment=policy, seed=11, shuffle=True)


def run(ld, epochs, stop=None, resumed=False):
    """Batches of ``epochs``, ``set_epoch`` before each as a training loop does (not before the first when
    ``resumed``: the loaded state says where it goes on); ``stop=(epoch, k)``: return after ``k`` batches of that
    epoch. Returns the batches and the loader's state then."""
    out = []
    for i, e in enumerate(epochs):
        if not (resumed and i == 0):
            ld.set_epoch(e)
        for batch in ld:
            out.append(batch)
            if stop is not None and (e, ld.state_dict()["batch"]) == stop:
                return out, ld.state_dict()
    return out, ld.state_dict()


def same(a, b):
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        assert torch.equal(x.images, y.images), f"batch {i}: images differ"
        for key in x.meta:
            assert torch.equal(x.meta[key], y.meta[key]), f"batch {i}: meta {key} differs"


@pytest.fixture(scope="module", params=["rand_augment", "auto_augment", "rand-m9-mstd0.5-inc1"])
def reference(request, tiny_dataset):
    policy = request.param
    batches, _ = run(loader(tiny_dataset / "train", policy), [0, 1])
    return policy, batches


@pytest.mark.parametrize("stop", [(0, 2), (0, 6), (1, 3)], ids=["mid-epoch", "epoch-end", "second-epoch"])
def test_resumed_loader_continues_bit_for_bit(tiny_dataset, reference, stop):
    policy, want = reference
    first, state = run(loader(tiny_dataset / "train", policy), [0, 1], stop=stop)
    assert "dali" in state
    resumed = loader(tiny_dataset / "train", policy)
    resumed.load_state_dict(state)
    rest, _ = run(resumed, range(state["epoch"] + (state["batch"] == 6), 2), resumed=True)  # 6: the epoch's end
    same(first + rest, want)


def test_a_resumed_loader_resumes_again(tiny_dataset, reference):
    """Stop in epoch 0, resume, stop again in epoch 1 (the second pipeline was built from a checkpoint, its reader
    started at the first one's origin), resume once more: still the uninterrupted run."""
    policy, want = reference
    a, state = run(loader(tiny_dataset / "train", policy), [0, 1], stop=(0, 1))
    second = loader(tiny_dataset / "train", policy)
    second.load_state_dict(state)
    b, state = run(second, [0, 1], stop=(1, 2), resumed=True)
    third = loader(tiny_dataset / "train", policy)
    third.load_state_dict(state)
    c, _ = run(third, [1], resumed=True)
    same(a + b + c, want)


def test_without_the_checkpoint_the_policy_draws_differ(tiny_dataset, reference):
    policy, want = reference
    first, state = run(loader(tiny_dataset / "train", policy), [0, 1], stop=(0, 2))
    del state["dali"]
    resumed = loader(tiny_dataset / "train", policy)
    resumed.load_state_dict(state)
    rest, _ = run(resumed, [0], resumed=True)
    assert torch.equal(rest[0].meta["sample_id"], want[2].meta["sample_id"])  # the same samples and crops ...
    assert not torch.equal(rest[0].images, want[2].images)  # ... through other policy draws
