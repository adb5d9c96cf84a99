"""The GPU check: what a lent GPU must tell us, in sections whose results are written as each
one ends, so that a check cut short still brings back what it measured.

Sections (``--quick`` runs the first four, about 2 minutes on one H100/H200-class GPU; the full
check runs all but ``cuda_tests``, about 7 minutes; ``--sections`` picks any):

- ``machine``: provenance. torch, torchvision, CUDA and cuDNN versions against the project's pin,
  the TF32 and determinism flags in force, the GPU and its memory, the project's commit.
- ``equivalence``: one GDW and one MW-Net iteration on the device against the CPU from the same
  state, float64 (relative difference of the updates at most 1e-10) and float32 (three
  iterations, within 1e-2: TF32 convolutions keep 10 bits of mantissa).
- ``tangents``: ResNet-32's forward graph on the device in float32 and float64: the node kinds
  met (cuDNN's BatchNorm among them), whether each was handled by its own rule of
  ``gdwlib.tangents`` rather than by the fallback, and J v against ``torch.func.jvp``.
- ``cuda_tests``: pytest over the CUDA-only tests (``-m cuda`` in ``CUDA_TEST_FILES``): no host
  sync in any method's iteration, the tangent rules, CPU-vs-CUDA equality.
- ``methods``: milliseconds per iteration of every method (ResNet-32, batch 100, CIFAR-10 and
  CIFAR-100 shapes), timed on the trainer's path (value checks deferred), ratios to BaseModel,
  peak memory (``bench_methods.py``).
- ``throughput``: 1, 2, 4 and 8 GDW runs sharing the GPU as processes, iterations per second.
- ``projection``: GPU-hours of the paper's Tables 2-4 grid, from ``methods`` and ``throughput``.

    PYTHONPATH=. python3 benchmarks/gpu_check.py --quick --commit SHA   # or: make gpu-check-quick
    PYTHONPATH=. python3 benchmarks/gpu_check.py --commit SHA           # or: make gpu-check
    PYTHONPATH=. python3 benchmarks/gpu_check.py --sections cuda_tests --every-test   # or: make gpu-tests
    PYTHONPATH=. python3 benchmarks/gpu_check.py --device cpu --out DIR # rehearsal on the CPU

Output: ``gpu-check.json`` and ``gpu-check.md`` for the full check, which the book and the sweep
read (``gpu-check-quick.*`` with ``--quick``, ``gpu-check-<sections>.*`` for other ``--sections``,
``gpu-check-rehearsal.*`` on the CPU; ``cuda-tests.xml``, pytest's report) in ``--out``: ``$OUT`` when set
(the device tool brings back only what is written there), else ``benchmarks/measured``. A section
that fails records its error and the next one runs. Exit status 1 when a section failed or a check
did not hold; without CUDA (and without ``--device cpu``) it says so in one line and exits 0.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import bench_methods as bench  # noqa: E402

from gdwlib import cost  # noqa: E402
from gdwlib.data.batches import Batch  # noqa: E402
from gdwlib.experiments import grid  # noqa: E402

FLOAT64_TOLERANCE = 1e-10
FLOAT32_TOLERANCE = 1e-2     # TF32 convolutions (PyTorch's default for cuDNN) keep 10 bits of mantissa
FLOAT32_ITERATIONS = 3
PAPER_TABLES = ("table2", "table3", "table4")
SHAPE_OF = {"cifar10": "cifar", "cifar100": "cifar100"}
TAG = "GPU_CHECK "
PINNED = ("torch", "torchvision")
# Every test file with a test marked `cuda` (tests/conftest.py's cuda_only); a test keeps it complete.
CUDA_TEST_FILES = ("tests/test_cuda.py", "tests/test_sync.py", "tests/test_tangents.py")
EXPECTED_MINUTES = {"gpu-check-quick": 2, "gpu-check": 7, "gpu-check-cuda-tests": 1}   # estimates, before any GPU ran them
BUDGET_MINUTES = 6.5   # the throughput section starts no further test after this: the full check stays under 8
QUICK = ("machine", "equivalence", "tangents", "cuda_tests")
FULL = ("machine", "equivalence", "tangents", "methods", "throughput", "projection")
ALL = QUICK + FULL[3:]


@dataclass(frozen=True)
class Settings:
    """How long each timed section runs: long on a GPU, where iterations are cheap; seconds in the
    CPU rehearsal, which only walks every code path."""

    batch: int
    methods: tuple[str, ...]
    rounds: int
    iters: int
    warmup: int
    memory: bool
    runs_per_gpu: tuple[int, ...]
    seconds: float
    throughput_method: str


ON_GPU = Settings(100, ("all",), rounds=5, iters=20, warmup=5, memory=True, runs_per_gpu=(1, 2, 4, 8), seconds=15.0,
                  throughput_method="GDW")
REHEARSAL = Settings(8, ("BaseModel", "GDW"), rounds=1, iters=1, warmup=0, memory=False, runs_per_gpu=(1, 2),
                     seconds=0.5, throughput_method="BaseModel")


@dataclass
class Context:
    device: torch.device
    settings: Settings
    out: Path
    commit: str | None
    every_test: bool = False   # cuda_tests: every test of CUDA_TEST_FILES, not only those marked cuda
    deadline: float = float("inf")   # time.perf_counter() after which no further throughput test starts


def bench_args(**changes) -> SimpleNamespace:
    """The settings bench_methods' builders read (its defaults)."""
    return SimpleNamespace(**{"batch": 100, "seed": 1, "epoch": None, **changes})


# --------------------------------------------------------------------------- machine

def pinned_versions(requirements: Path = ROOT / "requirements.txt") -> dict[str, str]:
    """The versions the project pins for torch and torchvision."""
    pins = {}
    for line in requirements.read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep and name in PINNED:
            pins[name] = version
    return pins


def _flag(read: Callable[[], object]) -> object:
    try:
        return read()
    except (AttributeError, RuntimeError):   # a flag this torch does not have
        return None


def machine(ctx: Context) -> dict:
    """Provenance: what the numbers of this check were measured with."""
    import torchvision

    info = bench.machine(ctx.device)
    if ctx.commit:
        info["commit"] = ctx.commit
    elif info["commit"] == "unknown":
        info["commit"] = "unknown (no .git here: pass --commit)"
    versions = {"torch": torch.__version__, "torchvision": torchvision.__version__}
    pins = pinned_versions()
    info.update(torchvision=versions["torchvision"], cuda=torch.version.cuda,
                cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                pinned=pins,
                differs_from_pin=[f"{k} {versions[k]} (pinned {v})" for k, v in pins.items()
                                  if versions[k].split("+")[0] != v],
                tf32={"matmul": _flag(lambda: torch.backends.cuda.matmul.allow_tf32),
                      "cudnn": _flag(lambda: torch.backends.cudnn.allow_tf32),
                      "float32_matmul_precision": torch.get_float32_matmul_precision()},
                deterministic={"cudnn.deterministic": torch.backends.cudnn.deterministic,
                               "cudnn.benchmark": torch.backends.cudnn.benchmark,
                               "deterministic_algorithms": torch.are_deterministic_algorithms_enabled()})
    if ctx.device.type == "cuda":
        props = torch.cuda.get_device_properties(ctx.device)
        info.update(memory_gb=props.total_memory / 2**30, capability=f"{props.major}.{props.minor}")
    info["rehearsal"] = ctx.device.type != "cuda"
    return info


# --------------------------------------------------------------------------- equivalence

def _cast(batch: Batch, dtype: torch.dtype) -> Batch:
    return Batch(batch.x.to(dtype), batch.y, batch.y_true, batch.index)


def _updates(runner, before: dict[str, torch.Tensor]) -> torch.Tensor:
    """Every parameter's change since ``before``, concatenated, on the CPU in float64."""
    now = {k: v.detach() for k, v in runner.method.model.named_parameters()}
    return torch.cat([(now[k].double().cpu() - before[k].double().cpu()).flatten() for k in before])


def update_difference(variant: str, dtype: torch.dtype, iterations: int, devices=("cpu", "cuda"),
                      batch: int = 100) -> float:
    """||update on devices[1] - update on devices[0]|| / ||update on devices[0]|| after
    ``iterations`` steps of ``variant`` from one state, on the same batches."""
    shape = bench.SHAPES["cifar"]
    runners = {k: bench.build_runner(variant, shape, bench_args(batch=batch), torch.device(d)) for k, d in zip(("a", "b"), devices)}
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
        r.steps(iterations)
    a, b = _updates(runners["a"], before), _updates(runners["b"], before)
    return float((b - a).norm() / a.norm())


def equivalence(ctx: Context) -> list[dict]:
    rows = []
    for variant in ("GDW", "MWNet"):
        for dtype, iterations, tolerance in ((torch.float64, 1, FLOAT64_TOLERANCE),
                                             (torch.float32, FLOAT32_ITERATIONS, FLOAT32_TOLERANCE)):
            difference = update_difference(variant, dtype, iterations, ("cpu", str(ctx.device)), ctx.settings.batch)
            rows.append({"method": variant, "dtype": str(dtype).replace("torch.", ""), "iterations": iterations,
                         "relative_difference": difference, "tolerance": tolerance,
                         "within": difference <= tolerance})
            print(f"  {variant} {rows[-1]['dtype']}: {difference:.2e} (tolerance {tolerance:g})", file=sys.stderr)
    return rows


# --------------------------------------------------------------------------- tangents

BATCH_NORM_NODES = ("NativeBatchNormBackward0", "CudnnBatchNormBackward0", "MiopenBatchNormBackward0")


def tangent_agreement(ctx: Context) -> list[dict]:
    """ResNet-32 (CIFAR shape, train mode) on the device: the node kinds of its graph, the rules
    graph_jvp applied, and J v against torch.func.jvp, in float32 and float64."""
    from gdwlib.bilevel import functional_logits, trainable_parameters
    from gdwlib.models import build_model
    from gdwlib.tangents import graph_jvp, graph_operations

    rows = []
    for dtype, tolerance in ((torch.float32, FLOAT32_TOLERANCE), (torch.float64, 1e-12)):
        torch.manual_seed(0)
        model = build_model("resnet32", 10, 3, 32).to(ctx.device, dtype).train()
        x = torch.randn(ctx.settings.batch, 3, 32, 32, device=ctx.device, dtype=dtype)
        v = {k: torch.randn_like(p) for k, p in trainable_parameters(model).items()}
        out, applied = model(x), collections.Counter()
        graph = graph_jvp(out, {p: v[k] for k, p in model.named_parameters()}, applied)
        nodes = graph_operations(out)
        _, forward = torch.func.jvp(lambda p: functional_logits(model, p, x), (trainable_parameters(model),), (v,))
        difference = None if graph is None else float((graph - forward).norm() / forward.norm())
        batch_norm = {n: {"met": nodes[n], "by_its_rule": applied[n]} for n in BATCH_NORM_NODES if nodes[n]}
        rows.append({"dtype": str(dtype).replace("torch.", ""), "graph_path": graph is not None,
                     "nodes": dict(nodes), "batch_norm": batch_norm, "relative_difference": difference,
                     "tolerance": tolerance, "within": difference is not None and difference <= tolerance
                     and all(b["met"] == b["by_its_rule"] for b in batch_norm.values())})
        print(f"  {rows[-1]['dtype']}: BatchNorm as {', '.join(batch_norm) or 'none'}; "
              f"{'no rule for some operation' if graph is None else f'{difference:.2e}'}", file=sys.stderr)
    return rows


# --------------------------------------------------------------------------- CUDA tests

def cuda_tests(ctx: Context) -> dict:
    """pytest over the tests marked ``cuda`` (on the CPU they all skip: the rehearsal checks that
    the files collect with the GPU machine's packages), or over every test of their files
    (``--every-test``: the CPU ones too, under the machine's own torch). Plugins are not
    autoloaded: what the GPU machine lacks (nbval) must not be imported."""
    xml = ctx.out / "cuda-tests.xml"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    select = [] if ctx.every_test else ["-m", "cuda"]
    proc = subprocess.run([sys.executable, "-m", "pytest", *CUDA_TEST_FILES, *select, "-q", "-p", "no:cacheprovider",
                           f"--junitxml={xml}"], cwd=ROOT, env=env, capture_output=True, text=True)
    print("  " + (proc.stdout.strip().splitlines() or ["(no output)"])[-1], file=sys.stderr)
    if not xml.exists():
        raise RuntimeError(f"pytest wrote no report (exit code {proc.returncode}): "
                           + " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-5:]))
    counts = collections.Counter()
    failed = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        outcome = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
        counts[outcome] += 1
        if outcome in ("failure", "error"):
            message = next(c for c in case if c.tag == outcome).get("message", "")
            failed.append(f"{case.get('classname')}::{case.get('name')}: {message.splitlines()[0] if message else ''}")
    return {"files": list(CUDA_TEST_FILES), "selection": " ".join(select) or "every test", "exit_code": proc.returncode, "passed": counts["passed"],
            "failed": counts["failure"] + counts["error"], "skipped": counts["skipped"], "failures": failed,
            "within": proc.returncode == 0}


# --------------------------------------------------------------------------- methods

def method_costs(ctx: Context) -> dict:
    """bench_methods on the device, CIFAR-10 and CIFAR-100 shapes; its JSON (every round's time)
    is kept beside the check's."""
    s = ctx.settings
    path = ctx.out / "gpu-check-methods.json"
    argv = [sys.executable, str(HERE / "bench_methods.py"), "--device", str(ctx.device), "--methods", *s.methods,
            "--shapes", "cifar", "cifar100", "--rounds", str(s.rounds), "--iters", str(s.iters),
            "--warmup", str(s.warmup), "--batch", str(s.batch), "--json", str(path)] + ([] if s.memory else ["--no-memory"])
    tail: collections.deque[str] = collections.deque(maxlen=5)
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:   # shown as it comes, the end kept for the error
            sys.stderr.write(line)
            tail.append(line.rstrip())
    if proc.returncode != 0:
        raise RuntimeError(f"bench_methods.py exited with {proc.returncode}: " + " | ".join(tail))
    return json.loads(path.read_text())


# --------------------------------------------------------------------------- throughput

def throughput_child(go: Path, seconds: float, device_name: str, method: str, batch: int) -> None:
    """One run of the throughput test: build, warm up, say ready, wait for ``go``, count
    iterations taken as the trainer takes them (:meth:`bench_methods.Runner.steps`)."""
    torch.set_num_threads(1)
    device = bench.resolve_device(device_name)
    runner = bench.build_runner(method, bench.SHAPES["cifar"], bench_args(batch=batch), device)
    runner.steps(3)
    bench.synchronize(device)
    print(TAG + "ready", flush=True)
    while not go.exists():
        time.sleep(0.01)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        runner.steps(5)
        count += 5
    bench.synchronize(device)
    print(TAG + json.dumps({"iterations": count, "seconds": time.perf_counter() - start}), flush=True)


def throughput(runs: int, seconds: float, device: str = "cuda", method: str = "GDW", batch: int = 100) -> dict:
    """``runs`` processes training ``method`` on the one ``device`` at the same time."""
    with tempfile.TemporaryDirectory() as tmp:
        go = Path(tmp) / "go"
        argv = [sys.executable, str(Path(__file__).resolve()), "--_child", str(go), str(seconds), device, method,
                str(batch)]
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
    return {"runs": runs, "method": method, "iterations_per_second": per_second}


def throughputs(ctx: Context) -> list[dict]:
    s = ctx.settings
    rows = []
    for n in s.runs_per_gpu:
        if rows and time.perf_counter() > ctx.deadline:
            print(f"  {n} run(s) and more: skipped, the check is past its time budget", file=sys.stderr)
            break
        rows.append(throughput(n, s.seconds, str(ctx.device), s.throughput_method, s.batch))
        rows[-1]["speedup"] = rows[-1]["iterations_per_second"] / rows[0]["iterations_per_second"]
        print(f"  {n} run(s): {rows[-1]['iterations_per_second']:.1f} it/s", file=sys.stderr)
    return rows


# --------------------------------------------------------------------------- projection

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


def project(ctx: Context, result: dict) -> dict:
    missing = [k for k in ("methods", "throughput") if k not in result]
    if missing:
        raise RuntimeError(f"needs the sections {' and '.join(missing)}, which did not run or failed")
    return projection(result["methods"], result["throughput"])


SECTIONS: dict[str, tuple[str, Callable[[Context, dict], object]]] = {
    "machine": ("the machine", lambda ctx, result: result["machine"]),   # read before the first section
    "equivalence": ("the device against the CPU, from the same state", lambda ctx, result: equivalence(ctx)),
    "tangents": ("J v read off the forward's graph", lambda ctx, result: tangent_agreement(ctx)),
    "cuda_tests": ("the CUDA tests", lambda ctx, result: cuda_tests(ctx)),
    "methods": ("cost per iteration of every method", lambda ctx, result: method_costs(ctx)),
    "throughput": ("runs sharing the device", lambda ctx, result: throughputs(ctx)),
    "projection": ("the paper's Tables 2-4 grid", project),
}


# --------------------------------------------------------------------------- report

def _machine_lines(m: dict) -> list[str]:
    differs = m.get("differs_from_pin") or []
    tf32, det = m.get("tf32", {}), m.get("deterministic", {})
    memory = f", {m['memory_gb']:.0f} GiB" if m.get("memory_gb") else ""
    return [f"- device: {m['name']}{memory} ({m['type']}{', CPU REHEARSAL: the numbers mean nothing' if m.get('rehearsal') else ''})",
            f"- torch {m['torch']}, torchvision {m.get('torchvision', '?')}, CUDA {m.get('cuda')}, cuDNN {m.get('cudnn')}; "
            + (f"differs from the pin: {'; '.join(differs)}" if differs else "as pinned"),
            f"- TF32: matmul {tf32.get('matmul')}, cuDNN {tf32.get('cudnn')}, float32 matmul precision "
            f"{tf32.get('float32_matmul_precision')}; cuDNN deterministic {det.get('cudnn.deterministic')}, benchmark "
            f"{det.get('cudnn.benchmark')}, deterministic algorithms {det.get('deterministic_algorithms')}",
            f"- gdwlib {m['gdwlib']}, commit {m['commit']}, {m['date']}"]


def _batch_norm_cell(batch_norm: dict) -> str:
    return ", ".join(f"{k} ({b['met']})" for k, b in batch_norm.items()) or "none"


def _section_lines(name: str, value) -> list[str]:
    if name == "equivalence":
        return (["| method | dtype | iterations | relative difference of the updates | tolerance | within |",
                 "|---|---|---:|---:|---:|---|"]
                + [f"| {r['method']} | {r['dtype']} | {r['iterations']} | {r['relative_difference']:.2e} | "
                   f"{r['tolerance']:g} | {'yes' if r['within'] else 'NO'} |" for r in value])
    if name == "tangents":
        lines = ["| dtype | BatchNorm node met (times) | handled by its own rule | relative difference to torch.func.jvp |",
                 "|---|---|---|---:|"]
        for r in value:
            bn = r["batch_norm"]
            lines.append(f"| {r['dtype']} | {_batch_norm_cell(bn)} | "
                         f"{'yes' if bn and all(b['met'] == b['by_its_rule'] for b in bn.values()) else 'NO'} | "
                         + (f"{r['relative_difference']:.2e} |" if r["graph_path"] else
                            "**an operation without a rule: training falls back to torch.func.jvp** |"))
        return lines
    if name == "cuda_tests":
        selection = value.get("selection", "-m cuda").replace("every test", "")
        lines = [f"{value['passed']} passed, {value['failed']} failed, {value['skipped']} skipped "
                 f"(`pytest {selection + ' ' if selection else ''}{' '.join(value['files'])}`)."]
        return lines + [f"- FAILED {f}" for f in value["failures"]]
    if name == "methods":
        lines = []
        for shape in ("cifar", "cifar100"):
            s = value["shapes"][shape]
            lines += [f"{bench.SHAPES[shape].dataset} shape, ResNet-32, batch {value['settings']['batch']}:", "",
                      "| method | ms / iteration | x BaseModel | peak MB |", "|---|---:|---:|---:|"]
            lines += [f"| {n} | {v['ms_median']:.1f} | {bench.fmt(v['x_base_time'], '.2f', 'x')} | "
                      f"{bench.fmt(v.get('peak_mb'), '.0f')} |" for n, v in s["variants"].items()]
            lines += [f"| {n} | skipped: {why} | | |" for n, why in s.get("skipped", {}).items()] + [""]
        return lines[:-1]
    if name == "throughput":
        return (["| runs | method | iterations / s, summed | x one run |", "|---:|---|---:|---:|"]
                + [f"| {r['runs']} | {r.get('method', 'GDW')} | {r['iterations_per_second']:.1f} | {r['speedup']:.2f}x |"
                   for r in value])
    if name == "projection":
        p = value
        return [f"{p['runs']} runs: {p['hours_one_at_a_time']:.1f} GPU-hours one run at a time; "
                f"{p['hours']:.1f} GPU-hours with {p['best_runs_per_gpu']} runs per GPU "
                f"({p['speedup']:.2f}x). Evaluation after each epoch is not counted"
                + (f"; {p['runs_without_cost']} run(s) had no measured cost." if p["runs_without_cost"] else ".")]
    return []


def markdown(result: dict) -> str:
    m = result["machine"]
    kind = "Rehearsal on the CPU" if m.get("rehearsal") else ("Quick GPU check" if result.get("quick") else "GPU check")
    took = ", ".join(f"{k} {v:.0f} s" for k, v in result.get("timings", {}).items())
    lines = [f"# {kind}: {m['name']}, {m['date']}", "", *_machine_lines(m),
             f"- took {result.get('seconds', 0) / 60:.1f} min ({took})"]
    errors = result.get("errors", {})
    for k, name in enumerate((s for s in result["sections"] if s != "machine"), start=1):
        title = SECTIONS[name][0]
        lines += ["", f"## {k}. {title[0].upper()}{title[1:]}", ""]
        if name in errors:
            lines.append(f"**Failed:** `{errors[name]['error']}`")
        elif name in result:
            lines += _section_lines(name, result[name])
        else:
            lines.append("Not run (the check stopped before it).")
    return "\n".join(lines) + "\n"


def write(result: dict, out: Path, stem: str) -> None:
    """The JSON and the Markdown, each replaced atomically: a check killed later keeps these."""
    for name, content in ((f"{stem}.json", json.dumps(result, indent=2) + "\n"), (f"{stem}.md", markdown(result))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(content)
        os.replace(tmp, out / name)


def held(result: dict) -> bool:
    """No section failed, and every check that has a verdict holds."""
    verdicts = [r["within"] for r in result.get("equivalence", []) if r["dtype"] == "float64"]
    verdicts += [r["graph_path"] and r["within"] for r in result.get("tangents", [])]
    verdicts += [result["cuda_tests"]["within"]] if "cuda_tests" in result else []
    return not result.get("errors") and all(verdicts)


def run_check(ctx: Context, sections: tuple[str, ...], stem: str, quick: bool = False) -> dict:
    began = time.perf_counter()
    result: dict = {"sections": list(sections), "quick": quick, "settings": vars(ctx.settings) | {
        "methods": list(ctx.settings.methods), "runs_per_gpu": list(ctx.settings.runs_per_gpu)}}
    result["machine"] = machine(ctx)   # every report names its machine, whatever the sections
    for k, name in enumerate(sections, start=1):
        print(f"{k}. {SECTIONS[name][0]}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            result[name] = SECTIONS[name][1](ctx, result)
        except Exception as e:   # recorded; the next section still runs
            result.setdefault("errors", {})[name] = {"error": f"{type(e).__name__}: {e}",
                                                     "traceback": traceback.format_exc()}
            print(f"  FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        result.setdefault("timings", {})[name] = time.perf_counter() - started
        result["seconds"] = time.perf_counter() - began
        write(result, ctx.out, stem)
    return result


def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"sections {', '.join(QUICK)} (about 2 minutes on a GPU)")
    p.add_argument("--sections", nargs="+", choices=list(SECTIONS) + ["all"], default=None,
                   help=f"run these sections (default: {' '.join(FULL)}; 'all' for every one)")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu: a rehearsal that walks every section")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: $OUT if set, else benchmarks/measured)")
    p.add_argument("--commit", default=None, help="the project's commit, where the copy has no .git")
    p.add_argument("--every-test", action="store_true",
                   help="cuda_tests: run every test of the files that hold CUDA tests, not only the CUDA ones")
    p.add_argument("--seconds", type=float, default=None, help="timed seconds per throughput test")
    p.add_argument("--budget", type=float, default=BUDGET_MINUTES,
                   help=f"minutes after which no further throughput test starts (default {BUDGET_MINUTES:g})")
    p.add_argument("--_child", nargs=5, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args._child:
        go, seconds, device, method, batch = args._child
        throughput_child(Path(go), float(seconds), device, method, int(batch))
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu check: no CUDA device here, nothing measured (run it on a machine with a GPU, "
              "or rehearse it with --device cpu --out DIR)")
        return 0
    if device.type not in ("cuda", "cpu"):
        sys.exit(f"--device must be cuda or cpu, got {args.device!r}")
    bench.resolve_device(str(device))   # the trainer's cuDNN settings
    sections = QUICK if args.quick else FULL
    if args.sections:
        sections = ALL if "all" in args.sections else ("machine",) + tuple(s for s in ALL[1:] if s in args.sections)
    settings = ON_GPU if device.type == "cuda" else REHEARSAL
    if args.seconds is not None:
        settings = Settings(**{**vars(settings), "seconds": args.seconds})
    out = args.out or Path(os.environ.get("OUT") or HERE / "measured")
    out.mkdir(parents=True, exist_ok=True)
    # only the full check is gpu-check.*, which the book and the sweep read
    stem = ("gpu-check-rehearsal" if device.type != "cuda" else "gpu-check-quick" if args.quick and not args.sections
            else "gpu-check" if sections == FULL else "gpu-check-" + "-".join(sections[1:]).replace("_", "-"))
    ctx = Context(device, settings, out, args.commit, args.every_test, time.perf_counter() + 60 * args.budget)
    if device.type == "cuda":
        expected = EXPECTED_MINUTES.get(stem)
        print(f"{stem}: sections {', '.join(sections)}"
              + (f"; expected about {expected} min on one H100/H200-class GPU" if expected else ""), file=sys.stderr)
    result = run_check(ctx, sections, stem, quick=args.quick)
    text = markdown(result)
    print(text)
    print(f"wrote {out / stem}.json and .md ({result['seconds'] / 60:.1f} min)")
    return 0 if held(result) else 1


if __name__ == "__main__":
    sys.exit(main())
