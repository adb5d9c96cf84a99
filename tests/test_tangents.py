"""J v read off a forward pass's graph (gdwlib.tangents) against torch's own forward-mode AD, in float64."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jvp

from gdwlib.bilevel import meta_gradient
from gdwlib.models import MODELS, build_model
from gdwlib.tangents import graph_jvp

from conftest import cuda_only, small_convnet

SIZES = {"resnet18": (3, 32)}   # (channels, image size); the others take 1 x 28 x 28


def forward_mode(model, x, tangents):
    """``J v`` by torch.func.jvp on a functional copy (buffers copied, as a look-ahead forward)."""
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    def f(p):  # buffers copied inside: BatchNorm writes its running statistics into them
        return functional_call(model, {**p, **{k: b.clone() for k, b in model.named_buffers()}}, (x,))
    _, out = jvp(f, (params,),
                 ({k: tangents.get(k, torch.zeros_like(p)) for k, p in params.items()},))
    return out


def by_tensor(model, tangents):
    return {p: tangents[k] for k, p in model.named_parameters() if k in tangents}


def relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_network_matches_forward_mode_ad(float64, name):
    c, s = SIZES.get(name, (1, 28))
    model = build_model(name, 10, c, s).train()
    x = torch.randn(8, c, s, s)
    v = {k: torch.randn_like(p) for k, p in model.named_parameters()}
    got = graph_jvp(model(x), by_tensor(model, v))
    assert got is not None, f"{name} holds an operation without a tangent rule"
    assert got.shape == (8, 10) and not got.requires_grad
    assert relative_error(got, forward_mode(model, x, v)) < 1e-12


def test_missing_tangents_count_as_zero_and_frozen_parameters_are_skipped(float64):
    model = small_convnet()
    model[0].weight.requires_grad_(False)        # the first conv then only has its bias in the graph
    x = torch.randn(6, 1, 8, 8)
    v = {k: torch.randn_like(p) for k, p in model.named_parameters() if k.startswith(("0.", "1."))}
    got = graph_jvp(model(x), by_tensor(model, v))
    expected = forward_mode(model, x, {k: t for k, t in v.items() if k != "0.weight"})
    assert relative_error(got, expected) < 1e-12


def test_train_mode_batch_norm_rule_against_finite_differences(float64):
    """The BatchNorm rule (the backward kernel as the input Jacobian) on its own, against central
    differences of F.batch_norm in its input, weight and bias at once."""
    x, w, b = torch.randn(7, 3, 4, 4), torch.rand(3) + 0.5, torch.randn(3)
    dx, dw, db = torch.randn_like(x), torch.randn_like(w), torch.randn_like(b)
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    got = graph_jvp(F.batch_norm(leaves[0], None, None, leaves[1], leaves[2], training=True),
                    dict(zip(leaves, (dx, dw, db))))
    bn = lambda h: F.batch_norm(x + h * dx, None, None, w + h * dw, b + h * db, training=True)  # noqa: E731
    h = 1e-6
    assert relative_error(got, (bn(h) - bn(-h)) / (2 * h)) < 1e-8


def test_unsupported_operations_and_eval_mode_fall_back(float64):
    tanh_net = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    x = torch.randn(5, 4)
    assert graph_jvp(tanh_net(x), {p: torch.randn_like(p) for p in tanh_net.parameters()}) is None
    net = small_convnet().eval()   # BatchNorm with running statistics: not the train-mode rule
    assert graph_jvp(net(torch.randn(6, 1, 8, 8)), {p: torch.randn_like(p) for p in net.parameters()}) is None


@pytest.mark.parametrize("net", ["tanh", "eval"])
def test_meta_gradient_falls_back_to_forward_mode_where_no_rule_applies(float64, net):
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 5)) if net == "tanh" else small_convnet().eval()
    shape = (6, 4) if net == "tanh" else (6, 1, 8, 8)
    x, x_meta, y_meta = torch.randn(*shape), torch.randn(*shape), torch.randint(0, 5, (6,))
    G = 0.2 * torch.randn(6, 5)
    given = meta_gradient(model, x, G, x_meta, y_meta, 0.3, logits=model(x))
    ref = meta_gradient(model, x, G, x_meta, y_meta, 0.3, method="reference")
    assert relative_error(given.grad_G, ref.grad_G) < 1e-10


def test_a_freed_graph_is_an_error(float64):
    model = small_convnet()
    out = model(torch.randn(6, 1, 8, 8))
    out.sum().backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        graph_jvp(out, {p: torch.randn_like(p) for p in model.parameters()})


def test_meta_gradient_read_off_the_graph_equals_the_second_forward(float64):
    """The training loop's path (J v from the caller's forward) against the path before it
    (torch.func.jvp, a second forward), on a network with train-mode BatchNorm."""
    model = small_convnet()
    x, x_meta, y_meta = torch.randn(6, 1, 8, 8), torch.randn(6, 1, 8, 8), torch.randint(0, 5, (6,))
    G = 0.2 * torch.randn(6, 5)
    graph = meta_gradient(model, x, G, x_meta, y_meta, 0.3, logits=model(x))
    second = meta_gradient(model, x, G, x_meta, y_meta, 0.3, method="functional-jvp")
    assert relative_error(graph.grad_G, second.grad_G) < 1e-12
    assert graph.meta_loss.item() == pytest.approx(second.meta_loss.item(), rel=1e-14)


@cuda_only
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])   # float32 runs cuDNN's BatchNorm
def test_cuda_graph_matches_forward_mode_ad(dtype):
    model = build_model("resnet32", 10, 3, 32).to("cuda", dtype).train()
    x = torch.randn(16, 3, 32, 32, device="cuda", dtype=dtype)
    v = {k: torch.randn_like(p) for k, p in model.named_parameters()}
    got = graph_jvp(model(x), by_tensor(model, v))
    assert got is not None, "the CUDA graph holds an operation without a tangent rule"
    assert relative_error(got, forward_mode(model, x, v)) < (1e-12 if dtype == torch.float64 else 1e-2)
