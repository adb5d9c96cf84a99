"""What only a GPU can show: which kernels CUDA picks and whether the graph path has a rule for
each, and whether one training iteration on CUDA gives the CPU's update.

The CPU cases run everywhere and show that each test fails a wrong program (a rule that is
never applied, a state that is not copied); the ``cuda_only`` cases run on a GPU machine
(``benchmarks/gpu_check.py --quick``). Imports: torch, pytest and the project only.
"""
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from gdwlib.models import build_model
from gdwlib.tangents import RULES, graph_jvp, graph_operations

from conftest import cuda_only

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import gpu_check  # noqa: E402

BATCH_NORM_NODES = {"NativeBatchNormBackward0", "CudnnBatchNormBackward0", "MiopenBatchNormBackward0"}


def resnet32_rules(device: str, dtype: torch.dtype) -> tuple[Counter, Counter, int]:
    """ResNet-32's graph on ``device``: the node kinds it holds, the rules graph_jvp applied, and
    the number of BatchNorm layers."""
    model = build_model("resnet32", 10, 3, 32).to(device, dtype).train()
    out = model(torch.randn(8, 3, 32, 32, device=device, dtype=dtype))
    applied = Counter()
    assert graph_jvp(out, {p: torch.randn_like(p) for p in model.parameters()}, applied) is not None
    layers = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    return graph_operations(out), applied, layers


def check_rules(nodes: Counter, applied: Counter, layers: int, batch_norm: str | None) -> None:
    assert set(nodes) - {"AccumulateGrad"} <= set(RULES), "a node kind without a rule: training falls back"
    met = set(nodes) & BATCH_NORM_NODES
    assert sum(nodes[n] for n in met) == layers
    if batch_norm is not None:
        assert met == {batch_norm}, f"BatchNorm ran as {sorted(met)}, not {batch_norm}"
    for name in met:   # handled by its own rule, each time, not by the fallback
        assert applied[name] == nodes[name]
    assert applied == nodes - Counter({"AccumulateGrad": nodes["AccumulateGrad"]})


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_on_the_cpu_every_node_has_its_rule_and_batch_norm_is_native(dtype):
    check_rules(*resnet32_rules("cpu", dtype), batch_norm="NativeBatchNormBackward0")


def test_a_rule_that_is_never_applied_is_caught(monkeypatch):
    """A rule table where BatchNorm's rule is lost (falls back) or not counted fails the check."""
    nodes, applied, layers = resnet32_rules("cpu", torch.float32)
    applied["NativeBatchNormBackward0"] -= 1
    with pytest.raises(AssertionError):
        check_rules(nodes, applied, layers, "NativeBatchNormBackward0")
    monkeypatch.delitem(RULES, "NativeBatchNormBackward0")
    with pytest.raises(AssertionError):
        resnet32_rules("cpu", torch.float32)


@cuda_only
def test_on_cuda_float32_batch_norm_is_cudnns_and_has_its_own_rule():
    check_rules(*resnet32_rules("cuda", torch.float32), batch_norm="CudnnBatchNormBackward0")


@cuda_only
def test_on_cuda_float64_every_node_has_its_rule():
    check_rules(*resnet32_rules("cuda", torch.float64), batch_norm=None)


@cuda_only
@pytest.mark.parametrize("method", ["GDW", "MWNet"])
def test_one_cuda_iteration_gives_the_cpus_update_in_float64(method):
    assert gpu_check.update_difference(method, torch.float64, 1) <= gpu_check.FLOAT64_TOLERANCE
