"""Whether a member's parameters change its training at all: an explore that switched
`lr_restart` on with a factor of 1 at a phase start restarts the lr to the peak the phase starts
at anyway, and `plateau_restart` only acts once a round comes more than `patience` epochs after
the best epoch. Said as "no effective change" after an exploit, and a space in which no member
could train differently from the control is refused before a search starts.

Two parameter sets train alike from an epoch on when the plans they make (the modification
`modification_from_params` builds, applied as a trial applies it) give the same settings at
every epoch and optimizer step from there, and the boundary rules they switch on act alike.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from tune_app.errors import InputError
from tune_app.plan import registry
from tune_app.plan.modifications import modification_from_params
from tune_app.plan.plan import Plan, Settings
from tune_app.plan.rules import MonitorRules
from tune_app.plan.search_space import SearchSpace, load_space

__all__ = ["changes_training", "default_levers", "explored_plan", "refuse_inert_space"]

STEPS = 8  # optimizer steps per epoch the lr is compared at (start, middle, end of an epoch)


def explored_plan(
    plan: Plan, params: dict[str, Any], from_epoch: int, components: Sequence[str]
) -> Plan:
    """The plan a member with `params` trains on from `from_epoch`, continuing `plan` (its
    donor's), as `tune.trainable.trial_plan` builds it after an exploit."""
    phase_epochs = plan.phases[plan.phase_index(from_epoch)].epochs
    wanted = modification_from_params(params, from_epoch, phase_epochs, components)
    current = plan.active_modification(from_epoch)
    if current is None:
        return plan if wanted.is_identity else plan.apply(wanted)
    return plan if replace(current, from_epoch=from_epoch) == wanted else plan.apply(wanted)


def _alike(a: Settings, b: Settings) -> bool:
    for name in (
        "lr",
        "teacher_forcing",
        "weight_decay",
        "noise",
        "grad_clip",
        "alpha",
        "curriculum",
    ):
        if not math.isclose(getattr(a, name), getattr(b, name), rel_tol=1e-9, abs_tol=1e-15):
            return False
    return a.max_lag == b.max_lag and a.component_weights == b.component_weights


def _epochs_compared(plan: Plan, from_epoch: int) -> list[int]:
    """Every epoch of the phase `from_epoch` is in, then the first, middle and last of each
    later phase (a modification's effect starts where it starts)."""
    index = plan.phase_index(from_epoch)
    epochs = list(range(from_epoch, plan.phase_ends[index] + 1))
    for later in range(index + 1, len(plan.phases)):
        first, last = plan.phase_start(later), plan.phase_ends[later]
        epochs += sorted({first, (first + last) // 2, last})
    return epochs


def plans_alike(a: Plan, b: Plan, from_epoch: int) -> bool:
    """Whether two plans give the same settings from `from_epoch` on (see `_epochs_compared`)."""
    return all(
        _alike(a.values_at(epoch, step, STEPS), b.values_at(epoch, step, STEPS))
        for epoch in _epochs_compared(a, from_epoch)
        for step in (0, STEPS // 2, STEPS - 1)
    )


def can_plateau(plan: Plan, from_epoch: int, patience: int) -> bool:
    """Whether a plateau rule could fire from `from_epoch` on: at a phase end before the last
    epoch, more than `patience` epochs after epoch 1 (the earliest a best can be)."""
    return any(
        from_epoch <= end < plan.total_epochs and end - 1 > patience for end in plan.phase_ends
    )


def rules_alike(
    a: dict[str, Any], b: dict[str, Any], plan: Plan, from_epoch: int, patience: int
) -> bool:
    """Whether the boundary rules two parameter sets switch on act alike from `from_epoch`."""
    first, second = MonitorRules.from_params(a, patience), MonitorRules.from_params(b, patience)
    plateau = (first.plateau_restart, first.plateau_factor if first.plateau_restart else None)
    other = (second.plateau_restart, second.plateau_factor if second.plateau_restart else None)
    if plateau != other and can_plateau(plan, from_epoch, patience):
        return False
    # the gap rule acts only above 1 (it multiplies weight decay and noise when the gap grew)
    return max(first.gap_regularise, 1.0) == max(second.gap_regularise, 1.0)


def changes_training(
    plan: Plan,
    before: dict[str, Any],
    after: dict[str, Any],
    from_epoch: int,
    components: Sequence[str],
    patience: int,
) -> bool:
    """Whether a member exploring from `before` (its donor's parameters, on the donor's
    `plan`) to `after` trains any differently from `from_epoch` on.

    Args:
        plan: the donor's plan at the exploit (its lineage so far).
        before: the donor's parameters; `after`: the explored ones.
        from_epoch: the first epoch after the exploit.
        components: the data's component names (for per-component weights).
        patience: epochs without a new best that make a plateau (TrainConfig.plateau_epochs).

    Returns:
        False where the explored parameters make the same plan and rules as the donor's.
    """
    if from_epoch > plan.total_epochs:
        return False
    donor = explored_plan(plan, before, from_epoch, components)
    copier = explored_plan(plan, after, from_epoch, components)
    return not (
        plans_alike(donor, copier, from_epoch)
        and rules_alike(before, after, plan, from_epoch, patience)
    )


def _probes(space: SearchSpace, seed: int) -> list[dict[str, Any]]:
    """Members to try: each parameter at its bounds (a switch on) with the others neutral, and
    32 drawn at random (not the population's Latin hypercube: scipy's import would cost the
    launch ~2 s before Ray starts)."""
    rng = random.Random(seed)
    members = [space.sample(rng) for _ in range(32)]
    neutral = space.neutral()
    for param in space.params:
        ends = [True] if param.type == "bool" else [*param.values] or [param.low, param.high]
        members += [{**neutral, param.name: param.clamp(end)} for end in ends]
    return members


def _why_inert(names: set[str], plan: Plan, rounds: Sequence[int], patience: int) -> list[str]:
    """What each switch of a space needs to act, for the message."""
    hints = []
    if "lr_restart" in names and not names & {"lr_restart_factor", "lr_restart_period"}:
        hints.append(
            "lr_restart alone restarts the lr to 1x the phase's peak, which at a phase start is "
            "the plan itself: add lr_restart_factor or lr_restart_period"
        )
    for factor, switch in (
        ("lr_restart_factor", "lr_restart"),
        ("lr_restart_period", "lr_restart"),
        ("plateau_restart_factor", "plateau_restart"),
    ):
        if factor in names and switch not in names:
            hints.append(f"{factor} acts only with {switch} in the space: add {switch}")
    if names & {"plateau_restart", "plateau_restart_factor"} and not can_plateau(
        plan, min(rounds) + 1, patience
    ):
        hints.append(
            f"plateau_restart acts only at a round more than {patience} epochs after the best "
            f"epoch, and this plan's last round is at epoch {max(rounds)}: lengthen the phases"
        )
    return hints


def default_levers() -> list[str]:
    """The default space's plan parameters, each named as it changes the plan by itself
    (`lr_restart_factor with lr_restart`): what the refusal of an inert space suggests."""
    out = []
    for param in load_space(None, "modifications.yaml", "pbt").params:
        known = registry.lookup(param.name)
        if known is None or known.target != "modification" or known.is_switch:
            continue
        switch = "lr_restart" if param.name.startswith("lr_restart_") else None
        out.append(f"{param.name} with {switch}" if switch else param.name)
    return out


def refuse_inert_space(
    space: SearchSpace,
    plan: Plan,
    interval: int,
    components: Sequence[str],
    patience: int,
    seed: int = 0,
) -> None:
    """Refuse a space in which no member trains differently from the control (the plan as
    written) after any round: such a search only ever copies weights between identical runs.

    Args:
        space: the space, expanded per component.
        plan: the plan the search runs.
        interval: epochs between rounds (rounds at its multiples before the plan's end).
        components: the data's component names.
        patience: epochs without a new best that make a plateau.
        seed: the seed of the members tried.

    Raises:
        InputError: naming what each switch needs to act, and what to add.
    """
    rounds = list(range(interval, plan.total_epochs, interval))
    if not rounds or not space.params:
        return
    neutral = space.neutral()
    if any(
        changes_training(plan, neutral, member, epoch + 1, components, patience)
        for member in _probes(space, seed)
        for epoch in rounds
    ):
        return
    names = {param.name for param in space.params}
    hints = "; ".join(_why_inert(names, plan, rounds, patience))
    levers = ", ".join(default_levers())
    raise InputError(
        f"--space {space.source}: no member this space can draw trains any differently from the "
        f"control (the plan as written) after a round, so the search would only copy weights"
        f"{': ' + hints if hints else ''}. Add a parameter that changes the plan by itself "
        f"(the default space's {levers}; or any of search_spaces/modifications_full.yaml)"
    )
