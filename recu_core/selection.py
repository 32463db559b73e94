"""Best and last accuracy over a run, and which epoch's checkpoint is "the best".

What the official code and every BNN paper report is the best test accuracy over all
epochs (``best_prec1``), evaluated every epoch: that is ``best_test_acc``. Selecting on
the test set and reporting the same number is optimistic, so a run with a held-out
validation split (``dataset.val_fraction``) also reports ``best_val_acc`` and the test
accuracy of that epoch, ``test_acc_at_best_val``, which is an honest estimate. The kept
"best" checkpoint is the one of ``best_epoch``: the best validation epoch when there is
a validation split, else the best test epoch.

Torch-free: the service reads these keys from the stored metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

BEST_KEYS = ("best_test_acc", "best_epoch", "best_val_acc", "test_acc_at_best_val")


@dataclass
class BestSoFar:
    """The running best of a run; ``update`` after each epoch, restored on resume."""

    best_test_acc: float = float("-inf")
    best_test_epoch: int = 0
    best_val_acc: float | None = None
    best_val_epoch: int = 0
    test_acc_at_best_val: float | None = None

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, float]) -> BestSoFar:
        """The state after the epoch whose metrics (with their best_* keys) are given."""
        best = cls()
        if "best_test_acc" not in metrics:  # a checkpoint from before best tracking
            return best
        best.best_test_acc = float(metrics["best_test_acc"])
        best.best_test_epoch = int(metrics.get("best_test_epoch", metrics["best_epoch"]))
        if "best_val_acc" in metrics:
            best.best_val_acc = float(metrics["best_val_acc"])
            best.best_val_epoch = int(metrics["best_epoch"])
            best.test_acc_at_best_val = float(metrics["test_acc_at_best_val"])
        return best

    def update(self, epoch: int, metrics: Mapping[str, float]) -> bool:
        """Take epoch ``epoch``'s figures; True when it is the new ``best_epoch``."""
        new_test = metrics["test_acc"] > self.best_test_acc
        if new_test:
            self.best_test_acc, self.best_test_epoch = metrics["test_acc"], epoch
        if "val_acc" not in metrics:
            return new_test
        if self.best_val_acc is None or metrics["val_acc"] > self.best_val_acc:
            self.best_val_acc, self.best_val_epoch = metrics["val_acc"], epoch
            self.test_acc_at_best_val = metrics["test_acc"]
            return True
        return False

    @property
    def best_epoch(self) -> int:
        """The epoch whose checkpoint is kept as the best (validation first)."""
        return self.best_val_epoch if self.best_val_acc is not None else self.best_test_epoch

    def figures(self) -> dict[str, float]:
        """The best_* entries of an epoch's metrics."""
        out = {
            "best_test_acc": self.best_test_acc,
            "best_test_epoch": float(self.best_test_epoch),
            "best_epoch": float(self.best_epoch),
        }
        if self.best_val_acc is not None and self.test_acc_at_best_val is not None:
            out["best_val_acc"] = self.best_val_acc
            out["test_acc_at_best_val"] = self.test_acc_at_best_val
        return out
