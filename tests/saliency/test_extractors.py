"""Model saliency extractors (pipelines.saliency.extractors) against plain autograd restatements of the papers'
definitions on a torchvision ResNet-18: Fong & Vedaldi's Eq. 1 with hooks + retain_grad + norms,
KeepAugment's input gradient with torch.autograd.grad, its low-resolution pipeline with F.interpolate,
and the model state (.grad, training, buffers) untouched."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision

from pipelines.saliency.extractors import Attention, EarlyHead, InputGradient, NormGrad, parse_saliency

N, SIDE, K = 4, 64, 10


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=K).train()


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(N, 3, SIDE, SIDE, generator=g), torch.randint(0, K, (N,), generator=g)


def oracle_normgrad(model, layer, images, labels, target):
    """Eq. 1 restated: a forward hook keeps the layer's output, retain_grad, .backward on a deep copy
    (the copy's own BN buffers move; the original is not touched), then the channel norms."""
    m = copy.deepcopy(model)
    kept = {}

    def hook(_mod, _inp, out):
        out.retain_grad()
        kept["x"] = out

    dict(m.named_modules())[layer].register_forward_hook(hook)
    logits = m(images)
    if target == "label":
        obj = logits[torch.arange(len(labels)), labels].sum()
    else:
        obj = F.cross_entropy(logits, labels)
    obj.backward()
    x = kept["x"]
    return (x.grad.pow(2).sum(1).sqrt() * x.detach().pow(2).sum(1).sqrt())


@pytest.mark.parametrize("target", ["label", "loss"])
@pytest.mark.parametrize("layer", ["maxpool", "layer1.0.conv1", "layer2.0.conv1"])
def test_normgrad_is_eq1(model, data, layer, target):
    images, labels = data
    got = NormGrad(model, layer, target=target)(images, labels)
    want = oracle_normgrad(model, layer, images, labels, target)
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert got.shape[0] == N and got.shape[1] == {"maxpool": 16, "layer1.0.conv1": 16, "layer2.0.conv1": 8}[layer]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6 * float(want.abs().max()))


def test_input_gradient_is_autograd_of_the_label_logit(model, data):
    images, labels = data
    m = copy.deepcopy(model)
    x = images.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(m(x)[torch.arange(N), labels].sum(), x)
    want = g.abs().max(dim=1).values
    got = InputGradient(model)(images, labels)
    assert got.shape == (N, SIDE, SIDE)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)


def test_low_resolution_input_gradient(model, data):
    images, labels = data
    m = copy.deepcopy(model)
    small = F.interpolate(images, size=(32, 32), mode="bicubic", align_corners=False).requires_grad_(True)
    (g,) = torch.autograd.grad(m(small)[torch.arange(N), labels].sum(), small)
    want = F.interpolate(g.abs().max(dim=1, keepdim=True).values, size=(SIDE, SIDE), mode="bilinear",
                         align_corners=False)[:, 0]
    got = InputGradient(model, scale=0.5)(images, labels)
    assert got.shape == (N, SIDE, SIDE)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)


def test_early_head_saliency_and_aux_loss(model, data):
    images, labels = data
    torch.manual_seed(2)
    head = EarlyHead(model, "layer1", num_classes=K)
    # oracle: the early layers of ResNet-18 spelled out, pool + linear, autograd of the label logit
    m = copy.deepcopy(model)
    x = images.clone().requires_grad_(True)
    f = m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x)))))
    logits = head.fc(f.mean(dim=(2, 3)))
    (g,) = torch.autograd.grad(logits[torch.arange(N), labels].sum(), x)
    torch.testing.assert_close(head(images, labels), g.abs().max(1).values, rtol=1e-4, atol=1e-7)
    # aux_loss from the features of the model's own forward (hook), equal to the spelled-out head loss
    model(images)  # the training forward the hook listens to
    with torch.no_grad():
        want = F.cross_entropy(head.fc(f.detach().mean(dim=(2, 3))), labels)
    torch.testing.assert_close(head.aux_loss(images, labels).detach(), want, rtol=1e-5, atol=1e-6)
    assert [n for n, _ in head.named_parameters()] == ["fc.weight", "fc.bias"]  # not the model's
    with pytest.raises(ValueError, match="num_classes"):
        EarlyHead(model, "layer1")


def test_attention_is_channel_mean(model, data):
    images, labels = data
    m = copy.deepcopy(model)
    with torch.no_grad():
        f = m.layer4(m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(images))))))))
    torch.testing.assert_close(Attention(model, "layer4")(images, labels), f.mean(1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("training", [True, False])
def test_extractors_leave_the_model_as_found(data, training):
    images, labels = data
    torch.manual_seed(3)
    model = torchvision.models.resnet18(weights=None, num_classes=K)
    # one real step so .grad and the running stats are not at their initial values
    F.cross_entropy(model(images), labels).backward()
    model.train(training)
    head = EarlyHead(model, "layer1", num_classes=K)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    extractors = [NormGrad(model, "layer1.0.conv1"), NormGrad(model, "maxpool", target="loss"),
                  InputGradient(model), InputGradient(model, scale=0.5), head, Attention(model)]
    for ex in extractors:
        out = ex(images, labels)
        assert out.dtype == torch.float32 and out.ndim == 3 and out.shape[0] == N
        assert model.training == training and all(m.training == training for m in model.modules())
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k]), (type(ex).__name__, k)
        for k, p in model.named_parameters():
            assert torch.equal(p.grad, grads[k]), (type(ex).__name__, k)


def test_bad_arguments_are_named(model):
    with pytest.raises(ValueError, match="layer"):
        NormGrad(model, "layer9")
    with pytest.raises(ValueError, match="target"):
        NormGrad(model, "layer1", target="logit")
    with pytest.raises(ValueError, match="scale"):
        InputGradient(model, scale=0.0)
    with pytest.raises(ValueError, match="saliency"):
        parse_saliency("gradcam", model)
    assert isinstance(parse_saliency("input_grad:scale=0.5", model), InputGradient)
    assert parse_saliency("input_grad:0.5", model).scale == 0.5
    assert parse_saliency("normgrad:layer2.0.conv1", model).layer == "layer2.0.conv1"


def test_normgrad_defaults_and_the_command_line_target(model):
    """Fong & Vedaldi's best ResNet-50 setting (Table 5): maxpool, the ground-truth label's logit; the command
    line's normgrad:LAYER:label|loss."""
    from pipelines.saliency.extractors import SaliencyTap

    ng = NormGrad(model)
    assert (ng.layer, ng.target) == ("maxpool", "label")
    assert (parse_saliency("normgrad", model).layer, parse_saliency("normgrad", model).target) == ("maxpool", "label")
    got = parse_saliency("normgrad:layer2.0.conv1:loss", model)
    assert (got.layer, got.target) == ("layer2.0.conv1", "loss")
    assert parse_saliency("normgrad::loss", model).layer == "maxpool"
    with pytest.raises(ValueError, match="target"):
        parse_saliency("normgrad:maxpool:logit", model)
    with pytest.raises(ValueError, match="one argument"):
        parse_saliency("attention:layer4:loss", model)
    with pytest.raises(ValueError, match="input_grad:SCALE"):
        parse_saliency("input_grad:half", model)
    assert SaliencyTap.parse("normgrad", model).layer == "maxpool"
    assert SaliencyTap.parse("normgrad:maxpool:loss", model).layer == "maxpool"
    with pytest.raises(ValueError, match="training backward"):
        SaliencyTap.parse("normgrad:maxpool:label", model)


def test_taps_leave_no_hooks_behind(data):
    """issue 23: 500 taps must not leave 500 hooks -- remove(), a with block, or dropping the tap."""
    import gc

    from pipelines.saliency.extractors import SaliencyTap

    images, labels = data
    net = torchvision.models.resnet18(weights=None, num_classes=K)
    layer = net.maxpool
    for _ in range(5):
        with SaliencyTap(net, "normgrad") as tap:
            logits = net(tap.watch(images))
            F.cross_entropy(logits, labels).backward()
            assert tap.maps().shape == (N, 16, 16)
    assert len(layer._forward_hooks) == 0
    for _ in range(500):
        with SaliencyTap(net, "normgrad"):
            pass
    for _ in range(500):
        SaliencyTap(net, "attention").remove()
    for _ in range(500):
        SaliencyTap(net, "attention")  # dropped without remove()
    gc.collect()
    assert len(layer._forward_hooks) == 0 and len(net.layer4._forward_hooks) == 0
    tap = SaliencyTap(net, "attention")
    tap.remove()
    tap.remove()  # idempotent
    net(tap.watch(images))
    with pytest.raises(RuntimeError, match="did not run"):
        tap.maps()  # a removed tap reads nothing
