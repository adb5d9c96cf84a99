"""Forward-mode derivatives read off a forward pass already made: ``J v`` without a second forward.

Step 2 of the bi-level loop needs ``J v``, the derivative of the training batch's logits at
``theta`` in the direction ``v`` (see :mod:`gdwlib.bilevel`). :func:`torch.func.jvp` computes it
by running the network again with dual numbers: one more forward of the primal values, plus the
tangents. But the training loop has just made that very forward (the real forward of Step 1, in
train mode, at ``theta``) and keeps its autograd graph for Step 3, and the graph holds every
primal value a tangent needs: each convolution's input and weight, each BatchNorm's batch mean
and inverse standard deviation, each ReLU's output. :func:`graph_jvp` walks that graph from the
parameters to the logits and pushes the tangents through it, one rule per operation, so the
primal is never recomputed.

Train-mode BatchNorm gets a rule of its own. Its Jacobian with respect to its input,
``(gamma / sigma) (I - 11^T / N - xhat xhat^T / N)`` per channel, is symmetric, so the tangent
of the input is what BatchNorm's backward kernel computes for an incoming gradient; the
parameters add ``dgamma xhat + dbeta``. That is one fused kernel where the dual-number rule
takes a dozen element-wise passes.

The rules cover the operations of this package's networks (ResNet-32, the small CNN, the MLPs,
ResNet-18). A graph with any other operation makes :func:`graph_jvp` return ``None``, and the
caller falls back to :func:`torch.func.jvp`. Both give the same numbers up to rounding; the
tests compare them in float64 for every network of :mod:`gdwlib.models`.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

Tangent = Tensor | None       # None stands for a zero tangent (the input images, for instance)
Rule = Callable[[object, list[Tangent]], Tangent]


def _plus(a: Tangent, b: Tangent) -> Tangent:
    if a is None:
        return b
    return a if b is None else a + b


def _signed(dims) -> list[int]:
    """Dimensions as the graph stores them (unsigned 64-bit: -1 reads 2**64 - 1) made signed."""
    return [d - 2**64 if d >= 2**63 else d for d in dims]


def _convolution(node, t: list[Tangent]) -> Tangent:
    x, w = node._saved_input, node._saved_weight
    conv = lambda inp, weight: torch.convolution(  # noqa: E731
        inp, weight, None, node._saved_stride, node._saved_padding, node._saved_dilation, node._saved_transposed,
        node._saved_output_padding, node._saved_groups)
    out = _plus(conv(t[0], w) if t[0] is not None else None, conv(x, t[1]) if t[1] is not None else None)
    if len(t) > 2 and t[2] is not None:
        out = _plus(out, t[2].reshape((1, -1) + (1,) * (x.dim() - 2)))
    return out


def _batch_norm(x: Tensor, weight: Tensor, mean: Tensor, invstd: Tensor, eps: float, t: list[Tangent]) -> Tangent:
    """Train-mode BatchNorm: ``d(out) = J_x dx + dgamma xhat + dbeta`` with the symmetric ``J_x``
    applied by the backward kernel (see the module docstring)."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    out = None
    if t[0] is not None:
        out = torch.ops.aten.native_batch_norm_backward(
            t[0], x, weight, None, None, mean, invstd, True, eps, [True, False, False])[0]
    if t[1] is not None:   # dgamma * (x - mean) * invstd
        scale = (t[1] * invstd).reshape(shape)
        out = _plus(out, x * scale - (mean.reshape(shape) * scale))
    if len(t) > 2 and t[2] is not None:
        out = _plus(out, t[2].reshape(shape))
    return out


def _train_mode_batch_norm(eps: str):
    """The rule of a BatchNorm node whose epsilon is saved as ``eps``; the native and the cuDNN
    kernels both save the batch mean and the inverse standard deviation as results 1 and 2."""
    def rule(node, t: list[Tangent]) -> Tangent:
        if not node._saved_training:
            return NotImplemented
        return _batch_norm(node._saved_input, node._saved_weight, node._saved_result1, node._saved_result2,
                           getattr(node, eps), t)
    return rule


def _relu(node, t: list[Tangent]) -> Tangent:
    return None if t[0] is None else torch.ops.aten.threshold_backward(t[0], node._saved_result, 0)


def _add(node, t: list[Tangent]) -> Tangent:
    alpha = node._saved_alpha
    return _plus(t[0], t[1] if t[1] is None or alpha == 1 else alpha * t[1])


def _addmm(node, t: list[Tangent]) -> Tangent:
    beta, alpha = node._saved_beta, node._saved_alpha
    out = None if t[0] is None else beta * t[0]
    if t[1] is not None:
        out = _plus(out, alpha * (t[1] @ node._saved_mat2))
    if t[2] is not None:
        out = _plus(out, alpha * (node._saved_mat1 @ t[2]))
    return out


def _max_pool(node, t: list[Tangent]) -> Tangent:
    if t[0] is None:
        return None
    indices = node._saved_result1   # the argmax positions, flat over each (h, w) plane
    return t[0].flatten(2).gather(2, indices.flatten(2)).view_as(indices)


RULES: dict[str, Rule] = {
    "ConvolutionBackward0": _convolution,
    "NativeBatchNormBackward0": _train_mode_batch_norm("_saved_eps"),
    "CudnnBatchNormBackward0": _train_mode_batch_norm("_saved_epsilon"),
    "ReluBackward0": _relu,
    "AddBackward0": _add,
    "AddmmBackward0": _addmm,
    "TBackward0": lambda node, t: None if t[0] is None else t[0].t(),
    "ViewBackward0": lambda node, t: None if t[0] is None else t[0].reshape(node._input_metadata[0].shape),
    "SliceBackward0": lambda node, t: None if t[0] is None else torch.ops.aten.slice(
        t[0], node._saved_dim, node._saved_start, node._saved_end, node._saved_step),
    "ConstantPadNdBackward0": lambda node, t: None if t[0] is None else F.pad(t[0], node._saved_pad),
    "MeanBackward1": lambda node, t: None if t[0] is None else t[0].mean(_signed(node._saved_dim), node._saved_keepdim),
    "MaxPool2DWithIndicesBackward0": _max_pool,
}


def _forward_order(root) -> list:
    """The nodes of the graph ending at ``root``, each after every node it reads from."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if node in seen:
            continue
        seen.add(node)
        stack.append((node, True))
        stack.extend((f, False) for f, _ in node.next_functions if f is not None and f not in seen)
    return order


def graph_operations(output: Tensor) -> Counter:
    """How many nodes of each kind (``ConvolutionBackward0``, ``CudnnBatchNormBackward0``, ...)
    the graph ending at ``output`` holds: which kernels the device chose, and so which rules
    :func:`graph_jvp` needs there."""
    return Counter(type(node).__name__ for node in _forward_order(output.grad_fn)) if output.grad_fn else Counter()


def graph_jvp(output: Tensor, tangents: Mapping[Tensor, Tensor], applied: Counter | None = None) -> Tensor | None:
    """``J v`` for ``output`` (the result of a forward pass whose graph is still held) in the
    direction ``tangents`` (leaf tensor -> its tangent; leaves not listed have tangent 0).

    Returns ``None`` if the graph holds an operation without a rule here (the caller then uses
    :func:`torch.func.jvp`); raises ``RuntimeError`` if the graph was freed by a backward
    without ``retain_graph=True``. ``applied``, when given, counts the rules used by node kind.
    """
    if output.grad_fn is None:
        return None
    with torch.no_grad():
        return _push(output, tangents, Counter() if applied is None else applied)


def _push(output: Tensor, tangents: Mapping[Tensor, Tensor], applied: Counter) -> Tensor | None:
    by_leaf = {id(leaf): t for leaf, t in tangents.items()}
    order = _forward_order(output.grad_fn)
    readers = dict.fromkeys(order, 0)   # how many nodes still have to read each node's tangent
    for node in order:
        for f, _ in node.next_functions:
            if f is not None:
                readers[f] += 1
    values: dict[object, Tangent] = {}
    for node in order:
        name = type(node).__name__
        if name == "AccumulateGrad":
            values[node] = by_leaf.get(id(node.variable))
            continue
        rule = RULES.get(name)
        if rule is None or any(f is not None and k != 0 for f, k in node.next_functions):
            return None
        result = rule(node, [None if f is None else values[f] for f, _ in node.next_functions])
        if result is NotImplemented:
            return None
        applied[name] += 1
        shape = node._input_metadata[0].shape   # the forward output's shape
        values[node] = result if result is None or result.shape == shape else result.expand(shape)
        for f, _ in node.next_functions:   # free each tangent once its last reader has it: one
            if f is not None:              # activation's worth of memory at a time, as in jvp
                readers[f] -= 1
                if readers[f] == 0:
                    del values[f]
    out = values[output.grad_fn]
    return torch.zeros_like(output) if out is None else out
