"""Eq. 4-6: the zero-mean constraint, checked against closed forms and autograd."""
import math

import pytest
import torch
import torch.nn.functional as F

from gdwlib.constraint import figure1_flows, target_weight, zero_mean_constraint
from gdwlib.gradients import D1, weighted_probability


def setting(n=12, C=6):
    logits = 2 * torch.randn(n, C, dtype=torch.float64)
    y = torch.randint(0, C, (n,))
    omega = torch.rand(n, C, dtype=torch.float64) * 2 + 0.05
    return logits, y, omega


def test_eq5_manipulated_gradient_sums_to_zero():
    logits, y, omega = setting()
    d1 = D1(logits, y)
    constrained = zero_mean_constraint(omega, d1, y)
    assert (constrained * d1).sum(1).abs().max() < 1e-14


def test_eq5_holds_with_the_public_code_clamp():
    logits, y, omega = setting()
    logits[0, y[0]] += 20  # p_t above 0.999: the clamp is active
    d1 = D1(logits, y, clamp_max=0.999)
    constrained = zero_mean_constraint(omega, d1, y)
    assert (constrained * d1).sum(1).abs().max() < 1e-14


def test_eq6_manipulated_gradient_is_target_weight_times_p_prime_minus_y():
    logits, y, omega = setting()
    p = torch.softmax(logits, 1)
    d1 = D1(logits, y)
    constrained = zero_mean_constraint(omega, d1, y)
    omega_t = constrained.gather(1, y[:, None])
    rhs = omega_t * (weighted_probability(constrained, p) - F.one_hot(y, 6))
    torch.testing.assert_close(constrained * d1, rhs, rtol=0, atol=1e-14)


def test_eq4_closed_form_and_non_target_weights_unchanged():
    p = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]], dtype=torch.float64)
    y = torch.tensor([1, 0])
    omega = torch.tensor([[0.4, 9.0, 0.65], [7.0, 0.85, 0.6]], dtype=torch.float64)
    d1 = p - F.one_hot(y, 3)
    out = zero_mean_constraint(omega, d1, y)
    # row 0: (0.4*0.2 + 0.65*0.3) / (1 - 0.5) = 0.55; row 1: (0.85*0.1 + 0.6*0.3) / (1 - 0.6) = 0.6625
    torch.testing.assert_close(out, torch.tensor([[0.4, 0.55, 0.65], [0.6625, 0.85, 0.6]], dtype=torch.float64))


def test_target_weight_is_a_convex_combination_of_non_target_weights():
    logits, y, omega = setting(200, 10)
    t = target_weight(omega, D1(logits, y), y)
    others = omega.masked_fill(F.one_hot(y, 10).bool(), float("nan"))
    assert (t >= others.nan_to_num(float("inf")).min(1).values - 1e-15).all()
    assert (t <= others.nan_to_num(-float("inf")).max(1).values + 1e-15).all()


def test_equal_weights_are_left_equal_without_clamp():
    logits, y, _ = setting()
    omega = torch.full((12, 6), 0.37, dtype=torch.float64)
    torch.testing.assert_close(zero_mean_constraint(omega, D1(logits, y), y), omega, rtol=1e-14, atol=0)


def test_clamp_shrinks_target_weight_of_confident_instances():
    """With p clamped at 0.999, omega_t = w (1 - p_t) / 0.001 for equal weights w and p_t > 0.999."""
    logits = torch.tensor([[10.0, 0.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0])
    one_minus_pt = 2 * math.exp(-10) / (1 + 2 * math.exp(-10))
    t = target_weight(torch.full((1, 3), 0.5, dtype=torch.float64), D1(logits, y, clamp_max=0.999), y)
    assert t.item() == pytest.approx(0.5 * one_minus_pt / 0.001, rel=1e-10)


def test_target_weight_stays_accurate_as_p_t_approaches_one():
    """float32 logits with margins where p_t rounds to 1: compare with the float64 closed form."""
    margins = torch.tensor([5.0, 15.0, 20.0, 40.0, 80.0])
    logits = torch.stack([torch.stack([m, torch.tensor(0.0), torch.tensor(-1.0)]) for m in margins])
    y = torch.zeros(5, dtype=torch.long)
    omega = torch.tensor([[1.0, 0.2, 3.0]]).expand(5, 3)
    got = target_weight(omega, D1(logits, y), y)
    e0, e1 = 1.0, torch.exp(torch.tensor(-1.0, dtype=torch.float64)).item()
    expected = (0.2 * e0 + 3.0 * e1) / (e0 + e1)  # independent of the margin
    torch.testing.assert_close(got.double(), torch.full((5,), expected, dtype=torch.float64), rtol=1e-6, atol=0)


def test_p_t_equal_to_one_raises():
    d1 = torch.tensor([[0.0, 0.0, 0.0]])  # p = one-hot at the target
    with pytest.raises(ValueError, match="`d1` has p_t == 1 in rows \\[0\\]"):
        zero_mean_constraint(torch.ones(1, 3), d1, torch.tensor([0]))


def test_constraint_is_differentiable_like_its_closed_form():
    logits, y, omega = setting(4, 3)
    d1 = D1(logits, y)
    omega.requires_grad_()
    torch.autograd.gradcheck(lambda o: zero_mean_constraint(o, d1, y), (omega,))


@pytest.mark.parametrize(
    "args, name",
    [
        ((torch.ones(2, 3), torch.zeros(2, 4), torch.tensor([0, 1])), "omega"),
        ((torch.tensor([[float("nan"), 1.0, 1.0]]), torch.tensor([[-0.5, 0.25, 0.25]]), torch.tensor([0])), "omega"),
        ((torch.ones(1, 3), torch.tensor([[-0.5, 0.25, 0.25]]), torch.tensor([3])), "targets"),
        ((torch.ones(1, 3), torch.tensor([[-0.5, 0.25, 0.25]]), torch.tensor([0, 1])), "targets"),
    ],
)
def test_bad_input(args, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        zero_mean_constraint(*args)


def test_figure1_flows_match_the_hand_worked_cat_labelled_dog():
    """The book's Figure 1 example, worked by hand: classes (cat, dog, bird), label 'dog'
    (t = 1), p = (0.5, 0.3, 0.2), omega_cat = 0, omega_bird = 1, instance weight 0.5.
    Eq. 4: omega_dog = (0 * 0.5 + 1 * 0.2) / (1 - 0.3) = 2/7. S = 2/7 * 0.3 + 0.2 = 2/7, so
    p' = (0, (2/7 * 0.3) / (2/7), 0.2 / (2/7)) = (0, 0.3, 0.7), and omega (x) D1 =
    (0 * 0.5, 2/7 * -0.7, 1 * 0.2) = (0, -0.2, 0.2)."""
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    rows = figure1_flows(p, 1, torch.tensor([0.0, 123.0, 1.0]), w=0.5)
    expected = {"p": [0.5, 0.3, 0.2], "y": [0, 1, 0], "D₁ = p − y": [0.5, -0.7, 0.2],
                "w D₁ (one weight)": [0.25, -0.35, 0.1], "ω (Eq. 4)": [0, 2 / 7, 1], "ω ⊗ D₁ (Eq. 2)": [0, -0.2, 0.2],
                "p′": [0, 0.3, 0.7], "ω_t (p′ − y) (Eq. 6)": [0, -0.2, 0.2]}
    assert list(rows) == list(expected)
    for name, values in expected.items():
        torch.testing.assert_close(rows[name], torch.tensor(values, dtype=torch.float64), msg=name)
