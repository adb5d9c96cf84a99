"""Eq. 1-3, each against autograd or a closed form."""
import pytest
import torch
import torch.nn.functional as F

from gdwlib.gradients import D1, eq3_terms, f_omega, manipulated_gradient, weighted_probability


def random_simplex(n, C, dtype=torch.float64):
    return torch.softmax(3 * torch.randn(n, C, dtype=dtype), dim=1)


def test_d1_is_autograd_gradient_of_cross_entropy_wrt_logits(float64):
    logits = torch.randn(8, 7, requires_grad=True)
    y = torch.randint(0, 7, (8,))
    (expected,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), logits)
    torch.testing.assert_close(D1(logits.detach(), y), expected, rtol=0, atol=1e-14)


def test_d1_times_d2_is_the_parameter_gradient(convnet, float64):
    """Eq. 1 for one instance: D1 (1 x C) times D2 = dlogits/dtheta (C x P) is dL/dtheta."""
    convnet.eval()  # one instance: use running statistics so the instance stands alone
    x, y = torch.randn(1, 1, 8, 8), torch.tensor([3])
    params = dict(convnet.named_parameters())
    flat = torch.cat([p.flatten() for p in params.values()])

    def logits_of(theta):
        chunks, i = {}, 0
        for k, p in params.items():
            chunks[k] = theta[i:i + p.numel()].view_as(p)
            i += p.numel()
        return torch.func.functional_call(convnet, chunks, (x,))[0]

    D2 = torch.autograd.functional.jacobian(logits_of, flat)  # (C, P)
    logits = logits_of(flat)
    d1 = D1(logits[None].detach(), y)  # (1, C)
    loss = F.cross_entropy(convnet(x), y)
    expected = torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(params.values()))])
    torch.testing.assert_close((d1 @ D2)[0], expected, rtol=1e-10, atol=1e-12)


def test_d1_clamp_matches_the_public_code_formula(float64):
    logits = torch.tensor([[9.0, 0.0, -1.0], [0.0, 0.5, 0.2], [0.0, 12.0, 1.0]])
    y = torch.tensor([0, 2, 0])
    p = torch.softmax(logits, 1)
    expected = p.clamp(max=0.999) - F.one_hot(y, 3)
    torch.testing.assert_close(D1(logits, y, clamp_max=0.999), expected, rtol=0, atol=1e-15)


def test_d1_target_entry_stays_accurate_when_softmax_saturates():
    """In float32 p_t rounds to 1 at a margin of ~17; the target entry must still be -sum_{j!=t} p_j."""
    logits64 = torch.tensor([[30.0, 0.0, -2.0], [0.0, 25.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    exact = -torch.exp(logits64[[0, 0], [1, 2]] - 30.0).sum(), -torch.exp(logits64[[1, 1], [0, 2]] - 25.0).sum()
    assert torch.softmax(logits64.float(), 1)[0, 0] == 1.0  # the naive p_t - 1 would be 0
    d1 = D1(logits64.float(), y)
    assert d1[0, 0].item() == pytest.approx(exact[0].item(), rel=1e-5)
    assert d1[1, 1].item() == pytest.approx(exact[1].item(), rel=1e-5)


@pytest.mark.parametrize("w", [0.3, 1.0, 2.5])
def test_equal_class_level_weights_are_instance_weighting(convnet, batches, w):
    """Eq. 2 with omega = w 1: the manipulated gradient is the gradient of w * loss."""
    x, y, _, _ = batches
    omega = torch.full((6, 5), w)
    got = manipulated_gradient(convnet, x, y, omega)
    loss = w * F.cross_entropy(convnet(x), y)
    expected = torch.autograd.grad(loss, list(convnet.parameters()))
    for g, e in zip(got.values(), expected):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


def test_instance_weights_vary_per_row(convnet, batches):
    x, y, _, _ = batches
    w = torch.rand(6)
    got = manipulated_gradient(convnet, x, y, w[:, None].expand(6, 5))
    loss = (w * F.cross_entropy(convnet(x), y, reduction="none")).mean()
    for g, e in zip(got.values(), torch.autograd.grad(loss, list(convnet.parameters()))):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


def test_general_omega_is_the_sum_of_weighted_class_flows(convnet, batches):
    """Eq. 2: sum over classes c of omega_c * D1_c * dlogit_c/dtheta, one autograd call per class."""
    x, y, _, _ = batches
    omega = torch.rand(6, 5) * 2
    got = manipulated_gradient(convnet, x, y, omega)
    params = list(convnet.parameters())
    logits = convnet(x)
    p = torch.softmax(logits.detach(), 1)
    d1 = p - F.one_hot(y, 5)
    expected = [torch.zeros_like(q) for q in params]
    for c in range(5):
        flows = torch.autograd.grad(logits[:, c], params, grad_outputs=omega[:, c] * d1[:, c] / 6, retain_graph=True)
        expected = [e + f for e, f in zip(expected, flows)]
    for g, e in zip(got.values(), expected):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("C", [2, 3, 10, 100, 1000])
def test_eq3_decomposition_holds(C, float64):
    n = 16
    omega = torch.rand(n, C) * 3
    p = random_simplex(n, C)
    y = torch.randint(0, C, (n,))
    first, second = eq3_terms(omega, p, y)
    lhs = omega * (p - F.one_hot(y, C))
    torch.testing.assert_close(first + second, lhs, rtol=0, atol=1e-10)


def test_eq3_second_term_vanishes_for_equal_weights(float64):
    p = random_simplex(5, 4)
    y = torch.randint(0, 4, (5,))
    _, second = eq3_terms(torch.full((5, 4), 0.7), p, y)
    assert second.abs().max() < 1e-15


def test_weighted_probability_closed_form(float64):
    omega = torch.tensor([[1.0, 2.0, 1.0]])
    p = torch.tensor([[0.5, 0.25, 0.25]])
    # omega * p = (0.5, 0.5, 0.25), sum 1.25
    torch.testing.assert_close(weighted_probability(omega, p), torch.tensor([[0.4, 0.4, 0.2]]))


def test_f_omega_is_elementwise(float64):
    omega = torch.tensor([[2.0, 0.5]])
    d1 = torch.tensor([[0.3, -0.3]])
    torch.testing.assert_close(f_omega(omega, d1), torch.tensor([[0.6, -0.15]]))


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: D1(torch.randn(4, 3), torch.tensor([0, 1, 2])), "targets"),
        (lambda: D1(torch.randn(3, 3), torch.tensor([0, 1, 3])), "targets"),
        (lambda: D1(torch.randn(3, 3), torch.tensor([0, -1, 2])), "targets"),
        (lambda: D1(torch.randn(3), torch.tensor([0, 1, 2])), "logits"),
        (lambda: D1(torch.tensor([[0.0, float("nan")]]), torch.tensor([0])), "logits"),
        (lambda: D1(torch.randn(2, 3), torch.tensor([0.0, 1.0])), "targets"),
        (lambda: D1(torch.randn(2, 3), torch.tensor([0, 1]), clamp_max=1.5), "clamp_max"),
        (lambda: f_omega(torch.ones(2, 3), torch.ones(2, 4)), "omega"),
        (lambda: f_omega(torch.tensor([[1.0, float("nan")]]), torch.ones(1, 2)), "omega"),
        (lambda: weighted_probability(torch.zeros(1, 2), torch.tensor([[0.5, 0.5]])), "omega"),
        (lambda: weighted_probability(torch.ones(1, 2), torch.tensor([[1.5, -0.5]])), "p"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        call()
