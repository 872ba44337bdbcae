"""Ablation of a searched plan: the plan with one family of modifications removed at a time.

`tune-app certify --ablate` trains each such plan on the certificate's seeds and compares it with
the full winner's plan: a family whose removal makes the plan worse carried (part of) the gain.
The families are the search space's groups of parameters (`search_spaces/modifications.yaml`):

- alpha, teacher forcing: the shifts added to the plan's alpha and teacher-forcing ratio;
- lr restarts: every learning-rate warm restart in the modifications (a plateau rule's included);
- curriculum: the easy-to-hard pacing; component weights: the per-component loss weights;
- the seed's own levers (`registry.SCALES`), one family each: lr scale, weight decay scale,
  noise scale, grad clip scale (multipliers of the plan's schedules, set back to 1);
- boundary rules: the modifications a boundary rule wrote at a phase boundary (gap rule: more
  weight decay and noise; plateau rule: a warm restart), dropped, so that what was in force
  before each stays in force.

A family the plan does not use is not a candidate (`families_in`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

from tune_app.plan import registry
from tune_app.plan.modifications import Modification
from tune_app.plan.plan import Plan

__all__ = ["FAMILIES", "families_in", "without"]

# family -> the Modification field it sets (None: the boundary rules, found by epoch)
FAMILIES: dict[str, str | None] = {
    "alpha": "alpha_shift",
    "teacher forcing": "teacher_forcing_shift",
    "lr restarts": "lr_restart",
    "curriculum": "curriculum",
    "component weights": "component_weights",
    # "lr scale", "weight decay scale", "noise scale", "grad clip scale"
    **{name.replace("_", " "): name for name in registry.SCALES},
    "boundary rules": None,
}
_NEUTRAL = Modification(from_epoch=1)


def _uses(mod: Modification, field: str) -> bool:
    return bool(getattr(mod, field) != getattr(_NEUTRAL, field))


def families_in(plan: Plan, rule_epochs: Collection[int] = ()) -> list[str]:
    """The families of modifications `plan` uses, in `FAMILIES` order.

    Args:
        plan: a plan with modifications (a search winner's exported plan).
        rule_epochs: the `from_epoch` of each modification a boundary rule wrote (the lineage's
            segments whose cause is "rule").

    Returns:
        Family names; empty for a plan without modifications.
    """
    used = []
    for family, field in FAMILIES.items():
        if field is None:
            if any(m.from_epoch in rule_epochs for m in plan.modifications):
                used.append(family)
        elif any(_uses(m, field) for m in plan.modifications):
            used.append(family)
    return used


def without(plan: Plan, family: str, rule_epochs: Collection[int] = ()) -> Plan:
    """`plan` with one family of modifications removed (see the module doc).

    Args:
        plan: the plan.
        family: a key of `FAMILIES`.
        rule_epochs: as for `families_in`.

    Returns:
        A new plan; its phases are `plan`'s, its modifications those of `plan` with the family's
        field at its neutral value (boundary rules: the rules' modifications dropped); a
        modification left without effect where none was in force before is dropped too, so a
        plan ablated down to nothing is the plan as written (with its fingerprint).

    Raises:
        KeyError: an unknown family.
    """
    field = FAMILIES[family]
    kept: list[Modification] = []
    for mod in plan.modifications:
        if field is None:
            if mod.from_epoch in rule_epochs:
                continue
            kept.append(mod)
        else:
            kept.append(replace(mod, **{field: getattr(_NEUTRAL, field)}))
    cleaned: list[Modification] = []
    for mod in kept:
        # an identity modification ends the one before it: dropped only where none was in force
        if mod.is_identity and (not cleaned or cleaned[-1].is_identity):
            continue
        cleaned.append(mod)
    return replace(plan, modifications=tuple(cleaned))
