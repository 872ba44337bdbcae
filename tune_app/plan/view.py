"""What `tune-app plan show` prints and draws: the schedules, phase by phase."""

from __future__ import annotations

from pathlib import Path

from tune_app.plan.plan import SETTINGS_KEYS, Plan
from tune_app.plan.schedules import Constant, Cosine, Linear, OneCycle, Schedule

__all__ = ["default_epochs", "plan_rows", "plan_table", "plot_plan"]


def default_epochs(plan: Plan) -> list[int]:
    """Each phase's first and last epoch."""
    epochs: list[int] = []
    for index, end in enumerate(plan.phase_ends):
        epochs += [plan.phase_start(index), end]
    return sorted(set(epochs))


def plan_rows(
    plan: Plan, epochs: list[int], steps_per_epoch: int = 1
) -> list[dict[str, float | int]]:
    return [plan.values_at(epoch, 0, steps_per_epoch).as_row() for epoch in epochs]


def _describe(schedule: Schedule) -> str:
    if isinstance(schedule, Constant):
        return f"{schedule.value:g}"
    if isinstance(schedule, OneCycle):
        return f"onecycle {schedule.start:g}->{schedule.max:g}@{schedule.pct_start:g}->{schedule.end:g}"
    shape = (
        "linear"
        if isinstance(schedule, Linear)
        else "cosine"
        if isinstance(schedule, Cosine)
        else "?"
    )
    return f"{shape} {schedule.start:g}->{schedule.end:g}"


def plan_table(plan: Plan, epochs: list[int], steps_per_epoch: int = 1) -> str:
    lines = [f"plan {plan.name}: {len(plan.phases)} phases, {plan.total_epochs} epochs", ""]
    head = f"{'phase':>5} {'epochs':>9}  {'lr':<34} {'teacher_forcing':<17} {'wd':>6} {'noise':>6} {'clip':>5} {'alpha':>6} {'lag':>4}"
    lines.append(head)
    for index, phase in enumerate(plan.phases):
        span = f"{plan.phase_start(index)}-{plan.phase_ends[index]}"
        lines.append(
            f"{index + 1:>5} {span:>9}  {_describe(phase.lr):<34} {_describe(phase.teacher_forcing):<17} "
            f"{_describe(phase.weight_decay):>6} {_describe(phase.noise):>6} {_describe(phase.grad_clip):>5} "
            f"{_describe(phase.alpha):>6} {phase.max_lag:>4}"
        )
    for mod in plan.modifications:
        lines.append(f"  modification from epoch {mod.from_epoch}: {mod.to_dict()}")
    lines += ["", "values at the start of each epoch:"]
    keys = SETTINGS_KEYS
    lines.append(" ".join(f"{k:>15}" for k in keys))
    for row in plan_rows(plan, epochs, steps_per_epoch):
        lines.append(" ".join(f"{row[k]:>15.6g}" for k in keys))
    return "\n".join(lines)


def plot_plan(
    plan: Plan, path: Path, steps_per_epoch: int = 1, reference: Plan | None = None
) -> Path:
    """One panel per knob over the epochs, phase boundaries marked; `reference` drawn dashed.

    Drawn with matplotlib's object API on an Agg canvas (no pyplot, the backend left as it is).

    Args:
        plan: the plan drawn (solid lines).
        path: the image file written (PNG; its folder is made).
        steps_per_epoch: optimizer steps per epoch, so the learning rate shows within epochs.
        reference: another plan drawn dashed over it (e.g. the seed plan), or None.

    Returns:
        `path`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    knobs = [
        "lr",
        "teacher_forcing",
        "weight_decay",
        "noise",
        "grad_clip",
        "alpha",
        "max_lag",
        "curriculum",
    ]
    fig = Figure(figsize=(11, 10))
    FigureCanvasAgg(fig)
    axes = fig.subplots(4, 2, sharex=True)
    for target, style in ((plan, "-"), (reference, "--")):
        if target is None:
            continue
        xs, values = [], {k: [] for k in knobs}  # type: ignore[var-annotated]
        for epoch in range(1, target.total_epochs + 1):
            for step in range(steps_per_epoch):
                s = target.values_at(epoch, step, steps_per_epoch)
                xs.append(epoch - 1 + step / steps_per_epoch)
                for k in knobs:
                    values[k].append(getattr(s, k))
        for ax, k in zip(axes.flat, knobs, strict=True):
            ax.plot(
                xs,
                values[k],
                style,
                label=target.name if target is plan else f"{target.name} (reference)",
            )
    for ax, k in zip(axes.flat, knobs, strict=True):
        ax.set_title(k)
        for end in plan.phase_ends[:-1]:
            ax.axvline(end, color="grey", lw=0.6, ls=":")
        ax.grid(alpha=0.3)
    axes[0, 0].set_yscale("log")
    axes[0, 0].legend(fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    fig.suptitle(f"plan {plan.name}: {plan.total_epochs} epochs")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path
