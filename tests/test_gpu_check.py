"""The GPU check's parts that run without a GPU: the one-line exit, the equivalence harness, the
projection of the paper grid's hours, the report's statement, and the sweep's runs per GPU."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gdwlib import cost
from gdwlib.cost import measured_runs_per_gpu, planned_iterations
from gdwlib.experiments import grid
from gdwlib.report import gpu_check_summary

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: the check would run for minutes")
def test_smoke_without_cuda_one_line_and_exit_0(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0 and out.stdout.strip().count("\n") == 0 and "no CUDA" in out.stdout
    assert not list(tmp_path.iterdir())


def test_equivalence_harness_gives_zero_for_one_device_and_sees_a_different_state(monkeypatch):
    """CPU against CPU from one state: the updates agree exactly. If the second copy kept its own
    state (a wrong copy), the harness would report a difference: seen by skipping the copy."""
    assert gpu_check.update_difference("MWNet", torch.float64, 1, devices=("cpu", "cpu")) == 0.0
    monkeypatch.setattr("gdwlib.methods.weighting.MWNet.load_state_dict",
                        lambda self, state: [p.data.mul_(1.01) for p in self.model.parameters()])
    assert gpu_check.update_difference("MWNet", torch.float64, 1, devices=("cpu", "cpu")) > 1e-6


def synthetic_costs(ms_cifar10: float, ms_cifar100: float) -> dict:
    from gdwlib.methods import METHODS
    return {"shapes": {shape: {"variants": {m: {"method": m, "ms_median": ms} for m in METHODS}}
                       for shape, ms in (("cifar", ms_cifar10), ("cifar100", ms_cifar100))}}


def test_projection_of_the_paper_grid():
    rows = [{"runs": n, "speedup": s} for n, s in ((1, 1.0), (2, 1.5), (4, 2.5), (8, 2.0))]
    p = gpu_check.projection(synthetic_costs(1000.0, 0.0), rows)
    # 300 runs of Table 2, 200 more of Table 3 and 180 of Table 4 (the dry run's "new" column)
    assert p["runs"] == 680 and p["runs_without_cost"] == 0
    tables = grid("paper")
    cifar10 = {c for t in ("table2", "table3", "table4") for c in tables[t] if c.dataset == "cifar10"}
    expected = sum(planned_iterations(c) for c in cifar10) / 3600    # 1 s per iteration, CIFAR-100 free
    assert p["hours_one_at_a_time"] == pytest.approx(expected)
    assert p["best_runs_per_gpu"] == 4 and p["hours"] == pytest.approx(expected / 2.5)


def test_report_and_sweep_without_a_check(tmp_path):
    missing = tmp_path / "gpu-check.json"
    assert gpu_check_summary(missing).startswith("**No GPU has been measured yet.**")
    assert measured_runs_per_gpu(missing)[0] == 1


def test_report_and_sweep_with_a_check(tmp_path):
    result = {"machine": {"name": "NVIDIA H200", "type": "cuda", "date": "2026-12-02", "torch": "2.11.0",
                          "gdwlib": "0.1.0", "commit": "abc"},
              "projection": {"best_runs_per_gpu": 4}}
    path = tmp_path / "gpu-check.json"
    path.write_text(json.dumps(result))
    (tmp_path / "gpu-check.md").write_text("# GPU check\n\n## 1. CUDA against the CPU\n\n| a |\n")
    text = gpu_check_summary(path)
    assert "NVIDIA H200" in text and "2026-12-02" in text and "#### 1. CUDA against the CPU" in text
    assert measured_runs_per_gpu(path)[0] == 4
    path.write_text("{")
    n, why = measured_runs_per_gpu(path)
    assert n == 1 and "cannot be read" in why
    assert cost.GPU_CHECK.name == "gpu-check.json"


def test_markdown_shows_each_part_of_a_result():
    costs = synthetic_costs(25.0, 30.0)
    for shape in costs["shapes"].values():
        for v in shape["variants"].values():
            v.update(x_base_time=v["ms_median"] / 25.0, peak_mb=512.0)
    rows = [{"runs": 1, "iterations_per_second": 40.0, "speedup": 1.0},
            {"runs": 2, "iterations_per_second": 70.0, "speedup": 1.75}]
    result = {"machine": {"name": "NVIDIA H200", "date": "2026-12-02", "torch": "2.11.0", "gdwlib": "0.1.0",
                          "commit": "abc"}, "seconds": 300.0,
              "equivalence": [{"method": "GDW", "dtype": "float64", "iterations": 1, "relative_difference": 3e-14,
                               "tolerance": 1e-10, "within": True}],
              "methods": costs, "throughput": rows, "projection": gpu_check.projection(costs, rows)}
    text = gpu_check.markdown(result)
    assert "| GDW | float64 | 1 | 3.00e-14 | 1e-10 | yes |" in text
    assert "| GDW | 25.0 | 1.00x | 512 |" in text and "| GDW | 30.0 | 1.20x | 512 |" in text
    assert "| 2 | 70.0 | 1.75x |" in text and "with 2 runs per GPU (1.75x)" in text


def test_markdown_says_when_the_graph_path_falls_back_on_cuda():
    costs = synthetic_costs(25.0, 30.0)
    for shape in costs["shapes"].values():
        for v in shape["variants"].values():
            v.update(x_base_time=1.0, peak_mb=1.0)
    rows = [{"runs": 1, "iterations_per_second": 40.0, "speedup": 1.0}]
    result = {"machine": {"name": "GPU", "date": "2026-12-02", "torch": "2.11.0", "gdwlib": "0.1.0", "commit": "abc"},
              "seconds": 1.0, "equivalence": [], "methods": costs, "throughput": rows,
              "projection": gpu_check.projection(costs, rows), "tangents": {"graph_path": False,
                                                                            "relative_difference": None}}
    assert "falls back to torch.func.jvp" in gpu_check.markdown(result)


def test_throughput_runs_start_together_and_report_their_iterations():
    """Two BaseModel runs on the CPU through the same protocol as on the GPU (built, warmed up,
    started at once, counted)."""
    row = gpu_check.throughput(2, 0.5, device="cpu", method="BaseModel")
    assert row["runs"] == 2 and 0 < row["iterations_per_second"] < 1000
