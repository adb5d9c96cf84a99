"""The paper's experiments as grids of runs: which methods, data sets, settings and seeds make
each table, for each profile.

A cell of a table is (method, column); a column is a data set with one noise ratio or imbalance
factor, keyed as in ``paper_results.json`` (``"cifar10/0.4"``). The ``cpu`` profile replaces
CIFAR-10 and CIFAR-100 by Fashion-MNIST; its columns are compared with the paper's CIFAR-10
columns, and labelled so.
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import RunConfig
from .profiles import OVERRIDES, profile_config

NOISY = ["BaseModel", "Fine-tuning", "Co-teach", "GLC", "L2RW", "INSW", "MWNet", "Soft-label", "Gen-label", "GDW"]
LONG_TAIL = ["BaseModel", "Fine-tuning", "Focal", "Balanced", "L2RW", "INSW", "MWNet", "GDW"]

TABLES = {
    "table2": dict(key="table2_uniform_noise", methods=NOISY, kind="noise", noise="uniform", levels=(0.0, 0.4, 0.6),
                   title="Table 2: uniform label noise"),
    "table3": dict(key="table3_flip_noise", methods=NOISY, kind="noise", noise="flip", levels=(0.0, 0.2, 0.4),
                   title="Table 3: flip label noise"),
    "table4": dict(key="table4_long_tail", methods=LONG_TAIL, kind="imbalance", noise="none", levels=(1.0, 0.1, 0.01),
                   title="Table 4: long-tailed training sets"),
    "table5": dict(key="table5_clothing1m", methods=NOISY, kind="clothing", noise="none", levels=(None,),
                   title="Table 5: Clothing1M", seeds=(1,)),   # one run per method, as the paper
}
DATASETS = {"cpu": ["fashion-mnist"], "smoke": ["fashion-mnist"], "paper": ["cifar10", "cifar100"]}
SEEDS = {"cpu": [1, 2, 3, 4, 5], "smoke": [1], "paper": [1, 2, 3, 4, 5]}
# The second network of the cpu profile (its first is an MLP with BatchNorm): the claims that
# depend on the network are tested on a CNN without BatchNorm too (headline and ablation, 40% and
# 60% uniform noise, three seeds), sized so that its runs cost about what the MLP's do.
# Its flip-noise runs (BaseModel, MW-Net and GDW) are the label-error grid's, so that the claims
# about every noise setting are tested on it too.
SECOND_NETWORK = {"cpu": dict(model="small_cnn_strided", levels=(0.4, 0.6), flip_levels=(0.2, 0.4), seeds=(1, 2, 3)),
                  "smoke": dict(model="small_cnn_strided", levels=(0.4, 0.6), flip_levels=(), seeds=(1,))}
# Finding mislabelled instances (gdwlib.label_errors): settings where the noise is injected and the
# truth known, as (noise, ratio, imbalance factor), on both networks of the profile. The last is a
# long-tailed set (mu = 0.1, as Figure 6) whose labels are also corrupted, the practitioner's case.
DETECTION = {"cpu": dict(settings=(("uniform", 0.4, 1.0), ("uniform", 0.6, 1.0), ("flip", 0.2, 1.0), ("flip", 0.4, 1.0),
                                   ("uniform", 0.2, 0.1)), seeds=(1, 2, 3)),
             "smoke": dict(settings=(("uniform", 0.4, 1.0), ("uniform", 0.2, 0.1)), seeds=(1,))}
ABLATED = "GDW (no constraint)"   # the ablation's method: GDW with constraint=False
PAPER_DATASET = {"fashion-mnist": "cifar10", "cifar10": "cifar10", "cifar100": "cifar100", "clothing1m": "clothing1m"}


@dataclass(frozen=True)
class Cell:
    method: str
    column: str        # "<dataset>/<level>" as the paper's keys, e.g. "fashion-mnist/0.4", "cifar10/0.01"
    paper_column: str  # the column of the paper's table shown beside it
    config: RunConfig
    label: str = ""    # the column's heading, e.g. "Fashion-MNIST, 40%"
    paper_label: str = ""


DATASET_NAMES = {"fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100",
                 "clothing1m": "Clothing1M"}


def _level(kind: str, level) -> str:
    """The level as the paper's keys write it: noise ratios with one decimal, imbalance factors as is."""
    return f"{level:.1f}" if kind == "noise" else f"{level:g}"


def _label(dataset: str, kind: str, level) -> str:
    name = DATASET_NAMES.get(dataset, dataset)
    if level is None:
        return name
    return f"{name}, {level:.0%}" if kind == "noise" else f"{name}, μ = {level:g}"


def setting_config(profile: str, dataset: str, kind: str, noise: str, level, method: str, seed: int,
                   **fields) -> RunConfig:
    """The config of one run of a table."""
    if kind == "noise":
        fields.update(noise=noise, ratio=level)
    elif kind == "imbalance":
        fields.update(noise="none", ratio=0.0, imbalance=level)
    return profile_config(profile, dataset, method=method, seed=seed, **fields)


def _override_seeds(fields: dict):
    return OVERRIDES.get(fields.get("override"), {}).get("seeds")


def table_cells(table: str, profile: str = "cpu", *, datasets=None, methods=None, levels=None, seeds=None,
                **fields) -> list[Cell]:
    """Every run of ``table`` under ``profile``; ``fields`` (epochs, device, data_dir, results_dir,
    ...) apply to all of them."""
    spec = TABLES[table]
    fields = {k: v for k, v in fields.items() if v is not None}
    if spec["kind"] == "clothing":
        datasets = ["clothing1m"]
    cells = []
    for dataset in datasets or DATASETS[profile]:
        for level in levels or spec["levels"]:
            kind, paper_dataset = spec["kind"], PAPER_DATASET[dataset]
            column = "clothing1m" if level is None else f"{dataset}/{_level(kind, level)}"
            paper_column = "clothing1m" if level is None else f"{paper_dataset}/{_level(kind, level)}"
            labels = _label(dataset, kind, level), _label(paper_dataset, kind, level)
            for method in methods or spec["methods"]:
                for seed in seeds or spec.get("seeds") or _override_seeds(fields) or SEEDS[profile]:
                    config = setting_config(profile, dataset, kind, spec["noise"], level, method, seed, **fields)
                    cells.append(Cell(method, column, paper_column, config, *labels))
    return cells


def ablation_cells(profile: str = "cpu", *, datasets=None, levels=None, seeds=None, **fields) -> list[Cell]:
    """Section 4.1's ablation: GDW without the zero-mean constraint, beside GDW and MW-Net, under
    uniform noise."""
    cells = table_cells("table2", profile, datasets=datasets, methods=["MWNet", "GDW"], levels=levels, seeds=seeds,
                        **fields)
    ablated = [Cell(ABLATED, c.column, c.paper_column, c.config.replace(constraint=False), c.label,
                    c.paper_label) for c in cells if c.method == "GDW"]
    return cells + ablated


def second_network_cells(profile: str = "cpu", **fields) -> list[Cell]:
    """The headline comparison and the ablation on the profile's second network (empty for a
    profile without one: the paper's is ResNet-32 already)."""
    spec = SECOND_NETWORK.get(profile)
    if spec is None:
        return []
    seeds = fields.pop("seeds", None) or _override_seeds(fields) or spec["seeds"]
    fields = {**fields, "model": spec["model"], "levels": fields.pop("levels", None) or spec["levels"]}
    return (table_cells("table2", profile, methods=["BaseModel"], seeds=seeds, **fields)
            + ablation_cells(profile, seeds=seeds, **fields))


def second_network_flip_cells(profile: str = "cpu", **fields) -> list[Cell]:
    """BaseModel, MW-Net and GDW under flip noise on the profile's second network (empty where it
    has none, or no flip levels)."""
    spec = SECOND_NETWORK.get(profile)
    if spec is None or not spec["flip_levels"]:
        return []
    fields = {**fields, "seeds": fields.get("seeds") or _override_seeds(fields) or spec["seeds"], "model": spec["model"]}
    return table_cells("table3", profile, methods=["BaseModel", "MWNet", "GDW"], levels=spec["flip_levels"], **fields)


def detection_settings(profile: str = "cpu", *, seeds=None, **fields) -> list[RunConfig]:
    """The settings of the label-error comparison under ``profile`` (each as its plain BaseModel
    run; empty for a profile without one): every setting of :data:`DETECTION` on the profile's
    network and on its second network, for each seed."""
    spec = DETECTION.get(profile)
    if spec is None:
        return []
    fields = {k: v for k, v in fields.items() if v is not None}
    dataset = fields.pop("dataset", None) or DATASETS[profile][0]
    networks = [{}] + ([{"model": SECOND_NETWORK[profile]["model"]}] if profile in SECOND_NETWORK else [])
    return [profile_config(profile, dataset, method="BaseModel", noise=noise, ratio=ratio, imbalance=mu, seed=seed,
                           **network, **fields)
            for network in networks for noise, ratio, mu in spec["settings"]
            for seed in seeds or _override_seeds(fields) or spec["seeds"]]


def detection_configs(profile: str = "cpu", **fields) -> list[RunConfig]:
    """Every run the label-error comparison reads or makes under ``profile``."""
    from .label_errors import setting_runs

    return [c for base in detection_settings(profile, **fields) for c in setting_runs(base)]


def figure_configs(profile: str = "cpu", *, dataset=None, seed=None, **fields) -> dict[str, RunConfig]:
    """The runs Figures 3-6 are drawn from: GDW and MW-Net under 40% uniform noise (Figures 3-5)
    and GDW on the long-tailed set with mu = 0.1 (Figure 6), first seed of the profile."""
    dataset = dataset or DATASETS[profile][0]
    fields = {k: v for k, v in fields.items() if v is not None}
    seed = seed or (_override_seeds(fields) or SEEDS[profile])[0]
    noisy = lambda m: setting_config(profile, dataset, "noise", "uniform", 0.4, m, seed, **fields)  # noqa: E731
    return {"GDW": noisy("GDW"), "MWNet": noisy("MWNet"),
            "GDW long tail": setting_config(profile, dataset, "imbalance", "none", 0.1, "GDW", seed, **fields)}


def coteach_forget_rates(profile: str) -> dict[str, float]:
    """Co-teaching's forget rate tau in each column of the noisy-label tables under ``profile``
    (the book's methods page shows them)."""
    from .methods.coteach import CoTeaching

    rates = {}
    for table in ("table2", "table3") + (("table5",) if profile == "paper" else ()):
        for cell in table_cells(table, profile, methods=["Co-teach"], seeds=SEEDS[profile][:1]):
            rates[f"{TABLES[table]['title'].split(':')[0]}, {cell.label}"] = CoTeaching.tau_for(cell.config)
    return rates


def grid(profile: str = "cpu", pretrained: str | None = None, **fields) -> dict[str, list[RunConfig]]:
    """The runs the book's experiments need under ``profile``, by table (a run can serve several:
    the figures and the ablation reuse runs of Tables 2 and 4). Table 5 (Clothing1M) is part of
    the grid only where its data is (``data_dir``); ``pretrained`` (ImageNet ResNet-18 weights)
    applies to it alone."""
    tables = ["table2", "table3", "table4"] + (["table5"] if fields.get("data_dir") and profile == "paper" else [])
    out = {t: [c.config for c in table_cells(t, profile, **fields, **(
        {"pretrained": pretrained} if t == "table5" and pretrained else {}))] for t in tables}
    out["ablation"] = [c.config for c in ablation_cells(profile, **fields)]
    second = [c.config for c in second_network_cells(profile, **fields) + second_network_flip_cells(profile, **fields)]
    if second:   # the profiles whose first network is not the paper's ResNet-32
        out["second network"] = second
    out["figures"] = list(figure_configs(profile, **fields).values())
    detection = detection_configs(profile, **fields)
    if detection:
        out["label errors"] = detection
    return out


def all_configs(profile: str = "cpu", **fields) -> list[RunConfig]:
    """Every run of :func:`grid`, each once."""
    return list(dict.fromkeys(c for configs in grid(profile, **fields).values() for c in configs))


class RequirementError(RuntimeError):
    """A profile cannot run on this machine (no GPU where one is needed)."""


def check_requirements(profile: str, datasets: list[str], device: str, data_dir: str | None = None,
                       override: str | None = None) -> None:
    """Stop at once, with what to do, where a profile cannot run here."""
    import torch

    from .data.cifar import find_cifar
    from .data.fashion_mnist import load_fashion_mnist

    on_cpu = OVERRIDES.get(override, {}).get("runs_on_cpu", False)
    if profile == "paper" and not on_cpu and not (device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())):
        raise RequirementError("the 'paper' profile trains ResNet-32 for 80 epochs per run (hundreds of runs): it needs a "
                           "GPU. Run it where CUDA is available (papermill ... -p profile paper -p device cuda), or "
                           "use the 'cpu' profile here.")
    for dataset in datasets:
        if dataset == "fashion-mnist":
            load_fashion_mnist("test", data_dir)
        elif dataset in ("cifar10", "cifar100"):
            find_cifar(dataset, data_dir)
        elif dataset == "clothing1m" and not data_dir:
            raise FileNotFoundError("Clothing1M needs data_dir: the directory with its label and key files")


# Profiles whose runs the book's notebooks may train themselves; the paper profile's runs come from
# ``python -m gdwlib sweep`` only (a GPU machine or a cluster), never from building the book.
TRAINED_BY_THE_BOOK = ("cpu", "smoke")


class MissingRunsError(RuntimeError):
    """Runs a page needs have no result, and the book does not train them."""


def describe_runs(configs: list[RunConfig]) -> list[str]:
    """One line per setting and method, with its seeds: ``"GDW  cifar10 uniform 40%: seeds 1, 2"``
    (and the network, where the runs train more than one)."""
    several = len({c.model for c in configs}) > 1
    groups: dict[tuple, list[int]] = {}
    for c in configs:
        setting = (f"{c.noise} {c.ratio:.0%}" if c.noise != "none" else "clean") \
            + (f", mu = {c.imbalance:g}" if c.imbalance < 1 else "") + ("" if c.constraint else ", no constraint") \
            + (f", fold {c.fold} of {c.folds}" if c.folds else "") + (f", without {c.drop}'s flagged" if c.drop else "")
        groups.setdefault((c.method, c.dataset + (f" {c.model}" if several else ""), setting), []).append(c.seed)
    return [f"{m:12s} {d} {s}: seed{'s' if len(v) > 1 else ''} {', '.join(map(str, sorted(set(v))))}"
            for (m, d, s), v in groups.items()]


def sweep_command(profile: str, override: str | None = None, data_dir: str | None = None,
                  results_dir: str = "results", device: str = "auto", tables: str | None = None,
                  methods: str | None = None) -> str:
    """The ``gdwlib sweep`` command for the runs of ``profile`` (options at their defaults left out)."""
    options = {"override": override, "tables": tables, "methods": methods, "data-dir": data_dir,
               "results-dir": None if results_dir == "results" else results_dir,
               "device": None if device == "auto" else device}
    return " ".join([f"python -m gdwlib sweep --profile {profile}"] + [f"--{k} {v}" for k, v in options.items() if v])


def missing_message(missing: list[RunConfig], profile: str, override: str | None = None,
                    data_dir: str | None = None, results_dir: str = "results") -> str:
    lines = describe_runs(missing)
    return (f"{len(missing)} run(s) of the '{profile}' profile have no result in {results_dir}, and the book does not "
            "train them:\n  " + "\n  ".join(lines) + "\nMake them first (on a GPU machine, several GPUs or a Slurm "
            f"cluster; see the README, \"Running the paper's setting\"):\n  "
            f"{sweep_command(profile, override, data_dir, results_dir)} [--devices cuda:0,cuda:1 | --backend slurm ...]")


def run_configs(configs: list[RunConfig], profile: str, device: str = "auto", data_dir: str | None = None,
                workers: int = 2, progress: bool = False, override: str | None = None) -> None:
    """Make sure every run of ``configs`` has a result: train the missing ones under the profiles
    the book trains itself, or stop with :class:`MissingRunsError` (the runs and the sweep command
    that makes them) under the others. A run that diverged counts as present."""
    from .sweep import pending, run_all

    if profile not in TRAINED_BY_THE_BOOK:
        missing = [c for c in dict.fromkeys(configs) if pending(c)]
        if missing:
            raise MissingRunsError(missing_message(missing, profile, override, data_dir,
                                                   missing[0].results_dir))
        return
    check_requirements(profile, sorted({c.dataset for c in configs}), device, data_dir, override)
    run_all(configs, workers=workers, progress=progress)
