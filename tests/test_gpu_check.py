"""The GPU check's parts that run without a GPU: the one-line exit, the equivalence harness, the
projection of the paper grid's hours, the report's statement, the sweep's runs per GPU, what the
timings time, the sections' records, provenance, and the whole check rehearsed on the CPU with
only the GPU machine's packages importable."""
import json
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

from gdwlib import cost
from gdwlib._checks import NumericalError
from gdwlib.cost import measured_runs_per_gpu, planned_iterations
from gdwlib.experiments import grid
from gdwlib.report import gpu_check_summary

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_methods as bench  # noqa: E402
import gpu_check  # noqa: E402
from gpu_machine import restricted_env  # noqa: E402


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


MACHINE = {"name": "NVIDIA H200", "type": "cuda", "date": "2026-12-02", "torch": "2.11.0+cu130",
           "torchvision": "0.26.0+cu130", "cuda": "13.0", "cudnn": 91000, "gdwlib": "0.1.0", "commit": "abc",
           "differs_from_pin": ["torch 2.11.0+cu130 (pinned 2.14.1)"], "memory_gb": 139.8,
           "tf32": {"matmul": False, "cudnn": True, "float32_matmul_precision": "highest"},
           "deterministic": {"cudnn.deterministic": True, "cudnn.benchmark": False, "deterministic_algorithms": False}}


def test_markdown_shows_each_part_of_a_result():
    costs = synthetic_costs(25.0, 30.0)
    costs["settings"] = {"batch": 100}
    for shape in costs["shapes"].values():
        for v in shape["variants"].values():
            v.update(x_base_time=v["ms_median"] / 25.0, peak_mb=512.0)
    rows = [{"runs": 1, "iterations_per_second": 40.0, "speedup": 1.0},
            {"runs": 2, "iterations_per_second": 70.0, "speedup": 1.75}]
    result = {"machine": MACHINE, "seconds": 300.0, "sections": list(gpu_check.FULL),
              "equivalence": [{"method": "GDW", "dtype": "float64", "iterations": 1, "relative_difference": 3e-14,
                               "tolerance": 1e-10, "within": True}],
              "tangents": [{"dtype": "float32", "graph_path": True, "relative_difference": 2e-7,
                            "batch_norm": {"CudnnBatchNormBackward0": {"met": 31, "by_its_rule": 31}}}],
              "methods": costs, "throughput": rows, "projection": gpu_check.projection(costs, rows)}
    text = gpu_check.markdown(result)
    assert "| GDW | float64 | 1 | 3.00e-14 | 1e-10 | yes |" in text
    assert "| float32 | CudnnBatchNormBackward0 (31) | yes | 2.00e-07 |" in text
    assert "| GDW | 25.0 | 1.00x | 512 |" in text and "| GDW | 30.0 | 1.20x | 512 |" in text
    assert "| 2 | GDW | 70.0 | 1.75x |" in text and "with 2 runs per GPU (1.75x)" in text
    assert "torchvision 0.26.0+cu130, CUDA 13.0, cuDNN 91000; differs from the pin: torch 2.11.0+cu130" in text
    assert "NVIDIA H200, 140 GiB" in text and "cuDNN deterministic True" in text and "commit abc" in text


def test_markdown_says_when_the_graph_path_falls_back_or_a_rule_is_not_used():
    rows = [{"dtype": "float32", "graph_path": False, "relative_difference": None,
             "batch_norm": {"CudnnBatchNormBackward0": {"met": 31, "by_its_rule": 0}}}]
    text = gpu_check.markdown({"machine": MACHINE, "sections": ["machine", "tangents"], "tangents": rows})
    assert "| float32 | CudnnBatchNormBackward0 (31) | NO | **an operation without a rule" in text


def test_markdown_names_a_failed_section_and_one_that_did_not_run():
    result = {"machine": MACHINE, "sections": ["machine", "equivalence", "tangents"],
              "errors": {"equivalence": {"error": "RuntimeError: CUDA out of memory", "traceback": ""}}}
    text = gpu_check.markdown(result)
    assert "## 1. The device against the CPU, from the same state\n\n**Failed:** `RuntimeError: CUDA out of memory`" in text
    assert "## 2. J v read off the forward's graph\n\nNot run" in text


def test_throughput_runs_start_together_and_report_their_iterations():
    """Two BaseModel runs on the CPU through the same protocol as on the GPU (built, warmed up,
    started at once, counted)."""
    row = gpu_check.throughput(2, 0.5, device="cpu", method="BaseModel")
    assert row["runs"] == 2 and 0 < row["iterations_per_second"] < 1000


# ----- what the check times: the trainer's path ---------------------------------------------------

HOST_READS = {"item", "__bool__", "tolist", "__int__", "__float__", "__index__", "nonzero", "cpu", "numpy"}


class HostReads(TorchFunctionMode):
    """Counts the reads of tensor values back to Python (each one a host-device sync on a GPU),
    except torch.optim's own host-side step counters."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in HOST_READS and \
                not any("torch/optim/" in f.filename for f in traceback.extract_stack(limit=4)):
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("method", ["BaseModel", "MWNet", "GDW"])
def test_the_benchmark_times_steps_that_read_nothing_back(method):
    """Timed as the trainer runs them (value checks deferred): the only read is the one after the
    clock stops. Timed outside the deferral, a GDW step reads 23 values back."""
    runner = bench.build_runner(method, bench.SHAPES["fmnist"], gpu_check.bench_args(batch=8), torch.device("cpu"))
    runner.steps(1)
    with HostReads() as reads:
        bench.timed_block(runner, 3, torch.device("cpu"))
    assert reads.count <= 2   # DeferredChecks.raise_if_failed: one nonzero, one tolist
    with HostReads() as reads:
        runner.steps(3)
    assert reads.count <= 2


def test_a_failure_inside_a_timed_block_is_raised_after_it():
    runner = bench.build_runner("GDW", bench.SHAPES["fmnist"], gpu_check.bench_args(batch=8), torch.device("cpu"))
    with torch.no_grad():
        next(runner.method.model.parameters()).fill_(float("nan"))
    with pytest.raises(NumericalError):
        bench.timed_block(runner, 2, torch.device("cpu"))


# ----- sections written one by one, failures recorded, $OUT -----------------------------------------

def test_each_section_is_written_when_it_ends_and_a_failure_does_not_stop_the_next(tmp_path, monkeypatch):
    out = tmp_path / "out"
    seen = {}

    def failing(ctx, result):
        raise RuntimeError("CUDA out of memory")

    def after(ctx, result):   # what was on disk when this section started
        seen.update(json.loads((out / "gpu-check-rehearsal.json").read_text()))
        return [{"dtype": "float32", "graph_path": True, "relative_difference": 1e-7, "tolerance": 1e-2,
                 "within": True, "batch_norm": {"NativeBatchNormBackward0": {"met": 1, "by_its_rule": 1}}}]

    monkeypatch.setitem(gpu_check.SECTIONS, "equivalence", ("equivalence", failing))
    monkeypatch.setitem(gpu_check.SECTIONS, "tangents", ("tangents", after))
    monkeypatch.setenv("OUT", str(out))
    assert gpu_check.main(["--device", "cpu", "--sections", "equivalence", "tangents"]) == 1
    assert seen["errors"]["equivalence"]["error"] == "RuntimeError: CUDA out of memory" and "tangents" not in seen
    result = json.loads((out / "gpu-check-rehearsal.json").read_text())
    assert result["tangents"][0]["within"] and set(result["timings"]) == {"machine", "equivalence", "tangents"}
    assert "**Failed:** `RuntimeError: CUDA out of memory`" in (out / "gpu-check-rehearsal.md").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["gpu-check-rehearsal.json", "gpu-check-rehearsal.md"]


def test_held_only_when_no_section_failed_and_every_check_holds():
    good = {"equivalence": [{"dtype": "float64", "within": True}, {"dtype": "float32", "within": False}],
            "tangents": [{"graph_path": True, "within": True}], "cuda_tests": {"within": True}}
    assert gpu_check.held(good)   # float32 outside its tolerance is reported, not failed
    assert not gpu_check.held({**good, "equivalence": [{"dtype": "float64", "within": False}]})
    assert not gpu_check.held({**good, "tangents": [{"graph_path": False, "within": True}]})
    assert not gpu_check.held({**good, "cuda_tests": {"within": False}})
    assert not gpu_check.held({**good, "errors": {"methods": {"error": "x"}}})


def test_the_cuda_tests_section_counts_passes_failures_and_skips(tmp_path, monkeypatch):
    tests = tmp_path / "test_fake_cuda.py"
    tests.write_text("import pytest\n\n"
                     "@pytest.mark.cuda\ndef test_a():\n    assert True\n\n"
                     "@pytest.mark.cuda\ndef test_b():\n    assert 1 == 2, 'the update differs'\n\n"
                     "@pytest.mark.cuda\n@pytest.mark.skip(reason='no CUDA')\ndef test_c():\n    pass\n\n"
                     "def test_not_marked():\n    assert False\n")
    monkeypatch.setattr(gpu_check, "CUDA_TEST_FILES", (str(tests),))
    ctx = gpu_check.Context(torch.device("cpu"), gpu_check.REHEARSAL, tmp_path, None)
    r = gpu_check.cuda_tests(ctx)
    assert (r["passed"], r["failed"], r["skipped"], r["within"]) == (1, 1, 1, False)
    assert r["failures"][0].endswith("test_b: AssertionError: the update differs")


def test_every_file_with_a_cuda_test_is_run_on_the_gpu():
    marked = {f"tests/{p.name}" for p in (ROOT / "tests").glob("test_*.py")
              if any(line.startswith("@cuda_only") for line in p.read_text().splitlines())}
    assert marked == set(gpu_check.CUDA_TEST_FILES)


# ----- provenance ---------------------------------------------------------------------------------

def test_the_machine_section_states_versions_against_the_pin_and_the_commit(tmp_path, monkeypatch):
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.startswith(("torch==", "torchvision==")):
            name, version = line.split("==")
            pins[name] = version.strip()
    ctx = gpu_check.Context(torch.device("cpu"), gpu_check.REHEARSAL, tmp_path, "0123abc")
    m = gpu_check.machine(ctx)
    assert m["pinned"] == pins and m["commit"] == "0123abc" and m["rehearsal"]
    assert m["deterministic"]["cudnn.deterministic"] == torch.backends.cudnn.deterministic
    import torchvision

    monkeypatch.setattr(torch, "__version__", "2.11.0+cu130")
    monkeypatch.setattr(torchvision, "__version__", pins["torchvision"] + "+cpu")
    monkeypatch.setattr(gpu_check.bench, "code_version", lambda: {"gdwlib": "0.1.0", "commit": "unknown"})
    m = gpu_check.machine(gpu_check.Context(torch.device("cpu"), gpu_check.REHEARSAL, tmp_path, None))
    assert m["differs_from_pin"] == [f"torch 2.11.0+cu130 (pinned {pins['torch']})"]
    assert m["commit"] == "unknown (no .git here: pass --commit)"


# ----- only the GPU machine's packages --------------------------------------------------------------

def run_restricted(tmp_path, *argv, timeout=600):
    return subprocess.run([sys.executable, *argv], cwd=ROOT, env=restricted_env(tmp_path / "hook", ROOT),
                          capture_output=True, text=True, timeout=timeout)


def test_the_hook_refuses_what_the_gpu_machine_lacks_and_allows_what_it_has(tmp_path):
    for module in ("submitit", "nbval", "papermill", "selenium", "jupyter_book", "IPython"):
        out = run_restricted(tmp_path, "-c", f"import {module}")
        assert out.returncode == 1 and f"No module named '{module}'" in out.stderr, module
    out = run_restricted(tmp_path, "-c", "import torch, torchvision, numpy, pandas, matplotlib.pyplot, seaborn, tqdm, "
                                         "PIL, pytest; import sys; sys.path[:0] = ['benchmarks']; "
                                         "import gpu_check, bench_methods, bench_parallel, bench_api; "
                                         "import gdwlib.train, gdwlib.cli, gdwlib.fitting, gdwlib.data.user, "
                                         "gdwlib.detection")
    assert out.returncode == 0, out.stderr


def test_the_whole_check_rehearsed_on_the_cpu_with_only_the_gpu_machines_packages(tmp_path):
    """Every section's code path, as on the GPU (CPU for CUDA, seconds for minutes): nothing fails,
    every CUDA test is collected (and skipped here)."""
    out = run_restricted(tmp_path, "benchmarks/gpu_check.py", "--device", "cpu", "--sections", "all",
                         "--out", str(tmp_path / "out"), "--commit", "c0ffee")
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "gpu-check-rehearsal.json").read_text())
    assert "errors" not in result and set(gpu_check.ALL) <= set(result)
    assert result["machine"]["commit"] == "c0ffee" and result["machine"]["rehearsal"]
    assert result["cuda_tests"]["failed"] == 0 and result["cuda_tests"]["skipped"] >= 18
    assert [r["runs"] for r in result["throughput"]] == list(gpu_check.REHEARSAL.runs_per_gpu)
    assert set(result["methods"]["shapes"]["cifar100"]["variants"]) == set(gpu_check.REHEARSAL.methods)
    text = (tmp_path / "out" / "gpu-check-rehearsal.md").read_text()
    assert text.startswith("# Rehearsal on the CPU") and "## 6. The paper's Tables 2-4 grid" in text


def test_resnet32_trains_with_only_the_gpu_machines_packages(tmp_path):
    from gdwlib.data.standin import write_stand_ins

    write_stand_ins(tmp_path / "data")
    out = run_restricted(tmp_path, "-m", "gdwlib", "run", "--method", "GDW", "--dataset", "cifar10", "--profile", "paper",
                         "--device", "cpu", "--data-dir", str(tmp_path / "data"), "--results-dir", str(tmp_path / "r"),
                         "--quiet", "--epochs", "1", "--set", "iterations_per_epoch=2", "--set", "batch_size=10",
                         "--set", "meta_batch_size=10", "--set", "meta_per_class=2")
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(next((tmp_path / "r").rglob("result.json")).read_text())
    assert result["config"]["model"] == "resnet32" and len(result["history"]) == 1


def test_every_test_of_the_cuda_files_passes_with_only_the_gpu_machines_packages(tmp_path):
    """The third call on a GPU machine (make gpu-tests): the CPU tests of those files too, with
    stand-in data (the machine has no Fashion-MNIST)."""
    out = run_restricted(tmp_path, "benchmarks/gpu_check.py", "--device", "cpu", "--sections", "cuda_tests",
                         "--every-test", "--out", str(tmp_path / "out"))
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads((tmp_path / "out" / "gpu-check-rehearsal.json").read_text())["cuda_tests"]
    assert r["failed"] == 0 and r["passed"] >= 20 and r["selection"] == "every test"


def test_no_further_throughput_test_starts_past_the_time_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "throughput", lambda n, *args: {"runs": n, "iterations_per_second": 10.0 * n})
    ctx = gpu_check.Context(torch.device("cpu"), gpu_check.REHEARSAL, tmp_path, None)
    assert [(r["runs"], r["speedup"]) for r in gpu_check.throughputs(ctx)] == [(1, 1.0), (2, 2.0)]
    ctx.deadline = 0.0   # long past: the first count still runs, so the projection has a number
    assert [r["runs"] for r in gpu_check.throughputs(ctx)] == [1]
