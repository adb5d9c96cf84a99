"""The GPU check: one script, about 6 minutes on one H100/H200-class GPU, that says whether the
paper's grid runs correctly and how long it takes there.

1. Device equivalence: one GDW and one MW-Net iteration on CUDA against the CPU from the same
   state, in float64 (relative difference of the parameter updates at most 1e-10), and a few
   float32 iterations (within a stated tolerance: cuDNN's TF32 convolutions round differently).
2. Milliseconds per iteration of every method (ResNet-32, batch 100, CIFAR-10 and CIFAR-100
   shapes), each one's ratio to BaseModel, and the peak memory of one run
   (``benchmarks/bench_methods.py --device cuda``).
3. Throughput with 1, 2, 4 and 8 runs sharing the GPU as processes: GDW iterations per second,
   summed over the runs.
4. The projected GPU-hours of the paper's Tables 2-4 grid (the runs that
   ``python -m gdwlib sweep --profile paper --dry-run`` counts), from 2 and 3.

    PYTHONPATH=. python3 benchmarks/gpu_check.py            # or: make gpu-check
    PYTHONPATH=. python3 benchmarks/gpu_check.py --out DIR  # default benchmarks/measured

It prints Markdown and writes ``gpu-check.json`` and ``gpu-check.md`` to the output folder; the
book's reproduction report shows the latest one. Without CUDA it says so in one line and exits 0.
The exit status is 1 only when the float64 equivalence fails.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import bench_methods as bench  # noqa: E402

from gdwlib import cost  # noqa: E402
from gdwlib.data.batches import Batch  # noqa: E402
from gdwlib.experiments import grid  # noqa: E402

FLOAT64_TOLERANCE = 1e-10
FLOAT32_TOLERANCE = 1e-2     # TF32 convolutions (PyTorch's default for cuDNN) keep 10 bits of mantissa
FLOAT32_ITERATIONS = 3
RUNS_PER_GPU = (1, 2, 4, 8)
THROUGHPUT_METHOD = "GDW"
THROUGHPUT_SECONDS = 20.0
PAPER_TABLES = ("table2", "table3", "table4")
SHAPE_OF = {"cifar10": "cifar", "cifar100": "cifar100"}
TAG = "GPU_CHECK "


def bench_args(**changes) -> SimpleNamespace:
    """The settings bench_methods' builders read (its defaults)."""
    return SimpleNamespace(**{"batch": 100, "seed": 1, "epoch": None, **changes})


# --------------------------------------------------------------------------- 1. equivalence

def _cast(batch: Batch, dtype: torch.dtype) -> Batch:
    return Batch(batch.x.to(dtype), batch.y, batch.y_true, batch.index)


def _updates(runner, before: dict[str, torch.Tensor]) -> torch.Tensor:
    """Every parameter's change since ``before``, concatenated, on the CPU in float64."""
    now = {k: v.detach() for k, v in runner.method.model.named_parameters()}
    return torch.cat([(now[k].double().cpu() - before[k].double().cpu()).flatten() for k in before])


def update_difference(variant: str, dtype: torch.dtype, iterations: int, devices=("cpu", "cuda")) -> float:
    """||update on devices[1] - update on devices[0]|| / ||update on devices[0]|| after
    ``iterations`` steps of ``variant`` from one state, on the same batches."""
    shape = bench.SHAPES["cifar"]
    runners = {k: bench.build_runner(variant, shape, bench_args(), torch.device(d)) for k, d in zip(("a", "b"), devices)}
    for r in runners.values():
        for value in vars(r.method).values():
            if isinstance(value, torch.nn.Module):
                value.to(dtype)
    runners["b"].method.load_state_dict(runners["a"].method.state_dict())   # one state: weights, statistics, optimisers
    before = {k: v.detach().clone() for k, v in runners["a"].method.model.named_parameters()}
    for r in runners.values():
        batches, meta = r.batches, r.meta
        r.batches = (_cast(b, dtype) for b in batches)
        r.meta = None if meta is None else (_cast(b, dtype) for b in meta)
        for _ in range(iterations):
            r.step()
    a, b = _updates(runners["a"], before), _updates(runners["b"], before)
    return float((b - a).norm() / a.norm())


def tangent_agreement() -> dict:
    """J v of ResNet-32 (CIFAR shape, float32, train mode) read off the forward's graph against
    torch.func.jvp, on CUDA: whether every operation of the CUDA graph (cuDNN's BatchNorm
    included) has a rule, and how far the two are apart."""
    from gdwlib.bilevel import functional_logits, trainable_parameters
    from gdwlib.models import build_model
    from gdwlib.tangents import graph_jvp

    torch.manual_seed(0)
    model = build_model("resnet32", 10, 3, 32).cuda().train()
    x = torch.randn(100, 3, 32, 32, device="cuda")
    v = {k: torch.randn_like(p) for k, p in trainable_parameters(model).items()}
    graph = graph_jvp(model(x), {p: v[k] for k, p in model.named_parameters()})
    _, forward = torch.func.jvp(lambda p: functional_logits(model, p, x), (trainable_parameters(model),), (v,))
    difference = None if graph is None else float((graph - forward).norm() / forward.norm())
    print(f"  graph path on CUDA: {'no rule for some operation' if graph is None else f'{difference:.2e}'}",
          file=sys.stderr)
    return {"graph_path": graph is not None, "relative_difference": difference}


def equivalence() -> list[dict]:
    rows = []
    for variant in ("GDW", "MWNet"):
        for dtype, iterations, tolerance in ((torch.float64, 1, FLOAT64_TOLERANCE),
                                             (torch.float32, FLOAT32_ITERATIONS, FLOAT32_TOLERANCE)):
            difference = update_difference(variant, dtype, iterations)
            rows.append({"method": variant, "dtype": str(dtype).replace("torch.", ""), "iterations": iterations,
                         "relative_difference": difference, "tolerance": tolerance,
                         "within": difference <= tolerance})
            print(f"  {variant} {rows[-1]['dtype']}: {difference:.2e} (tolerance {tolerance:g})", file=sys.stderr)
    return rows


# --------------------------------------------------------------------------- 2. costs

def method_costs(out: Path) -> dict:
    """bench_methods on CUDA, every method, CIFAR-10 and CIFAR-100 shapes."""
    path = out / "gpu-check-methods.json"
    subprocess.run([sys.executable, str(HERE / "bench_methods.py"), "--device", "cuda", "--methods", "all",
                    "--shapes", "cifar", "cifar100", "--rounds", "3", "--iters", "5", "--warmup", "2",
                    "--json", str(path)], check=True, stdout=sys.stderr)
    data = json.loads(path.read_text())
    path.unlink()
    return data


# --------------------------------------------------------------------------- 3. throughput

def throughput_child(go: Path, seconds: float, device_name: str, method: str) -> None:
    """One run of the throughput test: build, warm up, say ready, wait for ``go``, count iterations."""
    torch.set_num_threads(1)
    device = bench.resolve_device(device_name)
    runner = bench.build_runner(method, bench.SHAPES["cifar"], bench_args(), device)
    for _ in range(3):
        runner.step()
    bench.synchronize(device)
    print(TAG + "ready", flush=True)
    while not go.exists():
        time.sleep(0.01)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(5):
            runner.step()
        count += 5
    bench.synchronize(device)
    print(TAG + json.dumps({"iterations": count, "seconds": time.perf_counter() - start}), flush=True)


def throughput(runs: int, seconds: float, device: str = "cuda", method: str = THROUGHPUT_METHOD) -> dict:
    """``runs`` processes training ``method`` on the one ``device`` at the same time."""
    with tempfile.TemporaryDirectory() as tmp:
        go = Path(tmp) / "go"
        argv = [sys.executable, str(Path(__file__).resolve()), "--_child", str(go), str(seconds), device, method]
        procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(runs)]
        for p in procs:   # every run built and warmed up before the clock starts
            for line in p.stdout:
                if line.startswith(TAG + "ready"):
                    break
            else:
                raise RuntimeError(f"a throughput run exited before it was ready (exit code {p.wait()})")
        go.touch()
        results = []
        for p in procs:
            lines = [ln for ln in p.stdout if ln.startswith(TAG)]
            if p.wait() != 0 or not lines:
                raise RuntimeError(f"a throughput run failed (exit code {p.returncode})")
            results.append(json.loads(lines[-1][len(TAG):]))
    per_second = sum(r["iterations"] / r["seconds"] for r in results)
    return {"runs": runs, "iterations_per_second": per_second}


def throughputs(seconds: float) -> list[dict]:
    rows = []
    for n in RUNS_PER_GPU:
        rows.append(throughput(n, seconds))
        rows[-1]["speedup"] = rows[-1]["iterations_per_second"] / rows[0]["iterations_per_second"]
        print(f"  {n} run(s): {rows[-1]['iterations_per_second']:.1f} it/s", file=sys.stderr)
    return rows


# --------------------------------------------------------------------------- 4. projection

def projection(costs: dict, rows: list[dict]) -> dict:
    """GPU-hours of the paper's Tables 2-4 grid, one run at a time and with the best runs per GPU."""
    tables = grid("paper")
    configs = list(dict.fromkeys(c for t in PAPER_TABLES for c in tables[t]))
    hours, unknown = 0.0, 0
    for dataset, shape in SHAPE_OF.items():
        ms = {v["method"]: v["ms_median"] for name, v in costs["shapes"][shape]["variants"].items()
              if name == v["method"]}
        h, u = cost.estimate_hours([c for c in configs if c.dataset == dataset], ms, {})
        hours, unknown = hours + h, unknown + u
    unknown += sum(c.dataset not in SHAPE_OF for c in configs)
    best = max(rows, key=lambda r: r["speedup"])
    return {"runs": len(configs), "runs_without_cost": unknown, "hours_one_at_a_time": hours,
            "best_runs_per_gpu": best["runs"], "speedup": best["speedup"], "hours": hours / best["speedup"]}


# --------------------------------------------------------------------------- report

def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"# GPU check: {m['name']}, {m['date']}", "",
             f"torch {m['torch']}, gdwlib {m['gdwlib']} ({m['commit']}); took {result['seconds'] / 60:.1f} min", "",
             "## 1. CUDA against the CPU, from the same state", "",
             "| method | dtype | iterations | relative difference of the updates | tolerance | within |",
             "|---|---|---:|---:|---:|---|"]
    lines += [f"| {r['method']} | {r['dtype']} | {r['iterations']} | {r['relative_difference']:.2e} | "
              f"{r['tolerance']:g} | {'yes' if r['within'] else 'NO'} |" for r in result["equivalence"]]
    t = result.get("tangents")
    if t:
        lines += ["", "J v read off the forward's graph on CUDA (ResNet-32, float32) against `torch.func.jvp`: "
                  + (f"relative difference {t['relative_difference']:.2e}." if t["graph_path"] else
                     "**the CUDA graph holds an operation without a rule; training falls back to torch.func.jvp.**")]
    for shape in ("cifar", "cifar100"):
        s = result["methods"]["shapes"][shape]
        lines += ["", f"## 2. Cost per iteration, ResNet-32, batch 100, {bench.SHAPES[shape].dataset} shape", "",
                  "| method | ms / iteration | x BaseModel | peak MB |", "|---|---:|---:|---:|"]
        lines += [f"| {name} | {v['ms_median']:.1f} | {bench.fmt(v['x_base_time'], '.2f', 'x')} | "
                  f"{bench.fmt(v.get('peak_mb'), '.0f')} |" for name, v in s["variants"].items()]
    lines += ["", f"## 3. Runs sharing the GPU ({THROUGHPUT_METHOD}, processes)", "",
              "| runs | iterations / s, summed | x one run |", "|---:|---:|---:|"]
    lines += [f"| {r['runs']} | {r['iterations_per_second']:.1f} | {r['speedup']:.2f}x |" for r in result["throughput"]]
    p = result["projection"]
    lines += ["", "## 4. The paper's Tables 2-4 grid", "",
              f"{p['runs']} runs: {p['hours_one_at_a_time']:.1f} GPU-hours one run at a time; "
              f"{p['hours']:.1f} GPU-hours with {p['best_runs_per_gpu']} runs per GPU "
              f"({p['speedup']:.2f}x). Evaluation after each epoch is not counted"
              + (f"; {p['runs_without_cost']} run(s) had no measured cost." if p["runs_without_cost"] else ".")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=HERE / "measured", help="folder for gpu-check.json and .md")
    p.add_argument("--seconds", type=float, default=THROUGHPUT_SECONDS, help="timed seconds per throughput test")
    p.add_argument("--_child", nargs=4, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        throughput_child(Path(args._child[0]), float(args._child[1]), args._child[2], args._child[3])
        return 0
    if not torch.cuda.is_available():
        print("gpu check: no CUDA device here, nothing measured (run it on a machine with a GPU)")
        return 0
    began = time.perf_counter()
    device = bench.resolve_device("cuda")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"machine": bench.machine(device)}
    print("1. equivalence", file=sys.stderr)
    result["equivalence"] = equivalence()
    result["tangents"] = tangent_agreement()
    print("2. cost of every method", file=sys.stderr)
    result["methods"] = method_costs(args.out)
    print("3. runs sharing the GPU", file=sys.stderr)
    result["throughput"] = throughputs(args.seconds)
    result["projection"] = projection(result["methods"], result["throughput"])
    result["seconds"] = time.perf_counter() - began
    text = markdown(result)
    for name, content in (("gpu-check.json", json.dumps(result, indent=2) + "\n"), ("gpu-check.md", text)):
        tmp = args.out / f".{name}.tmp"
        tmp.write_text(content)
        os.replace(tmp, args.out / name)
    print(text)
    print(f"wrote {args.out / 'gpu-check.json'} and {args.out / 'gpu-check.md'}")
    return 0 if all(r["within"] for r in result["equivalence"] if r["dtype"] == "float64") else 1


if __name__ == "__main__":
    sys.exit(main())
