"""Named settings: ``paper`` (the paper's CIFAR/Clothing1M setting, for a GPU), ``cpu`` (the
book's default here: Fashion-MNIST sized for two CPU cores) and ``smoke`` (seconds, for tests).

A profile maps a data set to the config fields that differ from :class:`RunConfig`'s defaults
(which are the paper's CIFAR-10 setting). The GDW Step-2 size ``outer_lr`` is set so that its
mean step per weight, ``outer_lr / (batch * C)``, is 0.1, as the public code's 100 (CIFAR-10)
and 1000 (CIFAR-100) both give.
"""
from __future__ import annotations

from .config import RunConfig

PROFILES: dict[str, dict[str, dict]] = {
    "paper": {
        "cifar10": dict(model="resnet32", epochs=80, meta_per_class=100, outer_lr=100.0),
        "cifar100": dict(model="resnet32", epochs=80, meta_per_class=10, outer_lr=1000.0),
        "fashion-mnist": dict(model="resnet32", epochs=80, meta_per_class=100, outer_lr=100.0),
        "clothing1m": dict(model="resnet18", epochs=5, lr=1e-3, weight_decay=1e-3, batch_size=128,
                           meta_batch_size=128, schedule="constant", outer_lr=0.1 * 128 * 14, noise="none",
                           ratio=0.0),
    },
    "cpu": {
        "fashion-mnist": dict(model="mlp_bn", train_size=10_000, epochs=12, meta_per_class=50, batch_size=100,
                              meta_batch_size=100, outer_lr=100.0, augment=False, lr=0.1),
    },
    "smoke": {
        "fashion-mnist": dict(model="mlp_bn", train_size=400, epochs=2, meta_per_class=5, batch_size=50,
                              meta_batch_size=50, outer_lr=50.0, augment=False, track_instances=4),
    },
}

# The profiles sized for a GPU; the others are sized for a CPU, and a Slurm sweep of them asks for no GPU
# unless --gpus says otherwise.
GPU_PROFILES = ("paper",)


# The settings of a profile that the paper does not fix, each with its reason; the book shows
# them beside the tables they shape. Change one with ``--set FIELD=VALUE``.
CHOICES: dict[tuple[str, str, str], str] = {
    ("paper", "clothing1m", "schedule"):
        "the paper gives only an \"initial learning rate\" of 1e-3 for Clothing1M's 5 epochs and no "
        "schedule, and the public code has no Clothing1M part. Any decay would be a shape the paper does not "
        "state, so the rate stays at 1e-3 throughout; `--set schedule=cosine` applies the CIFAR runs' per-epoch "
        "cosine decay over the 5 epochs instead.",
}


def choices(profile: str, dataset: str) -> dict[str, str]:
    """The fields of ``profile`` for ``dataset`` that are this project's choices, with their reasons."""
    return {field: why for (p, d, field), why in CHOICES.items() if (p, d) == (profile, dataset)}


# The methods that keep the profile's own network in a rehearsal (so that ResNet-32, and ResNet-18
# on Clothing1M, train in every table; Fine-tuning starts from BaseModel's network); the others
# use a small CNN to keep the rehearsal short.
REHEARSAL_REAL_NETWORK = ("BaseModel", "Fine-tuning", "GDW")


def _rehearsal(dataset: str, method: str) -> dict:
    fields = dict(epochs=2, iterations_per_epoch=2, batch_size=10, meta_batch_size=10,
                  meta_per_class=1 if dataset == "cifar100" else 2)
    if dataset == "clothing1m":   # its meta set is the clean validation split; 224-pixel crops are slow on a CPU
        fields.update(batch_size=2, meta_batch_size=2)
        del fields["meta_per_class"]
    if method == "Fine-tuning":
        fields["options"] = {"epochs": 1}
    if method not in REHEARSAL_REAL_NETWORK:
        fields["model"] = "small_cnn"
    return fields


# Named overrides: changes on top of a profile, for a purpose other than results. The name is kept
# in each run's config (``override``), and every caption of a table or figure names it.
OVERRIDES = {
    "rehearsal": dict(
        fields=_rehearsal, runs_on_cpu=True, seeds=(1,),
        describe="REHEARSAL, not results: every run is cut to 2 epochs of 2 iterations on stand-in data, and "
                 f"only {', '.join(REHEARSAL_REAL_NETWORK)} keep the profile's network (the others use a small "
                 "CNN), one seed; it checks that the grid, the sweep and the notebooks work end to end, and its numbers "
                 "mean nothing"),
}


def describe_override(name: str | None) -> str:
    """The caption's warning for runs made under override ``name`` ('' for none)."""
    return OVERRIDES[name]["describe"] if name in OVERRIDES else (f"override {name!r}" if name else "")


def default_profile(dataset: str) -> str:
    return "cpu" if dataset == "fashion-mnist" else "paper"


def profile_config(profile: str | None = None, dataset: str = "fashion-mnist", override: str | None = None,
                   **fields) -> RunConfig:
    """The config of ``profile`` for ``dataset``, changed by the named ``override`` (see
    :data:`OVERRIDES`), with ``fields`` overriding both."""
    profile = profile or default_profile(dataset)
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    if dataset not in PROFILES[profile]:
        raise ValueError(f"the {profile!r} profile has no setting for {dataset!r}; "
                         f"it covers {sorted(PROFILES[profile])}")
    settings = dict(PROFILES[profile][dataset])
    if override is not None:
        if override not in OVERRIDES:
            raise ValueError(f"unknown override {override!r}; choose one of {sorted(OVERRIDES)}")
        settings.update(OVERRIDES[override]["fields"](dataset, fields.get("method", "GDW")), override=override)
    return RunConfig(dataset=dataset).replace(**{**settings, **fields})
