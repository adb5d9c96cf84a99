"""gdwlib: Generalized Data Weighting (class-level gradient manipulation), reproduced.

The public API, for GDW on your own model and data (imported on first use, so that
``import gdwlib`` stays light):

- :class:`GDW`, :class:`MWNet`, :class:`L2RW`, :class:`BaseModel` (:mod:`gdwlib.reweighting`): a
  training step for any ``torch.nn.Module`` classifier, called from your own loop;
- :func:`fit` (:mod:`gdwlib.fitting`): the whole training in one call, with epochs, schedule,
  evaluation, checkpoints and resume (the book's trainer), weights and suspected label errors;
- :class:`InstanceWeights` (:mod:`gdwlib.instance_weights`): the weights learned per instance;
- :func:`carve_meta_set` (:mod:`gdwlib.data.split`): a clean meta set from a per-class budget or
  from trusted indices;
- :class:`Indexed` (:mod:`gdwlib.data.loaders`): a Dataset's ``(x, y)`` with each instance's
  index, which the step needs to record what it learns about that instance.
"""
from importlib import import_module

__version__ = "0.1.0"

_PUBLIC = {"GDW": "reweighting", "MWNet": "reweighting", "L2RW": "reweighting", "BaseModel": "reweighting",
           "StepWeights": "reweighting", "fit": "fitting",
           "InstanceWeights": "instance_weights", "carve_meta_set": "data.split", "Indexed": "data.loaders"}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module 'gdwlib' has no attribute {name!r}")
