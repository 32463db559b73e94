"""Knowledge distillation from a float teacher: ReActNet's distribution loss.

The student learns the teacher's output distribution on the same batch (the teacher in
eval mode, on the same device, no gradient). With temperature T, teacher logits t and
student logits s, per sample:

    L_soft = T^2 * sum_c softmax(t / T)_c * (-log_softmax(s / T)_c)

(a cross-entropy against the teacher's soft targets; T^2 keeps the gradient's scale
independent of T, as in Hinton et al. 2015). ReActNet (Liu et al., ECCV 2020) trains
with T = 1 and the soft loss alone; ``weight`` w < 1 mixes in the hard labels:

    L = (1 - w) * CE(s, y) + w * L_soft
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def distribution_loss(student: Tensor, teacher: Tensor, temperature: float = 1.0) -> Tensor:
    """Mean over the batch of T^2 * CE(softmax(teacher / T), student / T); (B, C) logits."""
    soft = F.softmax(teacher.float() / temperature, dim=1)  # (B, C)
    log_p = F.log_softmax(student.float() / temperature, dim=1)  # (B, C)
    return temperature**2 * -(soft * log_p).sum(dim=1).mean()


@dataclass
class Distillation:
    """A teacher network and how its soft targets weigh in the loss."""

    teacher: nn.Module
    temperature: float = 1.0
    weight: float = 1.0  # 1: the soft loss alone (ReActNet)

    def prepare(self, device: torch.device) -> None:
        """The teacher on ``device``, in eval mode, its parameters frozen."""
        self.teacher.to(device).eval()
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)

    def loss(self, x: Tensor, student: Tensor, hard: Tensor) -> Tensor:
        """The training loss on batch ``x`` given the student's logits and the hard-label
        loss already computed on them."""
        with torch.no_grad():
            teacher = self.teacher(x)  # (B, C)
        soft = distribution_loss(student, teacher, self.temperature)
        if self.weight >= 1.0:
            return soft
        return (1.0 - self.weight) * hard + self.weight * soft
