"""Command line: ``python -m gdwlib run ...`` (or ``gdw run ...``) trains one run."""
from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
from collections import Counter

from .config import DATASETS, NOISE_TYPES, RunConfig
from .data.idx import CorruptFileError
from .experiments import RequirementError
from .methods import METHODS, NonFiniteLossError, check_options, get_method
from .backends import BACKENDS, SlurmError
from .experiments import MissingRunsError
from .profiles import GPU_PROFILES, OVERRIDES, PROFILES, profile_config
from .results import ResultsWriteError, UnreadableFileError, check_writable

# what bad input, missing or damaged files, full disks and missing hardware raise: reported in one line
USER_ERRORS = (ValueError, FileNotFoundError, CorruptFileError, UnreadableFileError, ResultsWriteError,
               RequirementError, SlurmError, MissingRunsError)


_STRING_FIELDS = {f.name for f in dataclasses.fields(RunConfig) if "str" in str(f.type)}


def _value(key: str, text: str):
    """A ``--set`` value: JSON (numbers, true/false, null), except that a string field takes the
    text as it is (``data_dir=2024`` names a directory)."""
    if key in _STRING_FIELDS:
        return None if text == "null" else text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _settings(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = _value(key.strip(), value)
    return out


def config_from_args(args: argparse.Namespace):
    fields = {"method": args.method, "noise": args.noise, "ratio": args.ratio, "seed": args.seed}
    for name in ("imbalance", "epochs", "device", "data_dir", "results_dir", "threads"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    settings = _settings(args.set)
    options = {k[len("option."):]: v for k, v in settings.items() if k.startswith("option.")}
    fields.update({k: v for k, v in settings.items() if not k.startswith("option.")})
    if options:
        fields["options"] = options
    config = profile_config(args.profile, args.dataset, **fields)
    check_options(get_method(config.method), config)
    return config


_FLAGS = {"epochs": "--epochs", "device": "--device", "data_dir": "--data-dir", "results_dir": "--results-dir",
          "threads": "--threads"}


def command_for(config: RunConfig, profile: str) -> str:
    """The ``python -m gdwlib run`` command that trains ``config`` (the inverse of
    :func:`config_from_args`): the profile's setting, and ``--set`` for every field that differs from it."""
    named = dict(method=config.method, noise=config.noise, ratio=config.ratio, seed=config.seed)
    words = ["python -m gdwlib run", f"--profile {profile}", f"--dataset {config.dataset}", f"--method {config.method}",
             f"--noise {config.noise}", f"--ratio {config.ratio:g}", f"--seed {config.seed}"]
    if config.imbalance != 1.0:
        named["imbalance"] = config.imbalance
        words.append(f"--imbalance {config.imbalance:g}")
    base = profile_config(profile, config.dataset, **named)
    for field in dataclasses.fields(RunConfig):
        name, value = field.name, getattr(config, field.name)
        if name in named or name == "dataset" or value == getattr(base, name):
            continue
        if name in _FLAGS:
            words.append(f"{_FLAGS[name]} {value}")
        elif name == "options":
            words += [f"--set option.{k}={json.dumps(v)}" for k, v in value]
        else:
            words.append(f"--set {name}={value if name in _STRING_FIELDS and value is not None else json.dumps(value)}")
    return " ".join(words)

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gdwlib", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in (("run", "train one run (resumes a killed run; returns a finished one)"),
                        ("config", "print the resolved config of a run without training"),
                        ("label-errors", "compare GDW, MW-Net, small-loss and cleanlab at finding the injected "
                                         "label errors of one setting (trains what is missing)")):
        r = sub.add_parser(name, help=help_)
        r.add_argument("--method", default="GDW", help=f"one of: {', '.join(METHODS)}")
        r.add_argument("--dataset", default="fashion-mnist", choices=sorted(DATASETS))
        r.add_argument("--noise", default="uniform", choices=NOISE_TYPES)
        r.add_argument("--ratio", type=float, default=0.4, help="noise ratio in [0, 1]")
        r.add_argument("--imbalance", type=float, help="long-tail factor mu in (0, 1]")
        r.add_argument("--seed", type=int, default=1)
        r.add_argument("--profile", choices=sorted(PROFILES),
                       help="settings preset (default: cpu for fashion-mnist, paper otherwise)")
        r.add_argument("--epochs", type=int)
        r.add_argument("--device", help="auto (default), cpu or cuda")
        r.add_argument("--data-dir", help="where the data set is (also GDW_DATA)")
        r.add_argument("--results-dir", help="where results go (default: results)")
        r.add_argument("--threads", type=int, help="torch CPU threads")
        r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="any config field (e.g. lr=0.05, constraint=false), or option.NAME=VALUE "
                            "for a method's named option")
        r.add_argument("--quiet", action="store_true", help="no progress bar")
    sw = sub.add_parser("sweep", help="train every run the book's experiments need (skips finished runs)",
                        description="Train, submit, count or check the runs of a profile's grid (Tables 2-5, "
                                    "the ablation, Figures 3-6). Finished and diverged runs are never started "
                                    "again, queued and running ones never twice.")
    sw.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    sw.add_argument("--override", choices=sorted(OVERRIDES), help="a named change of the profile (rehearsal: "
                    "every run cut to a few iterations, to check the whole path; its numbers mean nothing)")
    sw.add_argument("--tables", help="only these rows of the grid, e.g. table2,ablation (default: all)")
    sw.add_argument("--methods", help="only these methods, e.g. GDW,MWNet (and the runs they start from)")
    sw.add_argument("--epochs", type=int)
    sw.add_argument("--threads", type=int, help="torch threads per run (default: the cores divided among the "
                    "workers; on Slurm, --cpus)")
    sw.add_argument("--device", default="auto")
    sw.add_argument("--data-dir")
    sw.add_argument("--pretrained", help="Table 5: the ImageNet ResNet-18 weights file (e.g. resnet18-f37072fd.pth)")
    sw.add_argument("--results-dir", default="results")
    mode = sw.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="count the runs by table and estimate their time")
    mode.add_argument("--status", action="store_true",
                      help="pending / queued / running / done / diverged / failed / interrupted, by table, with failed "
                           "jobs' logs")
    mode.add_argument("--check", action="store_true",
                      help="exit 1 and list the missing runs if any run has no result (what make book runs)")
    sw.add_argument("--cost", metavar="BENCHMARK.json",
                    help="--dry-run: iteration costs from this benchmarks/bench_methods.py result instead of "
                         "measuring them on this device")
    sw.add_argument("--backend", default="local", choices=BACKENDS, help="local (this machine, default) or slurm")
    local = sw.add_argument_group("local backend")
    local.add_argument("--workers", type=int, default=2, help="runs trained side by side on the CPU (default 2)")
    local.add_argument("--devices", help="spread the runs over these GPUs, e.g. cuda:0,cuda:1")
    local.add_argument("--runs-per-device", type=int, default=None,
                       help="runs sharing each GPU of --devices (default: the best of the latest GPU check, "
                            "benchmarks/measured/gpu-check.json; 1 where none was measured)")
    slurm = sw.add_argument_group("slurm backend (one array task per run)")
    slurm.add_argument("--partition")
    slurm.add_argument("--time", default="12:00:00", help="time limit per run (default 12:00:00); a run that "
                       "reaches it is requeued and resumes from its last epoch")
    slurm.add_argument("--gpus", type=int, help="GPUs per run (default 1 for the paper profile, 0 for cpu and smoke; "
                       "0 for CPU nodes)")
    slurm.add_argument("--cpus", type=int, default=4, help="CPU cores per run (default 4)")
    slurm.add_argument("--mem", help="memory per run, e.g. 32G (default: the partition's)")
    slurm.add_argument("--max-parallel", type=int, help="tasks of the array running at once")
    slurm.add_argument("--sbatch", action="append", default=[], metavar="NAME=VALUE",
                       help="an extra sbatch option without its dashes, e.g. account=proj (repeatable)")
    slurm.add_argument("--setup", action="append", default=[], metavar="LINE",
                       help="a shell line run before each task, e.g. 'module load cuda' (repeatable)")
    slurm.add_argument("--logs", help="job logs folder (default <results-dir>/slurm/logs); the results, the logs and "
                       "the virtual environment must be on a file system the compute nodes share")
    sub.add_parser("methods", help="list the methods")
    f = sub.add_parser("fit", help="train a classifier on your own images with GDW; rank its suspected label errors",
                       description="Train on your own data (image folders in torchvision's ImageFolder layout, one "
                                   "folder per class, or .npz files with arrays x and y) with GDW, MW-Net, L2RW or "
                                   "BaseModel. Writes the model, the learned weights per instance, label_issues.csv "
                                   "(every training image, most suspect first) and result.json into --out. A killed "
                                   "fit resumes when the same command runs again.")
    f.add_argument("--train", required=True, help="training images: a folder of class folders, or an .npz file")
    f.add_argument("--meta", help="the clean meta set, same layout and classes (or --meta-per-class)")
    f.add_argument("--meta-per-class", type=int, help="draw this many training images per class as the meta set "
                   "instead (their labels must then be right: check them)")
    f.add_argument("--test", help="test images, same layout (default: accuracy is measured on the meta set)")
    f.add_argument("--out", required=True, help="output folder")
    f.add_argument("--method", default="GDW", help="GDW (default), MWNet, L2RW or BaseModel")
    f.add_argument("--model", default="small_cnn", help="small_cnn (default), resnet32, mlp_bn, ... or any torchvision "
                   "classification model by name (e.g. resnet50)")
    f.add_argument("--weights", help="pretrained weights of --model, a local state_dict file")
    f.add_argument("--epochs", type=int, default=10)
    f.add_argument("--batch-size", type=int, default=100)
    f.add_argument("--meta-batch-size", type=int, default=100)
    f.add_argument("--lr", type=float, default=0.1, help="SGD learning rate (default 0.1, cosine decay)")
    f.add_argument("--resize", type=int, help="scale every image to N x N (needed when sizes differ)")
    f.add_argument("--skip-bad", action="store_true", help="leave out unreadable images, and list them, instead of "
                   "stopping at the first")
    f.add_argument("--seed", type=int, default=1)
    f.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    f.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a method setting, e.g. outer_lr=50 (GDW) or vnet_lr=1e-3")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


# what Ctrl-C says where it stopped no training (one that stops training says how far it got)
INTERRUPTED = "interrupted; what was finished is kept. Run the same command again to resume."


def main(argv: list[str] | None = None) -> int:
    try:
        # held back while the command line loaded (see __main__); from here on it is reported in one line
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        return _command(parser().parse_args(argv))
    except KeyboardInterrupt as e:
        print(f"\n{str(e) or INTERRUPTED}", file=sys.stderr)
        return 130


def _command(args: argparse.Namespace) -> int:
    if args.command == "methods":
        for name, cls in METHODS.items():
            print(f"{name:12s} {(cls.__doc__ or '').strip().splitlines()[0]}")
        return 0
    if args.command == "sweep":
        return _sweep(args)
    return _in_one_line({"fit": _fit, "label-errors": _label_errors}.get(args.command, _run), args)


def _in_one_line(command, args: argparse.Namespace) -> int:
    """``command(args)``, with a diverged training (exit 3) or bad input (exit 2) said in one line."""
    try:
        return command(args)
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.command == "config":
        print(json.dumps(config.to_dict(), indent=1))
        return 0
    from .train import run

    result = run(config, progress=not args.quiet)
    print(f"{result['run_id']}: final accuracy {result['final_accuracy']:.2f}% "
          f"(mean of the last {result['final_epochs']} epochs), {result['wall_time']:.0f} s on {result['device']['type']}")
    return 0


def _label_errors(args: argparse.Namespace) -> int:
    from .label_errors import compare

    config = config_from_args(args)
    out = compare(config, progress=not args.quiet)
    print(f"{out['noisy']} of {out['instances']} training labels are wrong ({config.noise} {config.ratio:g}"
          + (f", long tail {config.imbalance:g}" if config.imbalance < 1 else "") + f", {config.model}, seed "
          f"{config.seed}); accuracy BaseModel {out['accuracy']['BaseModel']:.2f}, MW-Net {out['accuracy']['MWNet']:.2f}, "
          f"GDW {out['accuracy']['GDW']:.2f}\n")
    print("| detector | AUROC | AUPRC | precision at k | flagged | BaseModel retrained without them | runs | "
          "training s |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, d in out["detectors"].items():
        print(f"| {name} | {d['auroc']:.3f} | {d['auprc']:.3f} | {d['precision_at_k']:.3f} | {d['flagged']} | "
              f"{d['retrained_accuracy']:.2f} | {d['runs']} | {d['training_seconds']:.0f} |")
    return 0


def _fit(args: argparse.Namespace) -> int:
    """``gdw fit``: everything is checked before ``--out`` is made (see :mod:`gdwlib.data.user`)."""
    import warnings

    import torch

    from .data.user import check_meta, load_user_data
    from .fitting import fit
    from .models import MODELS, user_model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train = load_user_data(args.train, args.resize, args.skip_bad)
        meta = load_user_data(args.meta, args.resize, args.skip_bad) if args.meta else None
        test = load_user_data(args.test, args.resize, args.skip_bad) if args.test else None
        if meta is not None:
            check_meta(train, meta)
        if test is not None and test.classes != train.classes:
            raise ValueError(f"the test set's classes {test.classes} differ from the training set's {train.classes}")
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    for part in (train, meta, test):
        for path in part.skipped if part else []:
            print(f"skipped (cannot be read): {path}", file=sys.stderr)
    c, h, w = train.shape
    if h != w and args.model in MODELS:
        raise ValueError(f"--model {args.model} needs square images, these are {h}x{w}: pass --resize N")
    torch.manual_seed(args.seed)   # the model's initial weights
    model = user_model(args.model, len(train.classes), c, h, args.weights)
    result = fit(model, train.dataset, meta.dataset if meta else None, out=args.out,
                 test=test.dataset if test else None, method=args.method, meta_per_class=args.meta_per_class,
                 epochs=args.epochs, batch_size=args.batch_size, meta_batch_size=args.meta_batch_size, lr=args.lr,
                 seed=args.seed, num_classes=len(train.classes), device=args.device, progress=not args.quiet,
                 paths=train.paths, class_names=train.classes, **_settings(args.set))
    print(f"{args.out}: {args.method} on {result['sizes']['train_size']} training images, accuracy "
          f"{result['final_accuracy']:.2f}% on the {result['evaluated_on'].split()[0]} set after the last epoch, "
          f"{result['wall_time']:.0f} s; suspected label errors, most suspect first: {args.out}/label_issues.csv")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from . import sweep
    from .experiments import check_requirements, grid, sweep_command

    device = args.device
    gpus = args.gpus if args.gpus is not None else int(args.profile in GPU_PROFILES)
    if args.backend == "slurm" and device == "auto":   # the jobs' device, not the login node's
        device = "cuda" if gpus else "cpu"
    fields = dict(epochs=args.epochs, device=device, data_dir=args.data_dir, results_dir=args.results_dir)
    if args.override:
        fields["override"] = args.override
    try:
        groups = _selected(grid(args.profile, pretrained=args.pretrained, **fields), args.tables, args.methods)
        configs = list(dict.fromkeys(c for group in groups.values() for c in group))
        if args.dry_run or args.status or args.check:
            return _report(args, groups, configs)
        if args.backend == "slurm":
            from .backends.slurm import SlurmBackend

            backend = SlurmBackend(args.results_dir, logs=args.logs, partition=args.partition, time_limit=args.time,
                                   gpus=gpus, cpus=args.cpus, mem=args.mem, sbatch=args.sbatch,
                                   setup=args.setup, max_parallel=args.max_parallel, threads=args.threads)
            jobs = sweep.submit(configs, backend, args.results_dir)
            follow = sweep_command(args.profile, args.override, args.data_dir, args.results_dir, device=device,
                                   tables=args.tables, methods=args.methods)
            print(f"submitted {len(jobs)} run(s) to Slurm" + (f" (jobs {jobs[0]} to {jobs[-1]})" if jobs else
                                                              ": every run is done, diverged, queued or running")
                  + f"; follow them with: {follow} --status")
            return 0
        devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else None
        runs_per_device = args.runs_per_device
        if devices:
            from .backends.local import check_devices
            from .cost import measured_runs_per_gpu

            check_devices(devices)
            if runs_per_device is None:
                runs_per_device, why = measured_runs_per_gpu()
                print(f"{runs_per_device} run(s) per GPU: {why} (--runs-per-device to choose)", file=sys.stderr)
        check_requirements(args.profile, sorted({c.dataset for c in configs}),
                           "cuda" if devices and "cpu" not in devices else args.device, args.data_dir, args.override)
        check_writable(args.results_dir)
        results = sweep.run_all(configs, workers=args.workers, threads=args.threads, devices=devices,
                                runs_per_device=runs_per_device or 1)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    diverged = sum(r is None for r in results)
    print(f"{len(configs)} runs of the '{args.profile}' profile are finished"
          + (f" ({diverged} diverged: see failure.json in their run directories)" if diverged else ""))
    return 0


def _selected(groups: dict, tables: str | None, methods: str | None) -> dict:
    """The rows of the grid named by --tables, each with only the runs of --methods."""
    from .methods import METHODS

    if tables:
        names = [t.strip() for t in tables.split(",") if t.strip()]
        unknown = [t for t in names if t not in groups]
        if unknown:
            raise ValueError(f"--tables: no row {', '.join(unknown)} in this grid; it has {', '.join(groups)}")
        groups = {t: groups[t] for t in names}
    if methods:
        names = [m.strip() for m in methods.split(",") if m.strip()]
        unknown = [m for m in names if m not in METHODS]
        if unknown:
            raise ValueError(f"--methods: unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
        groups = {t: [c for c in configs if c.method in names] for t, configs in groups.items()}
    return groups


def _report(args: argparse.Namespace, groups: dict, configs: list) -> int:
    """--dry-run, --status and --check: read the results directory (and Slurm's queue), train nothing."""
    from . import sweep
    from .experiments import describe_runs, missing_message

    states = sweep.status(configs, args.results_dir)
    unsettled = [c for c in configs if states[c][0] not in ("done", "diverged")]
    if args.check:
        if unsettled:
            print("error: " + missing_message(unsettled, args.profile, args.override, args.data_dir, args.results_dir),
                  file=sys.stderr)
            return 1
        print(f"all {len(configs)} runs of the '{args.profile}' profile have a result")
        return 0
    estimate = _estimator(args, [c for c in configs if states[c][0] == "done"]) if args.dry_run else None

    def row(name: str, runs: list, new: list) -> dict:
        counts = Counter(states[c][0] for c in runs)
        out = {"table": name, "runs": len(runs), "new": len(new), **{s: counts[s] for s in sweep.STATES}}
        if estimate:
            hours, unknown = estimate([c for c in new if states[c][0] not in ("done", "diverged")])
            out[estimate.column] = f"{hours:.1f}" + (f" (+{unknown} without a cost)" if unknown else "")
        return out

    seen, rows = set(), []
    for group, group_configs in groups.items():
        unique = list(dict.fromkeys(group_configs))
        rows.append(row(group, unique, [c for c in unique if c not in seen]))
        seen.update(unique)
    rows.append(row("all (each run once)", configs, configs))
    _print_table(rows)
    if estimate:
        print(f"\niteration costs: {estimate.origin}; hours are one run after another on one such device, training "
              "iterations only. 'new' counts the runs not already in a row above; hours are for the new runs that "
              "are not done or diverged.")
    failed = [(c, log) for c, (s, log) in states.items() if s == "failed"]
    if failed:
        print("\nfailed (the last Slurm task of the run ended without a result; the next sweep submits it again):")
        for c, log in failed:
            print(f"  {describe_runs([c])[0]}  log: {log}")
    return 0


def _print_table(rows: list[dict]) -> None:
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(str(r.get(k, ""))) for r in rows)) for k in keys}
    print("  ".join(k.ljust(widths[k]) for k in keys))
    for r in rows:
        print("  ".join(str(r.get(k, "")).ljust(widths[k]) for k in keys))


def _estimator(args: argparse.Namespace, done: list):
    """A function from runs to (hours, runs without a cost), with ``origin`` saying where costs
    come from; ``done`` are the finished runs, whose wall times price the networks not benchmarked."""
    from .cost import benchmark_costs, estimate_hours, run_costs
    from .train import find_result, resolve_device

    ms, origin, measured_on = benchmark_costs(args.results_dir, resolve_device(args.device).type, args.cost)
    per_run = run_costs([find_result(c) for c in done])

    def estimate(todo):
        return estimate_hours(todo, ms, per_run)

    estimate.column = f"{'GPU' if measured_on == 'cuda' else measured_on.upper()}-hours to train"
    estimate.origin = origin + ("; other networks: from the finished runs' wall times" if per_run else "")
    return estimate
