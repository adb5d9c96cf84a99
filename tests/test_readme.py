"""The README's example of GDW in your own loop runs as printed (on small stand-ins for the
reader's model and data), so that the first thing a new user copies works."""
import re
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent


def readme_block(after: str) -> str:
    text = (ROOT / "README.md").read_text()
    return re.search(r"```python\n(.*?)```", text[text.index(after):], re.S).group(1)


def test_the_own_loop_example_runs_as_printed():
    n, num_classes = 60, 3
    labels = torch.arange(n) % num_classes
    x = torch.randn(n, 5) + labels[:, None].float()
    index = torch.arange(n)
    stand_ins = {"labels": labels.numpy(), "num_classes": num_classes, "epochs": 2,
                 "model": nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, num_classes)),
                 "loader": [(x[i], labels[i], i) for i in index.split(20)],
                 "meta_batches": iter([(x[:9], labels[:9])] * 10)}
    exec(readme_block("**Your own loop.**"), stand_ins)
    learned = stand_ins["weights"].arrays()["mean_target_weight"]
    assert learned.shape == (n,) and torch.isfinite(torch.as_tensor(learned)).all()
