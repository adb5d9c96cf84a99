"""What a grid of runs will cost: training iterations per run, times a cost per iteration.

The cost per iteration of each method on ResNet-32 comes from ``benchmarks/bench_methods.py``
(every method, CIFAR-shaped batches): a stored result given by the user, else one cached in the
results directory for this device, else measured now on this device (about a minute on a CPU)
and cached. For the other networks it comes from finished runs of the same method and network,
where there are any. Evaluation after each epoch is not counted (one forward pass over the test
set, small beside an epoch of training).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

from .config import RunConfig
from .methods import get_method

SPLIT_SIZES = {"cifar10": 50_000, "cifar100": 50_000, "fashion-mnist": 60_000, "clothing1m": 1_000_000}
BENCHMARKED_MODEL = "resnet32"


def planned_train_size(c: RunConfig) -> int:
    """The training images of ``c``, as :func:`gdwlib.data.build.build_data` will draw them."""
    from .data.longtail import longtail_counts

    n = SPLIT_SIZES[c.dataset] - (0 if c.meta_overlap or c.dataset == "clothing1m" else c.num_classes * c.meta_per_class)
    if c.train_size is not None:
        n = min(n, c.train_size // c.num_classes * c.num_classes)
    if c.imbalance < 1:
        n = sum(longtail_counts(n / c.num_classes, c.num_classes, c.imbalance))
    return n


def planned_iterations(c: RunConfig) -> int:
    """Training iterations of the run of ``c`` (Fine-tuning: its passes over the meta set, the
    BaseModel run it starts from being a run of its own)."""
    method = get_method(c.method)
    options = {**method.options, **dict(c.options)}
    if c.method == "Fine-tuning":
        epochs, per_epoch = options["epochs"], math.ceil(c.num_classes * c.meta_per_class / c.batch_size)
    else:
        epochs, per_epoch = c.epochs, math.ceil(planned_train_size(c) / c.batch_size)
    return epochs * min(per_epoch, c.iterations_per_epoch or per_epoch)


def _device_label(machine: dict) -> str:
    return f"{machine.get('type', '?')} ({machine.get('name', '?')}, torch {machine.get('torch', '?')})"


def cached_benchmark(path: str | Path, methods: list[str], rounds: int, iters: int, device: str = "cpu") -> \
        tuple[dict, float | None]:
    """The ``benchmarks/bench_methods.py`` result (CIFAR shapes) stored at ``path``, measured and
    stored there first where there is none; with the seconds the measurement took (None if read)."""
    path = Path(path)
    if path.exists():
        return json.loads(path.read_text()), None
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_methods.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    subprocess.run([sys.executable, str(script), "--shapes", "cifar", "--methods", *methods, "--rounds", str(rounds),
                    "--iters", str(iters), "--warmup", "1", "--no-memory", "--device", device, "--json", str(path)],
                   check=True, capture_output=True)
    return json.loads(path.read_text()), time.perf_counter() - began


def benchmark_costs(results_dir: str, device: str, source: str | None = None) -> tuple[dict[str, float], str, str]:
    """Milliseconds per iteration of every method on ResNet-32, where they come from, and the
    device type they were measured on."""
    path = Path(source) if source else Path(results_dir) / f"benchmark-all-{device}.json"
    try:
        if source:
            data, origin = json.loads(path.read_text()), "read from the stored benchmark result"
        else:
            if not path.exists():
                print(f"measuring every method's iteration on {device} (benchmarks/bench_methods.py, once; cached in "
                      f"{path}) ...", file=sys.stderr)
            data, seconds = cached_benchmark(path, ["all"], rounds=1, iters=2, device=device)
            origin = (f"measured now ({seconds:.0f} s)" if seconds is not None
                      else "read from the benchmark cached in the results directory")
        variants = data["shapes"]["cifar"]["variants"]
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{path} is not a result of benchmarks/bench_methods.py with the cifar shape ({e}); "
                         "write one with: python benchmarks/bench_methods.py --shapes cifar --methods all "
                         f"--json {path}") from None
    ms = {name: v["ms_median"] for name, v in variants.items()}
    when = data["machine"].get("date", "")
    return (ms, f"{origin} {path}: {_device_label(data['machine'])}{', ' + when if when else ''}",
            data["machine"].get("type", "?"))


GPU_CHECK = Path(__file__).resolve().parent.parent / "benchmarks" / "measured" / "gpu-check.json"


def measured_runs_per_gpu(path: str | Path = GPU_CHECK) -> tuple[int, str]:
    """How many runs should share one GPU, by the latest ``benchmarks/gpu_check.py`` (the count
    with the highest summed throughput), and why."""
    try:
        result = json.loads(Path(path).read_text())
        best, m = result["projection"]["best_runs_per_gpu"], result["machine"]
        return int(best), f"the highest throughput in the GPU check of {m['name']}, {m['date']} ({path})"
    except FileNotFoundError:
        return 1, "no GPU check measured yet (make gpu-check)"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return 1, f"{path} cannot be read ({type(e).__name__}: {e})"


def run_costs(results: list[dict]) -> dict[tuple[str, str], float]:
    """Seconds per training iteration of each (method, network) over finished runs."""
    sums: dict[tuple[str, str], list[float]] = {}
    for r in results:
        c = RunConfig.from_dict(r["config"])
        sums.setdefault((c.method, c.model), []).append(r["wall_time"] / max(planned_iterations(c), 1))
    return {k: sum(v) / len(v) for k, v in sums.items()}


def estimate_hours(configs: list[RunConfig], ms: dict[str, float], per_run: dict[tuple[str, str], float]) -> \
        tuple[float, int]:
    """Hours to train ``configs`` one after another, and how many of them have no cost to go by."""
    hours, unknown = 0.0, 0
    for c in configs:
        if c.model == BENCHMARKED_MODEL and c.method in ms:
            seconds = ms[c.method] / 1000
        elif (c.method, c.model) in per_run:
            seconds = per_run[(c.method, c.model)]
        else:
            unknown += 1
            continue
        hours += planned_iterations(c) * seconds / 3600
    return hours, unknown
