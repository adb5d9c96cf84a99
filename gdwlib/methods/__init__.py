"""Every method of the paper's tables, behind one interface (:class:`Method`) and one registry
keyed by the names the tables use."""
from __future__ import annotations

import inspect
import re

from ..config import RunConfig
from .base import BaseModel, LogitGradientMethod, Method, NonFiniteLossError, check_options
from .coteach import CoTeaching
from .finetune import FineTuning
from .glc import GLC
from .insw import INSW
from .l2rw import L2RW
from .labels import GenLabel, SoftLabel
from .losses import Balanced, Focal
from .weighting import GDW, MWNet

METHODS: dict[str, type[Method]] = {
    m.name: m
    for m in (BaseModel, FineTuning, CoTeaching, GLC, L2RW, INSW, MWNet, SoftLabel, GenLabel, Focal, Balanced, GDW)
}


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name`` (as in the paper's tables, e.g. 'GDW', 'MWNet')."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")
    return METHODS[name]


def method_card(cls: type[Method]) -> str:
    """Markdown for the book's set-up page: a method's docstring, its named options and the run
    settings of its own (the config fields its reweighter takes), each with its default.

    Sphinx cross-reference roles (``:func:`name```) become plain code, since the page renders
    the docstring as Markdown, where a role would show as raw text."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    doc = re.sub(r":(?:meth|func|class|attr|mod):`~?([^`]+)`", r"`\1`", doc)
    doc = doc.replace("Set-up for the GDW setting:", "**Set-up for the GDW setting:**")
    tables = [("option (`--set option.NAME=VALUE`)", getattr(cls, "options", {}) or {}),
              ("setting (`--set NAME=VALUE`)",
               {name: getattr(RunConfig(), name) for name in getattr(cls, "reweighter_fields", ())})]
    text = "".join(f"\n\n| {head} | default |\n|---|---|\n" + "".join(f"| `{k}` | `{v!r}` |\n" for k, v in rows.items())
                   for head, rows in tables if rows)
    return f"## {cls.name}\n\n{doc}{text}\n"


__all__ = ["METHODS", "check_options", "Method", "LogitGradientMethod", "NonFiniteLossError", "get_method", "method_card", "BaseModel", "FineTuning",
           "CoTeaching", "GLC", "L2RW", "INSW", "MWNet", "SoftLabel", "GenLabel", "Focal", "Balanced", "GDW"]
