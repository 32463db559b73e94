"""Schedules as pure functions of the step: tau for ReCU, and the learning rate.

tau (set once per epoch t of T, as in the paper):

    exponential  tau(t) = A * exp(t / T) + B,  A = (tau_e - tau_s) / (e - 1),  B = tau_s - A
    linear       tau(t) = tau_s + (tau_e - tau_s) * t / T
    constant     tau(t) = tau_s

so tau(0) = tau_s and tau(T) = tau_e. The paper's defaults are tau_s = 0.85, tau_e = 0.99.
tau must lie in (0.5, 1): Q(tau) = -b ln(2 - 2 tau) is then positive and finite.

Activation estimators with a schedule (``BinaryOptions.activation_ste``), per epoch t of T:

    reste  o(t) = o_s + (o_e - o_s) * (1 - cos(pi/2 * t/T))   (ReSTE's main.py, o_s = 1)
    ede    t(t) = t_s * (t_e / t_s)^(t/T),  k = max(1 / t, 1)  (IR-Net's Log_UP)

Learning rate (``OptimizerConfig.lr_schedule``), warm-up then cosine to zero:

    epoch  the official ReCU schedule, constant within an epoch (``epoch_lr``)
    step   linear warm-up over the first steps, then cosine per step (``lr_at``)
"""

from __future__ import annotations

import math

from recu_core.config import SCHEDULE_KINDS, TauSchedule


def _check_tau(name: str, tau: float) -> None:
    if not 0.5 < tau < 1.0:
        raise ValueError(f"{name} must lie in (0.5, 1) so that Q(tau) is finite, got {tau}")


def _check_progress(epoch: float, total: int) -> None:
    if total < 1:
        raise ValueError(f"total epochs must be >= 1, got {total}")
    if not 0 <= epoch <= total:
        raise ValueError(f"epoch must lie in [0, {total}], got {epoch}")


def exponential_tau(epoch: float, total: int, tau_s: float, tau_e: float) -> float:
    """tau(t) = A e^(t/T) + B with A = (tau_e - tau_s)/(e - 1), B = tau_s - A."""
    a = (tau_e - tau_s) / (math.e - 1)
    return a * math.exp(epoch / total) + tau_s - a


def linear_tau(epoch: float, total: int, tau_s: float, tau_e: float) -> float:
    """tau(t) = tau_s + (tau_e - tau_s) t / T."""
    return tau_s + (tau_e - tau_s) * epoch / total


def constant_tau(epoch: float, total: int, tau_s: float, tau_e: float) -> float:
    """tau(t) = tau_s."""
    return tau_s


_TAU_FUNCTIONS = {
    "exponential": exponential_tau,
    "linear": linear_tau,
    "constant": constant_tau,
}


def tau_at(schedule: TauSchedule, epoch: float, total: int) -> float:
    """tau for ``epoch`` of ``total`` under ``schedule``; errors name the bad value."""
    if schedule.kind not in _TAU_FUNCTIONS:
        raise ValueError(f"unknown tau schedule {schedule.kind!r}; allowed: {SCHEDULE_KINDS}")
    _check_tau("tau_s", schedule.tau_s)
    _check_tau("tau_e", schedule.tau_e)
    _check_progress(epoch, total)
    return _TAU_FUNCTIONS[schedule.kind](epoch, total, schedule.tau_s, schedule.tau_e)


def reste_o_at(epoch: float, total: int, o_start: float, o_end: float) -> float:
    """ReSTE's exponent o(t) = o_s + (o_e - o_s) (1 - cos(pi t / (2 T))): o_s at t = 0,
    o_e at t = T, slow at first (Wu et al., "Estimator meets equilibrium perspective",
    ICCV 2023; DravenALG/ReSTE ``main.py``, there with o_s = 1)."""
    _check_progress(epoch, total)
    return o_start + (o_end - o_start) * (1 - math.cos(0.5 * math.pi * epoch / total))


def ede_t_at(epoch: float, total: int, t_start: float, t_end: float) -> float:
    """IR-Net's t(t) = 10^(log10 t_s + (log10 t_e - log10 t_s) t / T): log-uniform from
    t_s to t_e (Qin et al., CVPR 2020; htqin/IR-Net ``Log_UP``)."""
    _check_progress(epoch, total)
    return t_start * (t_end / t_start) ** (epoch / total)


def ede_k(t: float) -> float:
    """IR-Net's k = max(1 / t, 1): the gradient's peak k*t stays at least 1."""
    return max(1.0 / t, 1.0)


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Linear warm-up to ``base_lr`` over ``warmup_steps``, then cosine decay to 0.

    lr(s) = base * (s + 1) / W                                  for s < W
    lr(s) = base * 0.5 * (1 + cos(pi * (s - W) / (S - W)))      for W <= s < S
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def epoch_lr(epoch: int, total: int, warmup: int, base_lr: float) -> float:
    """The official ReCU learning rate of ``epoch`` (0-based) of ``total``, for the whole epoch.

    The official loop sets lr = base * (e + 1) / 5 for e < 5, then steps
    CosineAnnealingLR(T_max = E - 4) after every epoch from epoch 4 on; with W warm-up
    epochs (the official W = 5) that is

        lr(e) = base * (e + 1) / W                                    e < W
        lr(e) = base * (1 + cos(pi * (e - W + 1) / (E - W + 1))) / 2  e >= W
        lr(e) = base * (1 + cos(pi * e / E)) / 2                      W = 0 (no warm-up)

    so the warm-up ends at base exactly where the cosine starts, and the last epoch's lr
    is small but not zero.
    """
    _check_progress(epoch, total)
    if not 0 <= warmup < total:
        raise ValueError(f"warm-up epochs must lie in [0, {total}), got {warmup}")
    if epoch < warmup:
        return base_lr * (epoch + 1) / warmup
    if warmup == 0:
        return base_lr * 0.5 * (1 + math.cos(math.pi * epoch / total))
    span = total - warmup + 1
    return base_lr * 0.5 * (1 + math.cos(math.pi * (epoch - warmup + 1) / span))
