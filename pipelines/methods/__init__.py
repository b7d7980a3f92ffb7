"""The method registry: one module per paper, each owning its options, draws, graph fragment, training-side
step and how it reports ``lam``, ``partner`` and ``boxes`` (:class:`pipelines.methods.base.Method`).

``get_method("cutmix", alpha=1.0)``, ``get_method(CutMix(alpha=1.0))`` and
``get_method("cutmix:alpha=1.0,p=0.5")`` give the same method; an option the method does not have is a
``ValueError`` naming the method and listing its options. A new method is a new module whose class is
listed in :data:`REGISTRY`.
"""
from __future__ import annotations

import ast

from pipelines.methods.attentive_cutmix import AttentiveCutMix
from pipelines.methods.base import CopyPlan, Fragment, InputSpec, Method
from pipelines.methods.cutmix import CutMix
from pipelines.methods.cutmix_mixup import CutMixMixUp
from pipelines.methods.cutout import Cutout
from pipelines.methods.hide_and_seek import HideAndSeek
from pipelines.methods.keep_augment import KeepCutMix, KeepCutout, KeepPaste
from pipelines.methods.mixup import MixUp
from pipelines.methods.none import NoAugment
from pipelines.methods.random_erasing import RandomErasing
from pipelines.methods.saliency_occlusion import SaliencyOcclusion
from pipelines.methods.saliencymix import SaliencyMix

REGISTRY: dict[str, type[Method]] = {cls.name: cls for cls in (
    NoAugment, Cutout, HideAndSeek, CutMix, MixUp, CutMixMixUp, SaliencyMix, AttentiveCutMix,
    SaliencyOcclusion, KeepCutout, KeepPaste, KeepCutMix, RandomErasing)}
METHODS = tuple(REGISTRY)

__all__ = ["REGISTRY", "METHODS", "Method", "CopyPlan", "Fragment", "InputSpec", "get_method", "parse_method",
           *(cls.__name__ for cls in REGISTRY.values())]


def get_method(method, **options) -> Method:
    """A :class:`Method` from a method object, a registry name plus options, or a ``"name:k=v,..."`` string."""
    if isinstance(method, Method):
        if options:
            raise ValueError(f"options {sorted(options)} were given beside the method object {method}; "
                             "set them on the object instead")
        return method
    if not isinstance(method, str):
        raise ValueError(f"method must be a name, a 'name:key=value,...' string or a Method, got {method!r}")
    if ":" in method:
        name, parsed = parse_method(method)
        both = sorted(set(parsed) & set(options))
        if both:
            raise ValueError(f"option(s) {both} given both in {method!r} and as keyword arguments")
        method, options = name, {**parsed, **options}
    cls = REGISTRY.get(method)
    if cls is None:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    unknown = sorted(set(options) - set(cls.options()))
    if unknown:
        raise ValueError(f"method {method!r} has no option(s) {', '.join(unknown)}; its options are "
                         f"{', '.join(cls.options())}")
    return cls(**options)


def parse_method(text: str) -> tuple[str, dict]:
    """``"cutmix:alpha=1.0,p=0.5"`` -> ``("cutmix", {"alpha": 1.0, "p": 0.5})``.

    Values are Python literals (numbers, strings, tuples: ``patch_sizes=(56,)``); anything else is kept
    as a string (``saliency_input=official``). Commas inside parentheses belong to the value."""
    name, _, rest = text.partition(":")
    options, depth, item = {}, 0, ""
    for ch in rest + ",":
        if ch == "," and depth == 0:
            if item.strip():
                key, eq, value = item.partition("=")
                if not eq or not key.strip():
                    raise ValueError(f"cannot parse {item.strip()!r} in method string {text!r}: expected key=value")
                try:
                    options[key.strip()] = ast.literal_eval(value.strip())
                except (ValueError, SyntaxError):
                    options[key.strip()] = value.strip()
            item = ""
            continue
        depth += ch in "([" and 1 or 0
        depth -= ch in ")]" and 1 or 0
        item += ch
    return name.strip(), options
