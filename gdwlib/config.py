"""A run's complete description: a flat, hashable config with the paper's defaults.

Every result file stores its config, and a config's identity (:func:`run_id`) is a hash of the
fields that change the numbers, so the same config always finds its earlier result.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

DATASETS = {"fashion-mnist": 10, "cifar10": 10, "cifar100": 100, "clothing1m": 14}
NOISE_TYPES = ("none", "uniform", "flip")
MODEL_NAMES = ("resnet32", "small_cnn", "small_cnn_strided", "mlp", "mlp_bn", "resnet18")

# fields that say where things are, not what is computed: left out of the run's identity (the
# device's type, cpu or cuda, is part of the run id; which GPU, or "auto", is not)
LOCATION_FIELDS = ("data_dir", "results_dir", "threads", "device")
# fields added after runs were made: left out of the identity at their default, which computes
# what those runs computed, so that the runs keep their names
LATER_FIELDS = {"iterations_per_epoch": None, "override": None, "folds": None, "fold": None, "drop": None}
# detectors of label errors whose flagged instances a BaseModel run can leave out (gdwlib.label_errors)
DETECTORS = ("GDW", "MWNet", "small-loss", "cleanlab")


@dataclass(frozen=True)
class RunConfig:
    """One training run. Defaults follow the paper's CIFAR setting and the public code."""

    method: str = "GDW"
    dataset: str = "cifar10"
    noise: str = "uniform"                # none | uniform | flip
    ratio: float = 0.4                    # noise ratio p
    noise_variant: str = "code"           # uniform noise: 'code' redraws from all C classes, 'paper' flips to another
    imbalance: float = 1.0                # long-tail factor mu (1 = balanced)
    meta_per_class: int = 100             # clean meta images per class
    meta_overlap: bool = False            # the public code's overlapping meta/train draw
    train_size: int | None = None         # keep only this many training images (CPU budgets)
    model: str = "resnet32"
    pretrained: str | None = None         # local weights file (ResNet-18 on Clothing1M)
    epochs: int = 80
    iterations_per_epoch: int | None = None   # stop each epoch after this many iterations (rehearsals only)
    override: str | None = None           # the named override applied to the profile (profiles.OVERRIDES)
    folds: int | None = None              # BaseModel: train without fold `fold` of `folds`, predict it (cleanlab)
    fold: int | None = None
    drop: str | None = None               # BaseModel: train without the instances this detector flags
    batch_size: int = 100
    meta_batch_size: int = 100
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"              # cosine (per epoch, as the public code) | constant
    augment: bool = True
    vnet_hidden: int = 100
    vnet_lr: float = 1e-3
    vnet_weight_decay: float = 1e-4
    outer_lr: float = 100.0               # GDW Step-2 step size (code rule); 1000 on CIFAR-100
    omega_lr: float | None = None         # eta_omega of Eq. 11 (paper rule)
    step_rule: str = "code"               # code | paper
    clip: float = 0.2
    clamp_max: float | None = 0.999       # the public code's clamp of p; None = plain p - y
    constraint: bool = True               # zero-mean constraint (False: Section 4.1's ablation)
    meta_method: str = "jvp"              # jvp | functional-jvp | reference (gdwlib.bilevel.meta_gradient)
    options: tuple[tuple[str, Any], ...] = ()   # method-specific named options, see methods/
    final_epochs: int = 5                 # final accuracy = mean test accuracy of the last epochs
    track_instances: int = 16             # noisy/clean instances whose weights are recorded (Figure 4)
    seed: int = 1
    device: str = "auto"                  # auto | cpu | cuda
    data_dir: str | None = None
    results_dir: str = "results"
    threads: int | None = None

    def __post_init__(self):
        validate(self)
        if self.noise == "none" or self.ratio == 0:
            # one canonical clean setting, so that the 0% columns of Tables 2-4 share their runs
            object.__setattr__(self, "noise", "none")
            object.__setattr__(self, "ratio", 0.0)

    @property
    def num_classes(self) -> int:
        return DATASETS[self.dataset]

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)

    def replace(self, **changes) -> "RunConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown config field(s) {sorted(unknown)}; known: "
                             f"{', '.join(f.name for f in dataclasses.fields(self))}")
        if "options" in changes and isinstance(changes["options"], dict):
            changes["options"] = tuple(sorted(changes["options"].items()))
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["options"] = dict(self.options)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config fields {sorted(unknown)}; known: {sorted(known)}")
        if isinstance(d.get("options"), dict):
            d["options"] = tuple(sorted(d["options"].items()))
        elif d.get("options") is not None:
            d["options"] = tuple(tuple(kv) for kv in d["options"])
        return cls(**d)


_KINDS = {"int": ("an integer", Integral), "float": ("a number", Real), "bool": ("true or false", bool),
          "str": ("a string", str)}


def check_types(c: RunConfig) -> None:
    """Every field has the type its annotation names (``--set`` values arrive as JSON)."""
    for f in dataclasses.fields(c):
        if f.name == "options":
            continue
        value, parts = getattr(c, f.name), [t.strip() for t in str(f.type).split("|")]
        if value is None and "None" in parts:
            continue
        kinds = [_KINDS[t] for t in parts if t != "None"]
        ok = any(isinstance(value, kind) and (kind is bool or not isinstance(value, bool)) for _, kind in kinds)
        if not ok:
            wanted = " or ".join([name for name, _ in kinds] + (["null"] if "None" in parts else []))
            raise ValueError(f"{f.name} must be {wanted}, got {value!r} ({type(value).__name__})")


def validate(c: RunConfig) -> None:
    """Reject impossible settings with a message that says what to change."""
    check_types(c)
    if c.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {c.dataset!r}; choose one of {sorted(DATASETS)}")
    if c.noise not in NOISE_TYPES:
        raise ValueError(f"unknown noise type {c.noise!r}; choose one of {NOISE_TYPES}")
    if not (isinstance(c.ratio, (int, float)) and 0.0 <= c.ratio <= 1.0):
        raise ValueError(f"noise ratio must lie in [0, 1], got {c.ratio}")
    if c.noise_variant not in ("code", "paper"):
        raise ValueError(f"noise_variant must be 'code' or 'paper', got {c.noise_variant!r}")
    if not (isinstance(c.imbalance, (int, float)) and 0.0 < c.imbalance <= 1.0) or math.isnan(c.imbalance):
        raise ValueError(f"imbalance factor must lie in (0, 1], got {c.imbalance}")
    if c.model not in MODEL_NAMES:
        raise ValueError(f"unknown model {c.model!r}; choose one of {MODEL_NAMES}")
    for name in ("epochs", "batch_size", "meta_batch_size", "meta_per_class", "final_epochs"):
        if getattr(c, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(c, name)}")
    if c.iterations_per_epoch is not None and c.iterations_per_epoch < 1:
        raise ValueError(f"iterations_per_epoch must be at least 1 (or null for whole epochs), got {c.iterations_per_epoch}")
    if c.train_size is not None and c.train_size < DATASETS[c.dataset]:
        raise ValueError(f"train_size must leave at least one training image per class, at least "
                         f"{DATASETS[c.dataset]} for {c.dataset}, got {c.train_size}")
    for name in ("lr", "momentum", "weight_decay", "vnet_lr", "outer_lr", "clip"):
        if not (math.isfinite(getattr(c, name)) and getattr(c, name) >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {getattr(c, name)}")
    if c.step_rule not in ("code", "paper"):
        raise ValueError(f"step_rule must be 'code' or 'paper', got {c.step_rule!r}")
    if c.step_rule == "paper" and c.omega_lr is None:
        raise ValueError("step_rule='paper' needs omega_lr (eta_omega of Eq. 11)")
    if c.meta_method not in ("jvp", "functional-jvp", "reference"):
        raise ValueError(f"meta_method must be 'jvp', 'functional-jvp' or 'reference', got {c.meta_method!r}")
    if c.schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {c.schedule!r}")
    if (c.folds is None) != (c.fold is None) or (c.folds is not None and not (c.folds >= 2 and 0 <= c.fold < c.folds)):
        raise ValueError(f"folds and fold go together, with folds >= 2 and 0 <= fold < folds; got folds={c.folds}, "
                         f"fold={c.fold}")
    if c.drop is not None and c.drop not in DETECTORS:
        raise ValueError(f"drop must name a detector, one of {DETECTORS}; got {c.drop!r}")
    if (c.folds is not None or c.drop is not None) and (c.method != "BaseModel" or (c.folds and c.drop)):
        raise ValueError("folds/fold (cross-validation) and drop (retraining without flagged instances) are for the "
                         f"BaseModel method, one at a time; got method {c.method!r}, folds={c.folds}, drop={c.drop}")
    if c.device not in ("auto", "cpu", "cuda") and not c.device.startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {c.device!r}")


def identity(c: RunConfig) -> dict[str, Any]:
    """The fields that determine a run's numbers."""
    d = c.to_dict()
    for k in LOCATION_FIELDS:
        d.pop(k)
    for k, default in LATER_FIELDS.items():
        if d[k] == default:
            d.pop(k)
    return d


def run_id(c: RunConfig, device: str, option_defaults: dict[str, Any] | None = None, revision: int = 1) -> str:
    """A readable, unique name for the run of ``c`` on ``device`` ('cpu' or 'cuda').

    ``option_defaults`` are the method's named options with their defaults: the options in force
    (defaults overridden by ``c.options``) are part of the identity, so that changing a default
    never passes off an old result as a run of the new setting. ``revision`` is the method's
    revision, raised whenever a fix changes what the method computes (it counts from 1, which
    leaves the names of runs made before revisions existed unchanged)."""
    ident = identity(c)
    ident["options"] = {**(option_defaults or {}), **ident["options"]}
    if revision != 1:
        ident["revision"] = revision
    ident = json.dumps({**ident, "device": device}, sort_keys=True, default=str)
    digest = hashlib.sha256(ident.encode()).hexdigest()[:10]
    setting = f"{c.noise}{c.ratio:g}" if c.noise != "none" else "clean"
    if c.imbalance < 1:
        setting += f"-lt{c.imbalance:g}"
    if c.folds is not None:
        setting += f"-fold{c.fold}of{c.folds}"
    if c.drop is not None:
        setting += f"-without-{c.drop}"
    return f"{c.method}-{c.dataset}-{setting}-s{c.seed}-{digest}"
