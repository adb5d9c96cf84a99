"""Fine-tuning: BaseModel's final network, trained further on the clean meta set alone."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from torch import Tensor

from ..config import RunConfig
from ..data.batches import Batch
from ..gradients import D1
from ..results import read_model_state
from .base import LogitGradientMethod


def base_config(config: RunConfig) -> RunConfig:
    """The BaseModel run that Fine-tuning starts from: same config, method and options aside."""
    return config.replace(method="BaseModel", options={})


class FineTuning(LogitGradientMethod):
    """Fine-tuning, "use the meta set to fine-tune the trained model in BaseModel" (GDW, Sec. 4):
    BaseModel's final network, trained further with plain cross-entropy on the clean meta set only.

    The BaseModel run of the same config is its requirement: the trainer (or a sweep) finishes
    it first, reusing its result when one exists (it is never retrained), and hands its run
    directory to :meth:`start_from`, which reads the final network from it.

    Set-up for the GDW setting:

    - The GDW text gives no learning rate or length for fine-tuning (it only reports that rates
      from 1e-7 to 1e-1 gave similar results on the long-tailed data), and neither the GDW nor
      the MW-Net public code contains a fine-tuning script.
    - ``lr`` = 1e-3 (option), constant: the closest documented protocol, L2RW's ``--finetune``
      mode, continues the restored model on the clean set at its schedule's last rate, 1e-3.
    - ``epochs`` = 10 (option) passes over the meta set: 100 steps at batch 100 on 1000
      images, a short adjustment of the trained network rather than a new training run on a
      set small enough to over-fit (L2RW runs 5,000 steps: ``--set option.epochs=500`` at batch 100).
    - SGD with the config's momentum and weight decay and a fresh momentum buffer (the saved
      BaseModel result holds its weights, not its optimiser); meta batches of the training
      batch size, with the config's augmentation. The result is the final fine-tuned network.
    """

    name = "Fine-tuning"
    options = {"lr": 1e-3, "epochs": 10}

    def __init__(self, config, data, device):
        super().__init__(config, data, device)
        if not self.option("epochs") >= 1 or not self.option("lr") > 0:
            raise ValueError(f"Fine-tuning needs epochs >= 1 and lr > 0, got {dict(config.options)}")

    @classmethod
    def requirements(cls, config: RunConfig) -> list[RunConfig]:
        return [base_config(config)]

    def start_from(self, required: list[Path]) -> None:
        (base,) = required
        self.model.load_state_dict(read_model_state(base, self.device))

    def num_epochs(self) -> int:
        return self.option("epochs")

    def learning_rate(self, epoch: int) -> float:
        return self.option("lr")

    def batches(self, epoch: int) -> Iterator[Batch]:
        return self.data.meta_epoch(epoch)

    def iterations_per_epoch(self) -> int:
        return -(-len(self.data.meta) // self.config.batch_size)

    def logit_gradient(self, logits: Tensor, batch: Batch) -> Tensor:
        return D1(logits, batch.y) / len(batch)
