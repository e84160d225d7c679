"""On resume the run's config wins over the checkpoint's optimizer settings.

A checkpoint stores the optimizer's param groups (lr, betas, eps, weight
decay) and the LR schedule's base LRs, and loading them would silently undo a
changed ``optim.lr`` (or betas, eps, weight decay) that `run_dir` accepted and
recorded in the config history. So: take the freshly built optimizer's
hyperparameters before loading (`configured_hyperparameters`), put them back
after (`restore_hyperparameters`), and set the current LR from the schedule at
the restored position (the schedule's function is the new run's, so a changed
``train.steps`` reshapes the cosine too). The moments (exp_avg, exp_avg_sq)
and the step counts stay the checkpoint's.
"""
from __future__ import annotations

from typing import Any

from torch.optim.lr_scheduler import LambdaLR


def configured_hyperparameters(schedule: LambdaLR) -> list[dict[str, Any]]:
    """Every param group's settings (all but its params) of `schedule`'s optimizer, as built from the config."""
    return [{key: value for key, value in group.items() if key != "params"}
            for group in schedule.optimizer.param_groups]


def restore_hyperparameters(schedule: LambdaLR, configured: list[dict[str, Any]]) -> None:
    """Put `configured` back into the (just loaded) param groups and set each group's LR for the
    schedule's current position: ``initial_lr * lr_lambda(last_epoch)``."""
    groups = schedule.optimizer.param_groups
    if len(groups) != len(configured):
        raise ValueError(f"the checkpoint's optimizer has {len(groups)} param groups, this run's {len(configured)}; "
                         "resume with the model and optimizer of the saved run")
    for group, settings in zip(groups, configured):
        group.update(settings)
    schedule.base_lrs = [group["initial_lr"] for group in groups]
    lrs = [base * factor(schedule.last_epoch) for base, factor in zip(schedule.base_lrs, schedule.lr_lambdas)]
    for group, lr in zip(groups, lrs):
        group["lr"] = lr
    schedule._last_lr = lrs  # what get_last_lr() reports; LambdaLR keeps it in this attribute
