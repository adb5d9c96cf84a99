"""Command line: ``python -m gdwlib run ...`` (or ``gdw run ...``) trains one run."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from .config import DATASETS, NOISE_TYPES, RunConfig
from .data.idx import CorruptFileError
from .experiments import RequirementError
from .methods import METHODS, NonFiniteLossError, check_options, get_method
from .profiles import PROFILES, profile_config
from .results import ResultsWriteError, UnreadableFileError

# what bad input, missing or damaged files, full disks and missing hardware raise: reported in one line
USER_ERRORS = (ValueError, FileNotFoundError, CorruptFileError, UnreadableFileError, ResultsWriteError,
               RequirementError)


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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gdwlib", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in (("run", "train one run (resumes a killed run; returns a finished one)"),
                        ("config", "print the resolved config of a run without training")):
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
    sw = sub.add_parser("sweep", help="train every run the book's experiments need (skips finished runs)")
    sw.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    sw.add_argument("--workers", type=int, default=2, help="runs trained side by side (default 2)")
    sw.add_argument("--epochs", type=int)
    sw.add_argument("--device", default="auto")
    sw.add_argument("--data-dir")
    sw.add_argument("--results-dir", default="results")
    sub.add_parser("methods", help="list the methods")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "methods":
        for name, cls in METHODS.items():
            print(f"{name:12s} {(cls.__doc__ or '').strip().splitlines()[0]}")
        return 0
    if args.command == "sweep":
        return _sweep(args)
    try:
        config = config_from_args(args)
        if args.command == "config":
            print(json.dumps(config.to_dict(), indent=1))
            return 0
        from .train import run

        result = run(config, progress=not args.quiet)
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"\n{e}" if str(e) else "\ninterrupted", file=sys.stderr)
        return 130
    print(f"{result['run_id']}: final accuracy {result['final_accuracy']:.2f}% "
          f"(mean of the last {result['final_epochs']} epochs), {result['wall_time']:.0f} s on {result['device']['type']}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from .experiments import all_configs, check_requirements
    from .results import check_writable
    from .sweep import run_all

    try:
        configs = all_configs(args.profile, epochs=args.epochs, device=args.device, data_dir=args.data_dir,
                              results_dir=args.results_dir)
        check_requirements(args.profile, sorted({c.dataset for c in configs}), args.device, args.data_dir)
        check_writable(args.results_dir)
        results = run_all(configs, workers=args.workers)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"\n{e}" if str(e) else "\ninterrupted", file=sys.stderr)
        return 130
    diverged = sum(r is None for r in results)
    print(f"{len(set(configs))} runs of the '{args.profile}' profile are finished"
          + (f" ({diverged} of the requested cells diverged: see failure.json in their run directories)" if diverged else ""))
    return 0
