"""Issue 23, class 6: the position cannot drift. While an iterator of the loader is live, ``set_epoch`` and
``load_state_dict`` are refused and ``close()`` ends that iterator at the position it reached; after the loop
(finished or left by ``break``) all three work. Resume refuses a state made by a loader that would serve other
batches (another method, dataset, output size, ...), naming every field that differs with both values.

The oracle of every served sequence is a second loader of the same arguments, iterated without interference
(``flat_root``: 16 files, 4 batches of 4 per epoch)."""
from __future__ import annotations

import shutil

import pytest

from pipelines import OcclusionLoader


def make(root, batch=4, **kw):
    kw.setdefault("device", "cpu")
    kw.setdefault("output_size", 32)
    kw.setdefault("shuffle", True)
    kw.setdefault("seed", 5)
    return OcclusionLoader(root, batch, runtime={"num_threads": 1, "py_workers": 1}, **kw)


def ids(batches):
    return [b.meta["sample_id"].tolist() for b in batches]


def epochs(ld, count):
    out = []
    for e in range(count):
        ld.set_epoch(e)
        out.append(ids(ld))
    return out


# -- a live iterator: set_epoch / load_state_dict refused, close() ends it ---------------------------------

@pytest.mark.parametrize("call", ["set_epoch", "load_state_dict"])
def test_moving_the_position_inside_the_loop_is_refused(flat_root, call):
    """The issue's case: set_epoch(1) inside the loop of epoch 0 went on serving the old pipeline (6 batches in a
    4-batch epoch) while state_dict() described epoch 1. Now refused; the loop serves epoch 0 unchanged."""
    want = epochs(make(flat_root), 2)
    ld = make(flat_root)
    state = ld.state_dict()
    served = []
    for batch in ld:
        served.append(batch.meta["sample_id"].tolist())
        with pytest.raises(RuntimeError, match=rf"{call}\(\).*finish or break the loop"):
            ld.set_epoch(1) if call == "set_epoch" else ld.load_state_dict(state)
        assert ld.state_dict()["batch"] == len(served)  # the position is the batch served, not the refused one
    assert served == want[0]
    assert ld.state_dict()["epoch"] == 1 and ld.state_dict()["batch"] == 0
    assert ids(ld) == want[1]


def test_close_inside_the_loop_ends_it_where_it_stood(flat_root):
    """close() inside the loop used to end with an error blaming the next batch's image files. Now the loop ends
    after the batch in hand, and the next loop rebuilds and serves the rest of the epoch."""
    want = epochs(make(flat_root), 1)[0]
    ld = make(flat_root)
    served = []
    for batch in ld:
        served.append(batch.meta["sample_id"].tolist())
        if len(served) == 2:
            ld.close()
    assert served == want[:2]
    assert (ld.state_dict()["epoch"], ld.state_dict()["batch"]) == (0, 2)
    assert ids(ld) == want[2:]


def test_after_break_or_close_every_call_works(flat_root):
    """``break`` drops the loop's iterator (CPython frees it at once): no longer live. An iterator kept in a
    variable stays live until exhausted, closed, dropped or ended by the loader's close()."""
    want = epochs(make(flat_root), 2)
    ld = make(flat_root)
    for _ in ld:
        break
    state = ld.state_dict()
    ld.set_epoch(1)
    assert ids(ld) == want[1]
    ld.load_state_dict(state)
    assert ids(ld) == want[0][1:]
    ld.close()

    ld.set_epoch(0)
    it = iter(ld)
    assert ids([next(it)]) == want[0][:1]
    with pytest.raises(RuntimeError, match=r"set_epoch\(\).*live"):
        ld.set_epoch(1)
    it.close()  # the generator's own close releases it
    ld.set_epoch(1)
    it = iter(ld)
    assert ids([next(it)]) == want[1][:1]
    ld.close()  # the loader's close ends it: the kept iterator serves nothing more
    with pytest.raises(StopIteration):
        next(it)
    ld.load_state_dict(state)
    assert ids(ld) == want[0][1:]


# -- resume: the state must come from a loader that serves the same batches -------------------------------

@pytest.mark.parametrize("kw, fields", [
    (dict(method="cutmix", size=None), ["method"]),
    (dict(method="cutout", size=8), ["method"]),  # the method's options are part of it
    (dict(output_size=48), ["output_size"]),
    (dict(copies=2, p_keep_image=(0.0, 1.0)), ["copies", "p_keep_image"]),
    (dict(copy_mode="batch_aug"), ["copy_mode"]),
    (dict(auto_augment="rand_augment"), ["auto_augment"]),
    (dict(color="clovaai"), ["color_jitter", "lighting"]),
    (dict(train=False), ["train"]),
    (dict(shuffle=False), ["shuffle"]),
    (dict(last_batch="drop", dtype="float16"), ["last_batch", "dtype"]),
    (dict(label_smoothing=0.1, num_classes=3), ["label_smoothing", "num_classes"]),
], ids=lambda v: ",".join(v) if isinstance(v, list) else None)
def test_resume_refuses_a_loader_that_serves_other_batches(flat_root, kw, fields):
    base = dict(method="cutout", size=4)
    state = make(flat_root, **base).state_dict()
    other = make(flat_root, **{k: v for k, v in {**base, **kw}.items() if v is not None})
    with pytest.raises(ValueError, match="cannot resume") as err:
        other.load_state_dict(state)
    text = str(err.value)
    mine = other.state_dict()
    for field in fields:
        assert f"{field}: {state[field]!r} in the state_dict, {mine[field]!r} in this loader" in text, text
    assert text.count(" in the state_dict, ") == len(fields), text
    make(flat_root, **base).load_state_dict(state)  # the same arguments resume


def test_resume_refuses_another_dataset_of_the_same_size(flat_root, tmp_path):
    state = make(flat_root).state_dict()
    other = tmp_path / "other"
    shutil.copytree(flat_root, other)
    (other / "a" / "7.jpg").rename(other / "a" / "9.jpg")  # one name differs: same size, other samples
    with pytest.raises(ValueError, match="cannot resume.*dataset: '[0-9a-f]{40}' in the state_dict, "
                                         "'[0-9a-f]{40}' in this loader"):
        make(other).load_state_dict(state)
    shutil.copytree(flat_root, tmp_path / "elsewhere")  # the same names and labels elsewhere: the same dataset
    make(tmp_path / "elsewhere").load_state_dict(state)


def test_a_state_without_the_fields_is_refused_naming_them(flat_root):
    """A state from before these fields existed (or edited by hand) cannot prove it matches: refused."""
    state = make(flat_root).state_dict()
    del state["method"], state["output_size"]
    ld = make(flat_root)
    with pytest.raises(ValueError, match="method: missing in the state_dict, 'none' in this loader; "
                                         "output_size: missing in the state_dict, 32 in this loader .*copy the "
                                         "missing ones"):
        ld.load_state_dict(state)
    ld.load_state_dict({**ld.state_dict(), **state})  # the way out the message gives
