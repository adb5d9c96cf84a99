"""The public API's cost, measured side by side in one run:

1. **Time.** A GDW iteration through ``gdwlib.GDW.step`` (a user's loop) against the trainer's
   (``method.train_step`` of the registered GDW, weight statistics included), on the same
   network, state and batches, interleaved round-robin; goal: at most 1.05x.
2. **Memory.** What :class:`gdwlib.InstanceWeights` holds for a million instances of ten classes
   after 1 and after 3 epochs of records (it must not grow), against what keeping every
   iteration's weights would take, and the rise of the process's resident-set high-water mark
   while it records an epoch.

    .venv/bin/python benchmarks/bench_api.py                 # CPU, Fashion-MNIST shape, about 2 minutes
    .venv/bin/python benchmarks/bench_api.py --device cuda --shape cifar --json out.json
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_methods as bench  # noqa: E402

import gdwlib  # noqa: E402
from gdwlib.reweighting import StepWeights  # noqa: E402

GOAL = 1.05


def api_runner(trainer: bench.Runner) -> bench.Runner:
    """The same network, optimiser state and weighting network as ``trainer``'s method, driven
    through the public API on the same cycle of batches."""
    method = trainer.method
    model = copy.deepcopy(method.model)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    optimizer.load_state_dict(method.optimizer.state_dict())
    gdw = gdwlib.GDW(model, optimizer, outer_lr=method.config.outer_lr, clip=method.config.clip,
                     meta_method=method.config.meta_method)
    gdw.load_state_dict(copy.deepcopy(method.reweighter.state_dict()))

    class Step:   # the shape bench_methods' Runner expects of a method
        def train_step(self, batch, meta):
            m = next(meta)
            return gdw.step(batch.x, batch.y, m.x, m.y)

    runner = copy.copy(trainer)
    runner.name, runner.method, runner.times = "API", Step(), []
    return runner


def time_both(args) -> dict:
    device = bench.resolve_device(args.device)
    trainer = bench.build_runner("GDW", bench.SHAPES[args.shape], bench_args(args), device)
    trainer.name = "trainer"
    api = api_runner(trainer)
    bench.time_runners([trainer, api], argparse.Namespace(warmup=args.warmup, rounds=args.rounds, iters=args.iters),
                       device)
    ms = {r.name: 1e3 * statistics.median(r.times) for r in (trainer, api)}
    return {"ms_median": ms, "ratio_api_to_trainer": ms["API"] / ms["trainer"], "goal": GOAL,
            "met": ms["API"] / ms["trainer"] <= GOAL, "ms_rounds": {r.name: [1e3 * t for t in r.times]
                                                                   for r in (trainer, api)}}


def bench_args(args) -> argparse.Namespace:
    return argparse.Namespace(batch=args.batch, seed=1, epoch=None)


def memory(instances: int, classes: int, batch: int, epochs: int) -> dict:
    recorder = gdwlib.InstanceWeights(instances, classes)
    labels = torch.randint(0, classes, (instances,))
    after, hwm_rise = [], []
    for epoch in range(epochs):
        before = bench.proc_status_mb("VmHWM") if bench.reset_rss_peak() else None
        recorder.start_epoch(epoch)
        for index in torch.randperm(instances).split(batch):
            n = len(index)
            rows = torch.rand(n, classes)
            recorder.record(index, labels[index], StepWeights(torch.rand(n), torch.rand(n), rows, rows))
        recorder.end_epoch()
        after.append(recorder.nbytes())
        peak = bench.proc_status_mb("VmHWM")
        hwm_rise.append(None if before is None or peak is None else peak - before)
    per_iteration = (instances // batch) * batch * (classes + 3) * 4   # one epoch of (rows, target, w, loss)
    return {"instances": instances, "classes": classes, "held_mb_after_each_epoch": [b / 2**20 for b in after],
            "formula_mb": 8 * instances * (classes + 5) / 2**20,
            "per_iteration_storage_mb_per_epoch": per_iteration / 2**20, "rss_high_water_rise_mb": hwm_rise}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--shape", default="fmnist", choices=list(bench.SHAPES))
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--instances", type=int, default=1_000_000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    began = time.perf_counter()
    result = {"machine": bench.machine(bench.resolve_device(args.device)), "settings": vars(args) | {"json": None},
              "time": time_both(args), "memory": memory(args.instances, 10, 1000, args.epochs)}
    t, m = result["time"], result["memory"]
    print(f"# The public API's cost ({result['machine']['name']}, torch {result['machine']['torch']})\n")
    print(f"GDW iteration, ResNet-32, {args.shape} shape, batch {args.batch}: trainer {t['ms_median']['trainer']:.0f} ms, "
          f"API {t['ms_median']['API']:.0f} ms (median of {args.rounds} interleaved rounds): "
          f"{t['ratio_api_to_trainer']:.3f}x, goal at most {GOAL} ({'met' if t['met'] else 'NOT met'})\n")
    print(f"InstanceWeights, {m['instances']:,} instances x {m['classes']} classes: "
          + ", ".join(f"{mb:.0f} MB" for mb in m["held_mb_after_each_epoch"])
          + f" held after epochs 1-{args.epochs} (formula 8 N (C + 5) bytes: {m['formula_mb']:.0f} MB); "
          f"keeping every iteration's weights instead: {m['per_iteration_storage_mb_per_epoch']:.0f} MB more per "
          f"epoch. Resident-set high-water rise while recording an epoch: "
          + ", ".join("n/a" if r is None else f"{r:.0f} MB" for r in m["rss_high_water_rise_mb"]))
    print(f"\ntook {time.perf_counter() - began:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
