"""Every method of the paper's tables, behind one interface (:class:`Method`) and one registry
keyed by the names the tables use."""
from __future__ import annotations

from .base import BaseModel, LogitGradientMethod, Method, NonFiniteLossError
from .weighting import GDW, MWNet

METHODS: dict[str, type[Method]] = {
    m.name: m
    for m in (BaseModel, MWNet, GDW)
}


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name`` (as in the paper's tables, e.g. 'GDW', 'MWNet')."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")
    return METHODS[name]


__all__ = ["METHODS", "Method", "LogitGradientMethod", "NonFiniteLossError", "get_method", "BaseModel", "MWNet", "GDW"]
