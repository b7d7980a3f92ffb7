"""The loader's position, ``(epoch, batch)``: who may serve it and what a saved position must match.

* :class:`LiveIterator`: one iterator serves the position at a time, and nothing moves the position under it;
* :class:`Identity` and :func:`check_state`: what decides a loader's batches besides its position, which a
  ``state_dict`` carries and a resume must match;
* :class:`DaliCheckpoint`: DALI's checkpoint in a state, and the position a pipeline rebuilt from it starts at;
* :class:`SkippedFiles`: the files ``on_bad="skip"`` skipped so far, which a resumed run skips again.

The rules are those of docs/robustness.md (Iteration, Resume).
"""
from __future__ import annotations

import dataclasses
import warnings

from pipelines.data.imagefiles import BadImageError, check_image


class LiveIterator:
    """The one iterator of a loader allowed to serve its position (the loader's ``__iter__`` claims it at its
    first batch and releases it in its ``finally``).

    A second live iterator is refused: two would share one position (``zip(L, L)`` would drop batches, a nested
    ``for`` over the same loader would never end). A call that moves the position (``set_epoch``,
    ``load_state_dict``) while one is live is refused too: the iterator would go on serving its pipeline's batches
    while ``state_dict()`` described others. ``close()`` ends the live iterator instead: its next step stops
    (``StopIteration``) without serving, and the position stays at the first batch not served.

    An iterator is live from its first batch until it is exhausted, closed (``it.close()``), garbage-collected or
    ended by the loader's ``close()``. CPython frees a ``for`` loop's iterator as soon as the loop is left
    (``break``, ``return``, an exception), so after the loop every call works; an iterator kept in a variable
    (``it = iter(loader)``) stays live while it is kept."""

    def __init__(self):
        self._token = None

    def claim(self) -> object:
        if self._token is not None:
            raise RuntimeError(
                "this OcclusionLoader is already being iterated: one loader serves one position, so a second "
                "live iterator (zip(L, L), a nested `for` over the same loader, or an unfinished iter(L) kept "
                "in a variable) would steal its batches. Finish or close() the first iterator, or build a "
                "second loader.")
        self._token = object()
        return self._token

    def holds(self, token) -> bool:
        """``token``'s iterator is still the live one (not ended by ``close()``)."""
        return self._token is token

    def release(self, token) -> None:
        if self._token is token:
            self._token = None

    def end(self) -> None:
        """``close()``: the live iterator, if any, serves nothing more."""
        self._token = None

    def refuse_while_live(self, call: str) -> None:
        if self._token is not None:
            raise RuntimeError(
                f"{call}() was called while an iterator of this OcclusionLoader is live (inside its `for` loop, or "
                f"an unfinished iter(loader) kept in a variable): it would move the position under the batches "
                f"that iterator goes on serving. To {call}(), finish or break the loop first (or close the kept "
                f"iterator; loader.close() also ends it).")


def describe_method(method) -> str:
    """The method as a state records it: ``str(method)`` (its name and the options that differ from the
    defaults), with its saliency source spelt out (a shorthand and its object are the same method) and the
    source's file left out: the bank's file is the bank's to check (``state["bank"]``), wherever it now lies."""
    source = method.source
    if source is not None:
        if any(f.name == "path" for f in dataclasses.fields(source)):
            source = dataclasses.replace(source, path=None)
        method = method.with_source(source)
    return str(method)


class Identity:
    """What decides a loader's batches besides its position: the dataset (its size, and the SHA-1 of its sample
    names and labels, :func:`~pipelines.saliency.bank.dataset_fingerprint`, computed at the first
    ``state_dict()``), the method and the :class:`~pipelines.loader.plan.AugmentConfig` around it, and ``fields``
    (seed, batch size, shard, order, targets, dtype). Not in it: the device and the
    :class:`~pipelines.loader.runtime.Runtime`, which a run may change without changing its batches."""

    def __init__(self, data, method, cfg, **fields):
        plan = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name != "method"}
        self._data = data
        self._fields = {"dataset_size": len(data), **fields, "method": describe_method(method), **plan}

    def fields(self) -> dict:
        return {**self._fields, "dataset": self._data.fingerprint}


def check_state(state: dict, identity: dict, batches: int, bank: bool) -> None:
    """Refuse (``ValueError``) a state this loader cannot continue: one made by a loader of another
    :class:`Identity` (every field that differs, with both values), a batch outside the epoch, or a saliency bank
    on one side only."""
    differ = [f"{key}: {_shown(state, key)} in the state_dict, {value!r} in this loader"
              for key, value in identity.items() if key not in state or _plain(state[key]) != _plain(value)]
    if differ:
        missing = any(key not in state for key in identity)
        raise ValueError("cannot resume: the state_dict comes from a loader that serves other batches; "
                         + "; ".join(differ) + (" (a state saved before the loader recorded these fields: if it "
                         "was made with this loader's arguments, copy the missing ones from this loader's "
                         "state_dict())" if missing else ""))
    if not 0 <= state["batch"] <= batches:
        raise ValueError(f"cannot resume: batch={state['batch']} outside [0, {batches}]")
    if ("bank" in state) != bank:
        raise ValueError("cannot resume: " + ("the state_dict has a saliency bank and this loader none (give its "
                         "method saliency='bank' and bank=...)" if "bank" in state else
                         "this loader has a saliency bank and the state_dict none"))


def _shown(state: dict, key: str) -> str:
    return repr(state[key]) if key in state else "missing"


def _plain(value):
    """Tuples as lists, so that a state passed through JSON or YAML compares equal."""
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


class DaliCheckpoint:
    """``state["dali"]``: DALI's checkpoint (``Pipeline.checkpoint()``, the state of its random operators after the
    last batch served) and ``origin``, the position the checkpointed pipeline's reader started at (its iteration
    0). A loaded one waits for the pipeline built at its position, which restores it and starts its reader at
    that origin (:mod:`pipelines.loader.seeding`)."""

    def __init__(self):
        self.origin = None  # (epoch, batch) the built pipeline's reader started at
        self._loaded = None  # a loaded state's checkpoint and the position it continues at

    def state(self, pipe) -> dict:
        """``{"dali": ...}`` of ``pipe`` (the built pipeline, when it would go on serving from the position), else
        the loaded checkpoint not yet rebuilt, passed on unchanged; ``{}`` without either."""
        if pipe is not None:
            return {"dali": {"checkpoint": pipe.checkpoint(), "origin": self.origin}}
        return {} if self._loaded is None else {"dali": self._loaded}

    def load(self, state: dict, at: tuple) -> None:
        """Keep ``state``'s checkpoint for the pipeline built to serve ``at`` next."""
        dali = state.get("dali")
        self._loaded = None if dali is None else {"checkpoint": dali["checkpoint"],
                                                  "origin": tuple(int(v) for v in dali["origin"]), "at": at}

    def start(self, at: tuple):
        """A pipeline is built to serve ``at`` next: sets :attr:`origin` and returns the checkpoint it restores --
        the loaded one if it continues at ``at`` (else the position moved since, by ``set_epoch``: a fresh start
        at ``at``, no checkpoint)."""
        loaded, self._loaded = self._loaded, None
        if loaded is not None and loaded["at"] == at:
            self.origin = loaded["origin"]
            return loaded["checkpoint"]
        self.origin = at
        return None


class SkippedFiles:
    """``on_bad="skip"``: the files skipped so far (sample id -> why). Each is warned about once, and
    ``state_dict()`` carries their ids (``"skipped"``), so that a resumed run skips them again."""

    def __init__(self):
        self.why: dict[int, str] = {}

    def note(self, source, batch, epoch: int, index: int, full: bool) -> None:
        """Record and warn about each file whose row was skipped in ``batch`` (batch ``index`` of ``epoch``: a
        repeat of a good sample, ``valid`` 0). ``full``: the check that names why (``verify="full"``)."""
        size = source.batch_size
        planned = source.shard_plan(epoch).ids[index * size:][:size]
        served = batch.meta["sample_id"][:planned.size].numpy()
        for sid in planned[served != planned].tolist():
            if sid not in self.why:
                path = source.paths[sid]
                try:
                    check_image(path, full=full)
                    why = "skipped before the state was saved"
                except BadImageError as exc:
                    why = exc.reason
                self.why[sid] = why
                warnings.warn(f"skipped an unreadable image (on_bad='skip'): {path}: {why}; its row in epoch "
                              f"{epoch}, batch {index} repeats a good sample with meta['valid'] 0", stacklevel=3)

    def state(self) -> dict:
        return {"skipped": sorted(self.why)} if self.why else {}

    def restore(self, state: dict) -> None:
        self.why = {int(i): "skipped before the state was saved" for i in state.get("skipped", ())}
