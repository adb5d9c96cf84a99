"""How best to use two CPU cores for many small runs: measured side by side on the ``cpu``
profile's network (MLP with BatchNorm, batch 100, Fashion-MNIST), BaseModel steps.

- ``sequential``: one process with 2 torch threads trains the seeds one after the other;
- ``processes``: 2 worker processes with 1 thread each share the seeds (what ``gdwlib sweep`` does);
- ``vmap``: one process stacks the seeds' networks and trains them at once with
  ``torch.func.vmap`` over ``torch.func.grad`` (2 threads).

Each variant does the same number of SGD steps (momentum, weight decay) per seed on the same
batches; the table gives seed-steps per second and the ratio to ``sequential``.

    python benchmarks/bench_parallel.py [--seeds 3] [--steps 300] [--repeats 3]
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, stack_module_state, vmap

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gdwlib.data.build import build_data  # noqa: E402
from gdwlib.models import build_model  # noqa: E402
from gdwlib.profiles import profile_config  # noqa: E402

CONFIG = profile_config("cpu", "fashion-mnist", method="BaseModel")


def batches(steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    data = build_data(CONFIG)
    out = []
    while len(out) < steps:
        out += [(b.x, b.y) for b in data.train_batches(len(out))]
    return out[:steps]


def network(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(CONFIG.model, 10, 1, 28).train()


def train_one(seed: int, data: list) -> None:
    model = network(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for x, y in data:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()


def sequential(seeds: int, data: list) -> None:
    torch.set_num_threads(2)
    for s in range(seeds):
        train_one(s, data)


_DATA: list = []


def _load(steps: int) -> None:
    torch.set_num_threads(1)
    _DATA.extend(batches(steps))


def _worker(seeds: list[int]) -> None:
    for s in seeds:
        train_one(s, _DATA)


def processes(seeds: int, pool) -> None:
    pool.map(_worker, [list(range(seeds))[i::2] for i in range(2)])


def stacked(seeds: int, data: list) -> None:
    """All seeds at once: stacked parameters and buffers, per-seed gradients by vmap(grad)."""
    torch.set_num_threads(2)
    models = [network(s) for s in range(seeds)]
    params, buffers = stack_module_state(models)
    template = models[0].to("meta")

    def loss(p, b, x, y):
        return F.cross_entropy(functional_call(template, (p, b), (x,)), y)

    step = vmap(grad(loss), in_dims=(0, 0, None, None))
    momentum = {k: torch.zeros_like(v) for k, v in params.items()}
    for x, y in data:
        grads = step(params, buffers, x, y)
        with torch.no_grad():
            for k, g in grads.items():
                d = g + 5e-4 * params[k]
                momentum[k].mul_(0.9).add_(d)
                params[k] -= 0.1 * momentum[k]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    data = batches(args.steps)
    times: dict[str, list[float]] = {"sequential": [], "processes": [], "vmap": []}
    with multiprocessing.get_context("spawn").Pool(2, initializer=_load, initargs=(args.steps,)) as pool:
        pool.map(_worker, [[], []])  # the workers start and load the data before timing
        for _ in range(args.repeats):  # interleaved, so that a load change hits all variants alike
            for name, fn in (("sequential", lambda: sequential(args.seeds, data)),
                             ("processes", lambda: processes(args.seeds, pool)),
                             ("vmap", lambda: stacked(args.seeds, data))):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["sequential"])
    print(f"{args.seeds} seeds x {args.steps} BaseModel steps, {CONFIG.model}, batch {CONFIG.batch_size}, "
          f"median of {args.repeats} interleaved repeats\n")
    print("| variant | seconds | seed-steps / s | x sequential |\n|---|---:|---:|---:|")
    for name, t in times.items():
        m = statistics.median(t)
        print(f"| {name} | {m:.2f} | {args.seeds * args.steps / m:.0f} | {base / m:.2f} |")


if __name__ == "__main__":
    main()
