"""Model saliency: the feedback channel from the model being trained to the saliency-guided methods
(docs/model_saliency.md).

Each extractor is a callable ``(images, labels) -> maps``, ``maps`` ``(N, h, w)`` float32 on the images'
device, that leaves the model as it found it: parameters, ``.grad`` (gradients are taken with
:func:`torch.autograd.grad`, never ``.backward``), the ``training`` flag and every buffer.

BatchNorm choice: the extractors run the model in the mode it is in (a training model normalises with
the batch's statistics, which is what the training forward does and so what its saliency should
describe) and *snapshot and restore every buffer* around the forward, so the running statistics and
``num_batches_tracked`` are bit-for-bit what they were. Switching BatchNorm to eval instead would
compute the saliency of a different function (running statistics) early in training.

Under AMP an extractor runs in the caller's autocast; ``scale`` (a ``GradScaler``'s ``scale``) multiplies the
objective before its gradient is taken, so that float16 gradients do not underflow (the loss-scaling rule);
the map's scale does not matter to any search (``loader.occlude`` divides each map by its maximum).

* :class:`NormGrad` -- Fong & Vedaldi 2019 (arXiv 1910.10651) Eq. 1, after Rebuffi et al. 2020
  ("There and Back Again: Revisiting Backpropagation Saliency Methods", arXiv 2004.02866): at a layer's
  output ``x`` with gradient ``g``, ``s = ||g||_2 * ||x||_2`` over channels per location. Default: layer
  ``maxpool`` and the ground-truth label's logit, Fong & Vedaldi's best ResNet-50 setting (their Table 5).
* :class:`InputGradient` -- KeepAugment (Gong et al. 2021, arXiv 2011.11778): ``max_c |d logit_y / d x|``,
  optionally on a low-resolution copy (their Sec. 3.3 speed-up).
* :class:`EarlyHead` -- KeepAugment's early-loss approximation: an auxiliary head (average pool + linear)
  after an early block, trained with weight 0.3, whose input gradient is the saliency.
* :class:`Attention` -- Attentive CutMix (Walawalkar et al. 2020, arXiv 2003.13048): the channel mean of a
  layer's features, here from the model being trained.
* :class:`SaliencyTap` -- NormGrad, attention or the input gradient read off the normal training step by
  hooks, for the saliency bank (``loader.feedback``): model saliency at no extra pass for every method.
"""
from __future__ import annotations

import contextlib
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from kernels.checks import check_choice, check_fraction, check_int
from kernels.labels import soft_cross_entropy

__all__ = ["NormGrad", "InputGradient", "EarlyHead", "Attention", "SaliencyTap", "normgrad_map", "parse_saliency",
           "NORMGRAD_LAYER", "NORMGRAD_TARGET"]

TARGETS = ("label", "loss")


def _module(model: nn.Module, layer: str) -> nn.Module:
    """The submodule named ``layer`` (``"layer1.0.conv1"``), or a ValueError naming the argument."""
    if not isinstance(layer, str):
        raise ValueError(f"layer must be a submodule name such as 'layer1.0.conv1', got {layer!r}")
    modules = dict(model.named_modules())
    if layer not in modules or layer == "":
        names = [n for n in modules if n and "." not in n]
        raise ValueError(f"layer {layer!r} is not a submodule of {type(model).__name__}; top-level ones: "
                         f"{', '.join(names)}")
    return modules[layer]


@contextlib.contextmanager
def preserved(model: nn.Module):
    """Restore every buffer (BatchNorm running stats, ``num_batches_tracked``) and the mode on exit."""
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        for m, mode in modes:
            m.training = mode


@contextlib.contextmanager
def capture(module: nn.Module):
    """Record the module's output of the next forward in ``out[0]``."""
    out = []
    handle = module.register_forward_hook(lambda _m, _i, o: out.append(o))
    try:
        yield out
    finally:
        handle.remove()


def objective(logits, labels, target, scale=None):
    """TorchRay's ``norm_grad`` backpropagates the sum of the ground-truth logits (``"label"``); ``"loss"``
    is the mean cross entropy a training backward computes. ``scale``: a ``GradScaler``'s ``scale`` (float16),
    applied as to the training loss, to a mean over the rows (the sum's gradient, 1 per logit, times a scale of
    2**16 would overflow float16; each row's map is its own and its scale is divided out by ``loader.occlude``)."""
    if target == "label":
        out = logits.float().gather(1, labels.view(-1, 1).long()).sum()
        if scale is not None:
            out = out / labels.numel()
    else:
        out = F.cross_entropy(logits.float(), labels.long())
    return out if scale is None else scale(out)


def normgrad_map(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Fong & Vedaldi Eq. 1: ``||g||_2 * ||x||_2`` over the channels of an ``(N, C, h, w)`` activation."""
    return (torch.linalg.vector_norm(g.float(), dim=1) * torch.linalg.vector_norm(x.float(), dim=1)).detach()


def input_gradient_map(g: torch.Tensor) -> torch.Tensor:
    """KeepAugment's map: ``max_c |g|`` of an ``(N, C, H, W)`` gradient at the images."""
    return g.detach().abs().amax(dim=1)


def attention_map(x: torch.Tensor) -> torch.Tensor:
    """Attentive CutMix's map: the channel mean of an ``(N, C, h, w)`` feature map, float32."""
    return x.detach().float().mean(dim=1)


#: NormGrad's default layer and target: Fong & Vedaldi 2019's best ResNet-50 setting (Table 5: saliency occlusion
#: at ``maxpool`` 76.57 % top-1 against 76.40 % for joint training without it; ``layer1.0.conv1`` 76.21 %),
#: the gradient of the ground-truth label's logit
NORMGRAD_LAYER, NORMGRAD_TARGET = "maxpool", "label"


class NormGrad:
    """NormGrad saliency at the output of ``layer`` (Fong & Vedaldi 2019, arXiv 1910.10651, Eq. 1; Rebuffi et
    al. 2020, arXiv 2004.02866): ``s = ||g|| * ||x||`` per location, ``g`` the gradient of the ground-truth
    logits' sum (``target="label"``, TorchRay, the paper's) or of the mean cross entropy (``target="loss"``,
    what a training backward already has: the free joint step). Defaults: :data:`NORMGRAD_LAYER`,
    :data:`NORMGRAD_TARGET`."""

    def __init__(self, model: nn.Module, layer: str = NORMGRAD_LAYER, target: str = NORMGRAD_TARGET):
        self.model = model
        self.layer = layer
        self.module = _module(model, layer)
        self.target = check_choice("target", target, TARGETS)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, scale=None) -> torch.Tensor:
        with preserved(self.model), torch.enable_grad(), capture(self.module) as out:
            logits = self.model(images.detach())
            x = out[0]
            (g,) = torch.autograd.grad(objective(logits, labels, self.target, scale), x)
        return normgrad_map(x, g)


class InputGradient:
    """KeepAugment's saliency (Gong et al. 2021, arXiv 2011.11778): ``max over channels |d logit_y / d x|``.
    ``scale < 1`` is their low-resolution approximation: bicubic down to ``round(scale * side)``, the
    gradient there, bilinear back to full size (``align_corners=False`` both ways)."""

    def __init__(self, model: nn.Module, scale: float = 1.0, target: str = "label"):
        self.model = model
        self.scale = check_fraction("scale", scale)
        self.target = check_choice("target", target, TARGETS)

    def __call__(self, images, labels, scale=None):
        h, w = images.shape[-2:]
        x = images.detach()
        if self.scale != 1.0:
            x = F.interpolate(x, size=(max(1, round(h * self.scale)), max(1, round(w * self.scale))),
                              mode="bicubic", align_corners=False)
        x = x.requires_grad_(True)
        with preserved(self.model), torch.enable_grad():
            (g,) = torch.autograd.grad(objective(self.model(x), labels, self.target, scale), x)
        s = input_gradient_map(g)
        if self.scale != 1.0:
            s = F.interpolate(s[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        return s.float().detach()


class _Stop(Exception):
    pass


class EarlyHead(nn.Module):
    """KeepAugment's early-loss approximation (Gong et al. 2021, arXiv 2011.11778, Sec. 3.3): an auxiliary
    classifier (global average pool + linear) on the output of ``after``; the training loop adds
    :meth:`aux_loss` with weight 0.3 (their setting), and the saliency is the input gradient of the
    head's ground-truth logit, which backpropagates through the early layers only.

    Give the head's parameters to the optimizer (``list(model.parameters()) + list(head.parameters())``).
    ``channels`` defaults to the feature width of ``after`` (its last BatchNorm / Conv2d)."""

    def __init__(self, model: nn.Module, after: str = "layer1", num_classes: int | None = None,
                 channels: int | None = None):
        super().__init__()
        check_int("num_classes", num_classes)
        block = _module(model, after)
        if channels is None:
            for m in reversed(list(block.modules())):
                if isinstance(m, nn.BatchNorm2d):
                    channels = m.num_features
                    break
                if isinstance(m, nn.Conv2d):
                    channels = m.out_channels
                    break
        if channels is None:
            raise ValueError(f"cannot infer the feature width of {after!r}: pass channels=")
        self.after = after
        # neither is a submodule: the head's parameters() are its own (the optimizer gets the model's once)
        self.__dict__["model"] = model
        self.__dict__["_block"] = block
        self.fc = nn.Linear(int(channels), num_classes)
        self._features = None
        self._hook = block.register_forward_hook(self._keep)

    def _keep(self, _m, _i, out):
        self._features = out

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(features, 1).flatten(1))

    def _prefix(self, images):
        """The features at ``after`` without running the rest of the model (stops the forward there)."""
        def stop(_m, _i, out):
            raise _Stop(out)

        handle = self._block.register_forward_hook(stop)
        try:
            self.model(images)
        except _Stop as s:
            return s.args[0]
        finally:
            handle.remove()
        raise RuntimeError(f"the forward never reached {self.after!r}")

    def aux_loss(self, images, labels, targets=None):
        """The head's cross entropy on the features of the model's latest forward on ``images`` (captured by a
        hook, so no extra forward), or of a prefix forward if there was none. ``targets``: soft targets."""
        feats = self._features
        if feats is None or feats.shape[0] != images.shape[0]:
            feats = self._prefix(images)
        self._features = None
        logits = self(feats)
        if targets is not None:
            return soft_cross_entropy(logits, targets).mean()
        return F.cross_entropy(logits.float(), labels.long())

    def __call__(self, *args, **kwargs):
        if len(args) == 2 and set(kwargs) <= {"scale"} and args[1].dtype in (torch.int64, torch.int32):
            return self.saliency(*args, **kwargs)
        return super().__call__(*args, **kwargs)

    def saliency(self, images, labels, scale=None):
        """``max_c |d head_logit_y / d x|`` (the head's ground-truth logit through the early layers)."""
        x = images.detach().requires_grad_(True)
        with preserved(self.model), torch.enable_grad():
            saved = self._features
            logits = self(self._prefix(x))
            self._features = saved
            (g,) = torch.autograd.grad(objective(logits, labels, "label", scale), x)
        return g.abs().amax(dim=1).float().detach()


class Attention:
    """Attentive CutMix's map (Walawalkar et al. 2020, arXiv 2003.13048): the channel mean of ``layer``'s
    output, from the model being trained (no gradient)."""

    def __init__(self, model: nn.Module, layer: str = "layer4"):
        self.model = model
        self.layer = layer
        self.module = _module(model, layer)

    @torch.no_grad()
    def __call__(self, images, labels=None, scale=None):
        with preserved(self.model), capture(self.module) as out:
            self.model(images)
        return attention_map(out[0])


class SaliencyTap:
    """Maps from the normal training step, with no extra pass: the saliency bank's feed (docs/model_saliency.md,
    ``bank``; ``loader.feedback(batch, tap.maps())``).

    * ``"normgrad"`` -- NormGrad (Fong & Vedaldi 2019, arXiv 1910.10651, Eq. 1) at ``layer``'s output from the
      training backward itself: a forward hook keeps the activation and a tensor hook its gradient, the
      gradient of the *training loss* (:class:`NormGrad` with ``target="loss"``);
    * ``"attention"`` -- the channel mean of ``layer``'s output in the training forward (Attentive CutMix,
      arXiv 2003.13048, from the online model);
    * ``"input_grad"`` -- KeepAugment's ``max_c |d loss / d x|`` (arXiv 2011.11778; the training loss's
      gradient instead of the label logit's, which a training backward does not have): :meth:`watch`
      makes the images a leaf that requires grad, which costs the first layer's input gradient only.

    Use: ``x = tap.watch(images)`` before the forward, ``logits = model(x)``, the loss's ``backward()``, then
    ``maps = tap.maps()`` (``(N, h, w)`` float32, detached, on the model's device). The hooks act only on the
    forward right after :meth:`watch`, so evaluation and other forwards are untouched.

    The tap's one forward hook goes with :meth:`remove`, at the end of a ``with SaliencyTap(...) as tap:``
    block, or when the tap is garbage-collected (the hook holds the tap weakly): taps made and dropped in a
    loop leave no hooks on the model."""

    KINDS = ("normgrad", "attention", "input_grad")
    #: the layer of each kind when none is given (NormGrad: Fong & Vedaldi's Table 5; attention: Attentive
    #: CutMix's last conv block)
    LAYERS = {"normgrad": NORMGRAD_LAYER, "attention": "layer4", "input_grad": None}

    def __init__(self, model: nn.Module, kind: str, layer: str | None = None):
        if kind not in self.KINDS:
            raise ValueError(f"saliency tap kind must be one of {self.KINDS}, got {kind!r}")
        self.kind = kind
        self.layer = layer or self.LAYERS[kind]
        self._armed = False
        self._act = self._grad = self._input = None
        self._handle = None
        if self.layer is not None:
            ref = weakref.ref(self)

            def hook(module, inputs, out):  # weak: a dropped tap's hook does nothing and is removed with it
                tap = ref()
                if tap is not None:
                    tap._forward_hook(module, inputs, out)

            self._handle = _module(model, self.layer).register_forward_hook(hook)
            self._finalizer = weakref.finalize(self, self._handle.remove)

    def remove(self) -> None:
        """Take the tap's hook off the model (idempotent); the tap reads nothing afterwards."""
        if self._handle is not None:
            self._finalizer()
            self._handle = None
        self._armed = False

    def __enter__(self) -> "SaliencyTap":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def _forward_hook(self, _m, _i, out):
        if not self._armed:
            return
        self._armed = False
        if self.kind == "attention":
            self._act = attention_map(out)
        else:
            self._act = out.detach()
            if out.requires_grad:
                out.register_hook(self._keep_grad)

    def _keep_grad(self, grad):
        self._grad = grad.detach()

    def watch(self, images: torch.Tensor) -> torch.Tensor:
        """Arm the hooks for the next forward; returns the images to feed it."""
        self._act = self._grad = self._input = None
        if self.kind == "input_grad":
            self._input = images.detach().requires_grad_(True)
            return self._input
        self._armed = True
        return images

    def maps(self) -> torch.Tensor:
        """The watched step's maps (after its backward for ``normgrad`` / ``input_grad``)."""
        if self.kind == "input_grad":
            grad = None if self._input is None else self._input.grad
            if grad is None:
                raise RuntimeError("input_grad: no gradient at the images; call watch() before the forward and "
                                   "maps() after the loss's backward()")
            out = input_gradient_map(grad).float()
        elif self.kind == "attention":
            if self._act is None:
                raise RuntimeError(f"attention: {self.layer} did not run since watch()")
            out = self._act
        else:
            if self._grad is None:
                raise RuntimeError(f"normgrad: no gradient reached {self.layer}; call watch() before the forward "
                                   "and maps() after the loss's backward()")
            out = normgrad_map(self._act, self._grad)
        self._act = self._grad = self._input = None
        return out

    @classmethod
    def parse(cls, text: str, model: nn.Module) -> "SaliencyTap":
        """``normgrad[:LAYER[:loss]]``, ``attention[:LAYER]`` or ``input_grad``."""
        kind, _, rest = text.partition(":")
        if kind not in cls.KINDS:
            raise ValueError(f"a saliency bank is fed by normgrad:LAYER, attention:LAYER or input_grad (maps the "
                             f"training step already has), got {text!r}")
        layer, _, target = rest.partition(":")
        if kind == "input_grad" and rest:
            raise ValueError(f"input_grad takes no layer or scale when it feeds the bank, got {text!r}")
        if target and (kind != "normgrad" or target != "loss"):
            raise ValueError(f"a tap reads the training backward, whose gradient is the loss's: {kind} takes "
                             f"{'no target' if kind != 'normgrad' else 'no target or :loss'}, got {text!r}")
        return cls(model, kind, layer or None)


def parse_saliency(text: str, model: nn.Module, num_classes: int | None = None):
    """``image`` (None: the graph's image saliency), ``normgrad[:LAYER[:label|loss]]`` (default
    :data:`NORMGRAD_LAYER`, :data:`NORMGRAD_TARGET`), ``input_grad[:SCALE]`` (also ``input_grad:scale=0.5``),
    ``early_head[:AFTER]``, ``attention[:LAYER]``. ``model``: the module itself (not a DDP wrapper)."""
    kind, _, arg = text.partition(":")
    if kind == "normgrad":
        layer, _, target = arg.partition(":")
        return NormGrad(model, layer or NORMGRAD_LAYER, target=target or NORMGRAD_TARGET)
    if ":" in arg:
        raise ValueError(f"{kind} takes one argument, got {text!r}")
    arg = arg.split("=", 1)[1] if "=" in arg else arg
    if kind == "image":
        return None
    if kind == "input_grad":
        try:
            scale = float(arg) if arg else 1.0
        except ValueError:
            raise ValueError(f"input_grad:SCALE takes a number in (0, 1], got {text!r}") from None
        return InputGradient(model, scale)
    if kind == "early_head":
        return EarlyHead(model, arg or "layer1", num_classes=num_classes)
    if kind == "attention":
        return Attention(model, arg or "layer4")
    raise ValueError(f"saliency must be image, normgrad[:LAYER[:label|loss]], input_grad[:SCALE], "
                     f"early_head[:AFTER] or attention[:LAYER], got {text!r}")
