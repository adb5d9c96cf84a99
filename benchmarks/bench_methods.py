"""Side-by-side cost of the training methods: time per iteration and peak memory, with ratios.

Every variant is built through the method registry (:func:`gdwlib.methods.get_method`) and timed
on exactly what training runs per batch, ``method.train_step(batch, meta_iterator)`` (forward,
meta-gradient, optimizer steps, weight statistics), on the same seeded inputs: random normal
images with random labels, CIFAR-shaped (100, 3, 32, 32; ``--shapes cifar100`` for 100 classes) and
Fashion-MNIST-shaped (100, 1, 28, 28), ResNet-32, batch 100.

Time: each variant is warmed up, then the variants are interleaved round-robin over ``--rounds``
rounds of ``--iters`` iterations each (the order rotates every round), so that a change in the
machine's load hits all variants alike; the median over rounds is reported.

Memory: the peak memory of one iteration over what was allocated before it. On the CPU each
variant runs in a fresh subprocess, after one warm-up iteration, and the figure is the peak of
the tensor allocations the PyTorch profiler records (cross-checked against the process's
resident-set high-water mark); on CUDA it is ``torch.cuda.max_memory_allocated``, in this process.

    python benchmarks/bench_methods.py                      # the four default variants, both shapes
    python benchmarks/bench_methods.py --methods all        # every registered method as well
    python benchmarks/bench_methods.py --shapes cifar --rounds 3 --json out.json
"""
from __future__ import annotations

import argparse
import atexit
import functools
import gc
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gdwlib._checks import deferred_checks  # noqa: E402
from gdwlib.config import RunConfig  # noqa: E402
from gdwlib.data.batches import Batch, Pipeline, Split  # noqa: E402
from gdwlib.data.build import TrainingData  # noqa: E402
from gdwlib.methods import METHODS, Method, get_method  # noqa: E402
from gdwlib.results import code_version, device_info  # noqa: E402
from gdwlib.stats import WeightStats  # noqa: E402


@dataclass(frozen=True)
class Shape:
    """One input shape: the data set it stands for and the (c, h, w) of its images."""

    dataset: str
    image: tuple[int, int, int]


SHAPES = {"cifar": Shape("cifar10", (3, 32, 32)), "cifar100": Shape("cifar100", (3, 32, 32)),
          "fmnist": Shape("fashion-mnist", (1, 28, 28))}
DEFAULT_SHAPES = ["cifar", "fmnist"]
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "fashion-mnist": 60_000}  # before the meta set is taken out

# Variants beyond the registered methods: name -> (registered method, config changes).
# A registered method is a variant of its own name with no changes.
EXTRA_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "GDW-reference": ("GDW", {"meta_method": "reference"}),
    "GDW-functional-jvp": ("GDW", {"meta_method": "functional-jvp"}),
}
LABELS = {"GDW": "GDW (fast path)", "GDW-reference": "GDW (reference path)",
          "GDW-functional-jvp": "GDW (torch.func.jvp: a second forward)"}
DEFAULT_VARIANTS = ["BaseModel", "MWNet", "GDW", "GDW-functional-jvp", "GDW-reference"]
BASELINE = "BaseModel"
INPUT_POOL = 4             # distinct training and meta batches, cycled


@dataclass(frozen=True)
class Target:
    """A ratio the issue asks for: ``numerator / denominator`` of time or memory, bounded."""

    kind: str              # "time" or "memory"
    numerator: str
    denominator: str
    op: str                # "<=" or ">="
    bound: float

    @property
    def label(self) -> str:
        return f"{self.kind}: {self.numerator} / {self.denominator} {self.op} {self.bound:g}"

    def met(self, value: float) -> bool:
        return value <= self.bound if self.op == "<=" else value >= self.bound


TARGETS = [
    Target("time", "GDW", "BaseModel", "<=", 3.5),
    Target("time", "GDW", "MWNet", "<=", 1.05),
    Target("time", "GDW-reference", "GDW", ">=", 1.3),
    Target("memory", "GDW", "BaseModel", "<=", 2.0),
]
EXTRA_RATIOS = [("MWNet", "BaseModel")]
REFERENCE_POINTS = ("for scale, in plain iterations (ResNet-32, batch 100, this CPU, measured the same way): "
                    "the public GDW code ~7, a functional double-backward step ~5.5, a torch.func.jvp step ~4")


# --------------------------------------------------------------------------- variants and inputs

def variant_spec(name: str) -> tuple[str, dict[str, Any]]:
    """The registered method behind variant ``name`` and the config changes it makes."""
    if name in EXTRA_VARIANTS:
        return EXTRA_VARIANTS[name]
    get_method(name)  # raises with the list of known methods
    return name, {}


def resolve_variants(names: list[str]) -> list[str]:
    """Expand ``all`` into every registered method plus the extra variants, keeping order."""
    everything = list(METHODS) + [v for v, (m, _) in EXTRA_VARIANTS.items() if m in METHODS]
    out: list[str] = []
    for name in names:
        out += [v for v in (everything if name == "all" else [name]) if v not in out]
    for name in out:
        variant_spec(name)
    return out


@functools.cache
def scratch_results_dir() -> str:
    """Where stand-in runs go (this process only): the user's results are never read or written."""
    path = tempfile.mkdtemp(prefix="bench_methods_")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def make_config(variant: str, shape: Shape, args) -> RunConfig:
    method, changes = variant_spec(variant)
    return RunConfig(method=method, dataset=shape.dataset, model="resnet32", batch_size=args.batch,
                     meta_batch_size=args.batch, seed=args.seed, results_dir=scratch_results_dir(), **changes)


def random_split(size: int, image: tuple[int, ...], num_classes: int, gen: torch.Generator) -> Split:
    labels = torch.randint(0, num_classes, (size,), generator=gen)
    images = torch.empty((size, *image), dtype=torch.uint8).random_(0, 256, generator=gen)
    return Split(images, labels, labels.clone())


@functools.cache
def stand_in_splits(shape: Shape, meta_per_class: int, num_classes: int, seed: int, device: torch.device):
    """Random train, meta and test splits of the real sizes (GLC's gold share depends on them)."""
    gen = torch.Generator().manual_seed(seed)
    meta = meta_per_class * num_classes
    sizes = (TRAIN_IMAGES[shape.dataset] - meta, meta, 10 * num_classes)
    return tuple(random_split(n, shape.image, num_classes, gen).to(device) for n in sizes)


def stand_in_data(config: RunConfig, shape: Shape, device: torch.device) -> TrainingData:
    """A synthetic :class:`TrainingData`: what a method's constructor (or ``batches``) may look at."""
    C, c = config.num_classes, shape.image[0]
    train, meta, test = stand_in_splits(shape, config.meta_per_class, C, config.seed, device)
    return TrainingData(train=train, meta=meta, test=test, num_classes=C,
                        pipeline=Pipeline((0.5,) * c, (0.25,) * c, pad=0), config=config)


def make_batches(shape: Shape, batch: int, data: TrainingData, seed: int) -> tuple[list, list]:
    """The seeded training and meta batches every variant sees: random normal images, with the
    labels the (random) splits hold at the batch's indices."""
    gen = torch.Generator().manual_seed(seed + 1)

    def one(split: Split, index: torch.Tensor) -> Batch:
        x = torch.randn(batch, *shape.image, generator=gen).to(split.labels.device)
        index = index.to(split.labels.device)
        return Batch(x, split.labels[index], split.true_labels[index], index)

    train = [one(data.train, torch.randperm(len(data.train), generator=gen)[:batch]) for _ in range(INPUT_POOL)]
    meta = [one(data.meta, torch.randperm(len(data.meta), generator=gen)[:batch]) for _ in range(INPUT_POOL)]
    return train, meta


@dataclass
class Runner:
    """One variant, ready to take training steps on its cycle of batches."""

    name: str
    method: Any
    batches: Any
    meta: Any
    times: list[float] = field(default_factory=list)

    def step(self) -> torch.Tensor:
        return self.method.train_step(next(self.batches), self.meta)

    def steps(self, n: int) -> None:
        """``n`` steps as the trainer takes them: value checks deferred, so nothing is read back
        from the device inside an iteration; a failed check is raised after the ``n`` steps."""
        with deferred_checks() as checks:
            for _ in range(n):
                self.step()
        checks.raise_if_failed()


def steady_epoch(method, config: RunConfig) -> int:
    """Half-way through training: past the warm-up phase of any method that has one."""
    epochs = method.num_epochs() if hasattr(method, "num_epochs") else config.epochs
    return epochs // 2


@contextmanager
def no_training():
    """Make sure no method trains an earlier run it needs: the benchmark only provides stand-ins."""
    from gdwlib import train

    saved = train.run

    def refuse(config, **_):
        raise RuntimeError(f"needs a finished {config.method} run; the benchmark does not train one")

    train.run = refuse
    try:
        yield
    finally:
        train.run = saved


def provide_requirements(method: str, config: RunConfig, data: TrainingData, device: torch.device) -> None:
    """Finished stand-ins of the runs ``method`` starts from (Fine-tuning's BaseModel): untrained
    models saved where the trainer saves a finished run's model, so loading them costs no training."""
    from gdwlib import train

    requirements = getattr(get_method(method), "requirements", lambda _: [])(config)
    for required in requirements:
        directory = train.run_directory(required, device)
        if (directory / "result.json").exists():
            continue
        directory.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(required.seed)
        model = get_method(required.method)(required, data, device).eval_model()
        torch.save(model.state_dict(), directory / "model.pt")
        (directory / "result.json").write_text(json.dumps({"stand_in": True}))


@torch.no_grad()
def settle_batchnorm(method, pool: list[Batch]) -> None:
    """Give the network BatchNorm running statistics of the inputs, as the epochs before the timed
    one would have: a method that uses the network in eval mode when an epoch starts (GLC's
    corruption estimate) then sees sane outputs, not the saturated ones of the initial statistics."""
    model = method.model
    layers = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the pool
    was_training = model.training
    model.train()
    for b in pool:
        model(b.x)
    model.train(was_training)
    for m, momentum in zip(layers, saved):
        m.momentum = momentum


def step_batches(method, epoch: int, pool: list[Batch]):
    """The seeded pool, unless the method draws its own batches (GLC's gold + silver, Fine-tuning's
    meta set): then the first batches of its own stream over the synthetic data, cycled."""
    own = getattr(type(method), "batches", Method.batches) is not Method.batches
    return itertools.cycle(list(itertools.islice(method.batches(epoch), INPUT_POOL)) if own else pool)


def build_runner(variant: str, shape: Shape, args, device: torch.device) -> Runner:
    """Construct ``variant`` as the trainer does (same seed, so the same initial weights)."""
    config = make_config(variant, shape, args)
    data = stand_in_data(config, shape, device)
    train, meta = make_batches(shape, args.batch, data, args.seed)
    with no_training():
        provide_requirements(config.method, config, data, device)
        torch.manual_seed(args.seed)
        method = get_method(config.method)(config, data, device)
    if method.records_weights:
        # the stand-in labels are all clean, so the trainer would track the first instances
        method.stats = WeightStats(len(data.train), config.num_classes, np.arange(config.track_instances), device)
    settle_batchnorm(method, train)
    epoch = steady_epoch(method, config) if args.epoch is None else args.epoch
    lr = method.learning_rate(epoch) if hasattr(method, "learning_rate") else config.lr
    method.start_epoch(epoch, lr)
    if method.stats is not None:
        method.stats.start_epoch(epoch)
    meta_iter = itertools.cycle(meta) if method.uses_meta else None
    return Runner(variant, method, step_batches(method, epoch, train), meta_iter)


# --------------------------------------------------------------------------- time

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_block(runner: Runner, iters: int, device: torch.device) -> float:
    """Seconds per iteration over ``iters`` consecutive steps, taken as the trainer takes them
    (:meth:`Runner.steps`); the deferred checks are read after the clock stops."""
    synchronize(device)
    with deferred_checks() as checks:
        start = time.perf_counter()
        for _ in range(iters):
            runner.step()
        synchronize(device)
        elapsed = time.perf_counter() - start
    checks.raise_if_failed()
    return elapsed / iters


def time_runners(runners: list[Runner], args, device: torch.device) -> None:
    """Warm up each runner, then interleave them round-robin, rotating the order every round."""
    for r in runners:
        r.steps(args.warmup)
    for k in range(args.rounds):
        for r in runners[k % len(runners):] + runners[:k % len(runners)]:
            r.times.append(timed_block(r, args.iters, device))
        print(f"  round {k + 1}/{args.rounds}: " + ", ".join(f"{r.name} {1e3 * r.times[-1]:.0f} ms" for r in runners),
              file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- memory

MEMORY_TAG = "BENCH_MEMORY "
CPU_MEMORY_METHOD = ("CPU: peak of the tensor allocations recorded by torch.profiler (profile_memory) during one "
                     "iteration, over what was allocated before it; fresh subprocess per variant, after one "
                     "warm-up iteration. 'RSS' is the cross-check: the rise of the process's resident-set "
                     "high-water mark (reset via /proc/self/clear_refs) over the RSS before the iteration, with "
                     "glibc's mmap threshold pinned so freed tensors return to the OS")
CUDA_MEMORY_METHOD = ("CUDA: torch.cuda.max_memory_allocated() during one iteration minus memory_allocated() "
                      "before it, after the timed iterations; in this process (the counters see live tensors only, "
                      "so the other variants' cached blocks do not count)")


def proc_status_mb(key: str) -> float | None:
    """A ``VmRSS``/``VmHWM``-style field of /proc/self/status in MB (None off Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_rss_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def tensor_allocation_peak(prof) -> float:
    """Peak of the profiler's running total of CPU bytes allocated since profiling began."""
    from torch._C._profiler import _EventType

    def walk(events):
        for e in events:
            yield e
            yield from walk(e.children)

    totals = [e.extra_fields.total_allocated for e in walk(prof.profiler.kineto_results.experimental_event_tree())
              if e.typed[0] == _EventType.Allocation and str(e.extra_fields.device).startswith("cpu")]
    return max(totals, default=0) / 2**20


def cpu_step_memory(step: Callable[[], Any]) -> dict[str, float | None]:
    from torch.profiler import ProfilerActivity, profile

    gc.collect()
    have_hwm = reset_rss_peak()
    rss_before = proc_status_mb("VmRSS")
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    rss_peak = proc_status_mb("VmHWM")
    rss = rss_peak - rss_before if have_hwm and rss_peak is not None and rss_before is not None else None
    try:
        tensors = tensor_allocation_peak(prof)
    except (AttributeError, ImportError, TypeError) as e:  # private profiler API moved: keep the RSS figure
        print(f"tensor-allocation peak unavailable ({e}); reporting RSS", file=sys.stderr)
        tensors = rss
    return {"peak_mb": tensors, "rss_peak_mb": rss}


def cuda_step_memory(step: Callable[[], Any], device: torch.device) -> dict[str, float | None]:
    gc.collect()
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    return {"peak_mb": (peak - before) / 2**20, "absolute_peak_mb": peak / 2**20, "rss_peak_mb": None}


def memory_child(args, device: torch.device) -> None:
    """Inside the fresh subprocess: build one variant, warm it up, measure one iteration."""
    variant, shape = args._memory_child
    runner = build_runner(variant, SHAPES[shape], args, device)
    runner.steps(1)
    step = functools.partial(runner.steps, 1)
    result = cuda_step_memory(step, device) if device.type == "cuda" else cpu_step_memory(step)
    print(MEMORY_TAG + json.dumps(result), flush=True)


def child_argv(args, variant: str, shape: str) -> list[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--_memory-child", variant, shape,
            "--device", args.device, "--threads", str(args.threads), "--seed", str(args.seed),
            "--batch", str(args.batch)]
    return argv + (["--epoch", str(args.epoch)] if args.epoch is not None else [])


def measure_memory(args, variant: str, shape: str) -> dict[str, Any]:
    """Run :func:`memory_child` in a fresh process and read back its numbers."""
    # glibc would otherwise keep freed blocks resident, and the RSS cross-check would mean little
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    proc = subprocess.run(child_argv(args, variant, shape), capture_output=True, text=True, env=env)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MEMORY_TAG):
            return json.loads(line[len(MEMORY_TAG):])
    lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip() and not is_profiler_chatter(ln)]
    return {"peak_mb": None, "rss_peak_mb": None, "error": " | ".join(lines[-3:]) or f"exit code {proc.returncode}"}


def is_profiler_chatter(line: str) -> bool:
    """Kineto's start/stop and device-probe lines, which the child prints to stderr."""
    return any(s in line for s in ("USDT:", "gpuGetDeviceCount", "CPUAllocator.cpp"))


# --------------------------------------------------------------------------- results

def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def shape_summary(runners: list[Runner], memory: dict[str, dict], failures: dict[str, str]) -> dict[str, Any]:
    """Median times, memory and ratios of one input shape, as written to the JSON file."""
    variants: dict[str, dict[str, Any]] = {}
    for r in runners:
        method, changes = variant_spec(r.name)
        variants[r.name] = {"method": method, "config_changes": changes,
                            "ms_median": 1e3 * statistics.median(r.times), "ms_min": 1e3 * min(r.times),
                            "ms_rounds": [1e3 * t for t in r.times],
                            **memory.get(r.name, {})}
    base = variants.get(BASELINE, {})
    for v in variants.values():
        v["x_base_time"] = ratio(v["ms_median"], base.get("ms_median"))
        v["x_base_memory"] = ratio(v.get("peak_mb"), base.get("peak_mb"))
    ratios = {}
    for num, den in [(t.numerator, t.denominator) for t in TARGETS] + EXTRA_RATIOS:
        if num in variants and den in variants:
            ratios[f"time {num}/{den}"] = ratio(variants[num]["ms_median"], variants[den]["ms_median"])
            ratios[f"memory {num}/{den}"] = ratio(variants[num].get("peak_mb"), variants[den].get("peak_mb"))
    targets = []
    for t in TARGETS:
        value = ratios.get(f"{t.kind} {t.numerator}/{t.denominator}")
        targets.append({"target": t.label, "value": value, "met": None if value is None else t.met(value)})
    return {"variants": variants, "ratios": ratios, "targets": targets, "skipped": failures}


def fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def print_shape(name: str, shape: Shape, args, summary: dict[str, Any]) -> None:
    print(f"\n### {name}: inputs ({args.batch}, {', '.join(map(str, shape.image))}), ResNet-32, batch {args.batch}\n")
    print("| variant | ms / iteration (median) | min-max ms | x BaseModel | peak MB | x BaseModel memory | RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for v, s in summary["variants"].items():
        spread = f"{min(s['ms_rounds']):.0f}-{max(s['ms_rounds']):.0f}"
        print(f"| {LABELS.get(v, v)} | {s['ms_median']:.0f} | {spread} | {fmt(s['x_base_time'], '.2f', 'x')} | "
              f"{fmt(s.get('peak_mb'), '.0f')} | {fmt(s['x_base_memory'], '.2f', 'x')} | {fmt(s.get('rss_peak_mb'), '.0f')} |")
    for v, why in summary["skipped"].items():
        print(f"| {LABELS.get(v, v)} | skipped: {why} | | | | | |")
    for v, s in summary["variants"].items():
        if s.get("error"):
            print(f"\nmemory of {v} not measured: {s['error']}")


def print_targets(summaries: dict[str, dict]) -> None:
    names = list(summaries)
    print("\n### Targets\n")
    print("| target | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for k, t in enumerate(TARGETS):
        cells = []
        for n in names:
            row = summaries[n]["targets"][k]
            cells.append("n/a" if row["value"] is None else f"{row['value']:.2f} {'met' if row['met'] else 'NOT met'}")
        print(f"| {t.label} | " + " | ".join(cells) + " |")
    for num, den in EXTRA_RATIOS:
        cells = [fmt(summaries[n]["ratios"].get(f"time {num}/{den}")) for n in names]
        print(f"| time: {num} / {den} (for information) | " + " | ".join(cells) + " |")
    print(f"\n{REFERENCE_POINTS}.")


def machine(device: torch.device) -> dict[str, Any]:
    info = {**device_info(device), **code_version(), "date": time.strftime("%Y-%m-%d")}
    if hasattr(os, "getloadavg"):
        info["load_average_before"] = os.getloadavg()[0]
    return info


def print_header(info: dict[str, Any], args, variants: list[str]) -> None:
    print("# Method cost: time per iteration and peak memory\n")
    print(f"machine: {info['name']} ({info.get('cores', '?')} cores), torch {info['torch']}, "
          f"{info['threads']} threads, device {info['type']}, gdwlib {info['gdwlib']} ({info['commit']})")
    print(f"variants: {', '.join(variants)}; {args.warmup} warm-up iterations each, then {args.rounds} interleaved "
          f"rounds of {args.iters} iterations; median over rounds")
    load = info.get("load_average_before")
    if load is not None:
        busy = " (above 1: other processes may share the cores; check the min-max column)" if load > 1 else ""
        print(f"load average (1 min) at start: {load:.2f}{busy}")


def profile_runners(runners: list[Runner], device: torch.device, rows: int = 15) -> None:
    """One iteration of each runner under torch.profiler: where its time goes, by operator."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    for r in runners:
        with profile(activities=activities) as prof:
            r.steps(1)
            synchronize(device)
        print(f"\n#### profile: {r.name}\n\n```\n{prof.key_averages().table(sort_by=sort, row_limit=rows)}\n```")


# --------------------------------------------------------------------------- main

def run_shape(name: str, variants: list[str], args, device: torch.device) -> dict[str, Any]:
    shape = SHAPES[name]
    print(f"[{name}] building and timing {', '.join(variants)}", file=sys.stderr, flush=True)
    runners, failures = [], {}
    for v in variants:
        try:
            runner = build_runner(v, shape, args, device)
            runner.steps(1)  # fail here, not in the middle of the rounds
            runners.append(runner)
        except Exception as e:  # a method this benchmark cannot set up: report it, time the others
            failures[v] = f"{type(e).__name__}: {e}"
            print(f"[{name}] skipping {v}: {failures[v]}", file=sys.stderr, flush=True)
    time_runners(runners, args, device)
    if args.profile:
        profile_runners(runners, device)
    memory = {}
    if not args.no_memory:
        for r in runners:
            print(f"[{name}] memory of {r.name}", file=sys.stderr, flush=True)
            memory[r.name] = (cuda_step_memory(functools.partial(r.steps, 1), device) if device.type == "cuda"
                              else measure_memory(args, r.name, name))
    return shape_summary(runners, memory, failures)


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=DEFAULT_SHAPES)
    p.add_argument("--methods", nargs="+", default=DEFAULT_VARIANTS,
                   help=f"registered methods ({', '.join(METHODS)}), extra variants "
                        f"({', '.join(EXTRA_VARIANTS)}) or 'all'")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--iters", type=int, default=3, help="iterations per variant and round (default 3)")
    p.add_argument("--warmup", type=int, default=2, help="warm-up iterations per variant (default 2)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--batch", type=int, default=100, help="training and meta batch size (default 100)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--epoch", type=int, default=None,
                   help="epoch passed to start_epoch (default: half of the method's epochs, past any warm-up phase)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    p.add_argument("--profile", action="store_true", help="also print a torch.profiler table per variant")
    p.add_argument("--json", type=Path, default=None, help="write the numbers to this file")
    p.add_argument("--_memory-child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if min(args.rounds, args.iters, args.threads, args.batch) < 1 or args.warmup < 0:
        p.error("--rounds, --iters, --threads and --batch must be at least 1, --warmup at least 0")
    return args


def resolve_device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type not in ("cpu", "cuda"):
        sys.exit(f"--device must be cpu or cuda, got {name!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("--device cuda asked for, but CUDA is not available here")
        # the trainer's settings (gdwlib.train.seed_everything), which decide the cuDNN kernels
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return device


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    # torch's first forward-mode call scripts its decompositions and warns about it
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*deprecated")
    if args._memory_child:
        memory_child(args, device)
        return
    try:
        variants = resolve_variants(args.methods)
    except ValueError as e:
        sys.exit(str(e))
    info = machine(device)
    print_header(info, args, variants)
    summaries = {}
    for name in args.shapes:
        summaries[name] = run_shape(name, variants, args, device)
        print_shape(name, SHAPES[name], args, summaries[name])
    print_targets(summaries)
    mem_method = CUDA_MEMORY_METHOD if device.type == "cuda" else CPU_MEMORY_METHOD
    if not args.no_memory:
        print(f"\nmemory: {mem_method}.")
    if hasattr(os, "getloadavg"):
        info["load_average_after"] = os.getloadavg()[0]
        print(f"load average (1 min) before / after: {info.get('load_average_before', 0):.2f} / "
              f"{info['load_average_after']:.2f}")
    if args.json:
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if not k.startswith("_")}
        out = {"machine": info, "settings": settings, "memory_method": None if args.no_memory else mem_method,
               "reference_points": REFERENCE_POINTS, "shapes": summaries}
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
