"""`certify --ablate`'s plans: the winner's plan with one family of modifications removed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tune_app.plan.ablation import FAMILIES, families_in, without
from tune_app.plan.modifications import CurriculumPacing, LrRestart, Modification
from tune_app.plan.plan import load_plan

SEED = load_plan(phase_epochs=4)  # 5 phases of 4 epochs
EXPLORED = Modification(
    from_epoch=5,
    alpha_shift=-0.1,
    teacher_forcing_shift=0.2,
    lr_restart=LrRestart(period=2, factor=1.5),
    curriculum=CurriculumPacing(start=0.5, epochs=2),
    component_weights=(1.2, 0.8, 1.0),
    lr_scale=1.5,
    weight_decay_scale=2.0,
    noise_scale=0.5,
    grad_clip_scale=0.8,
)
# the gap rule's change at the boundary after epoch 8: the explored one restated, regularised
RULE = Modification(
    from_epoch=9,
    alpha_shift=-0.1,
    teacher_forcing_shift=0.2,
    lr_restart=LrRestart(period=2, factor=1.5),
    component_weights=(1.2, 0.8, 1.0),
    regularisation=1.5,
    lr_scale=1.5,
    weight_decay_scale=2.0,
    noise_scale=0.5,
    grad_clip_scale=0.8,
)
WINNER = SEED.apply(EXPLORED).apply(RULE)


def test_every_family_the_winner_uses_is_a_candidate():
    assert families_in(WINNER, rule_epochs=[9]) == list(FAMILIES)
    assert families_in(WINNER) == list(FAMILIES)[:-1]  # no rule wrote a modification
    assert families_in(SEED) == []
    only_alpha = SEED.apply(Modification(from_epoch=5, alpha_shift=0.1))
    assert families_in(only_alpha) == ["alpha"]


@pytest.mark.parametrize(
    ("family", "field", "neutral"),
    [
        ("alpha", "alpha_shift", 0.0),
        ("teacher forcing", "teacher_forcing_shift", 0.0),
        ("lr restarts", "lr_restart", None),
        ("curriculum", "curriculum", None),
        ("component weights", "component_weights", None),
        ("lr scale", "lr_scale", 1.0),
        ("weight decay scale", "weight_decay_scale", 1.0),
        ("noise scale", "noise_scale", 1.0),
        ("grad clip scale", "grad_clip_scale", 1.0),
    ],
)
def test_a_family_removed_sets_its_field_neutral_everywhere_and_keeps_the_rest(
    family, field, neutral
):
    ablated = without(WINNER, family, rule_epochs=[9])
    assert [m.from_epoch for m in ablated.modifications] == [5, 9]
    for before, after in zip(WINNER.modifications, ablated.modifications, strict=True):
        assert getattr(after, field) == neutral
        others = [f for f in FAMILIES.values() if f and f != field]
        assert all(getattr(after, f) == getattr(before, f) for f in others)
        assert after.regularisation == before.regularisation
    assert ablated.phases == WINNER.phases
    assert ablated.fingerprint not in (WINNER.fingerprint, SEED.fingerprint)


def test_the_seeds_own_levers_are_families_like_the_other_modifications():
    """A winner that only scaled the plan's learning rate (the seed's "adjust the learning
    rate" lever, as PBT sets it from the search space) has that family, and removing it gives
    back the plan as written; each lever is a family of its own."""
    from tune_app.plan import registry

    assert [FAMILIES[name.replace("_", " ")] for name in registry.SCALES] == list(registry.SCALES)
    for name in registry.SCALES:
        plan = SEED.apply(Modification(from_epoch=5, **{name: 2.0}))
        family = name.replace("_", " ")
        assert families_in(plan) == [family]
        assert without(plan, family).fingerprint == SEED.fingerprint
    scaled = SEED.apply(Modification(from_epoch=5, lr_scale=0.5, alpha_shift=0.1))
    assert families_in(scaled) == ["alpha", "lr scale"]
    assert (
        without(scaled, "lr scale").values_at(6).lr
        == SEED.apply(Modification(from_epoch=5, alpha_shift=0.1)).values_at(6).lr
    )


def test_removing_the_boundary_rules_drops_what_they_wrote():
    ablated = without(WINNER, "boundary rules", rule_epochs=[9])
    assert ablated.modifications == (EXPLORED,)
    # from epoch 9 on the explored modification stays in force, without more regularisation
    assert ablated.values_at(12).weight_decay == SEED.apply(EXPLORED).values_at(12).weight_decay


def test_a_plan_ablated_down_to_nothing_is_the_plan_as_written():
    only_alpha = SEED.apply(Modification(from_epoch=5, alpha_shift=0.1))
    ablated = without(only_alpha, "alpha")
    assert ablated.modifications == ()
    assert ablated.fingerprint == SEED.fingerprint


def test_an_identity_that_ends_a_modification_is_kept():
    plan = SEED.apply(Modification(from_epoch=5, alpha_shift=0.1)).apply(
        Modification(from_epoch=9, teacher_forcing_shift=0.1)
    )
    ablated = without(plan, "teacher forcing")
    # epochs 9.. go back to the plan as written: the identity from 9 ends the alpha shift
    assert [m.from_epoch for m in ablated.modifications] == [5, 9]
    assert ablated.values_at(10).alpha == SEED.values_at(10).alpha


def test_the_fingerprint_ignores_the_name_only():
    renamed = replace(SEED, name="my_plan")
    assert renamed.fingerprint == SEED.fingerprint
    assert load_plan(phase_epochs=2).fingerprint != SEED.fingerprint
    assert len(SEED.fingerprint) == 12
