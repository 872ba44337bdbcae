"""Scheduled sampling, noise only in training, free-running generation."""

from __future__ import annotations

import pytest
import torch

from tune_app.errors import InputError
from tune_app.training.model import ModelConfig, Seq2Seq


@pytest.fixture
def model() -> Seq2Seq:
    torch.manual_seed(0)
    return Seq2Seq(ModelConfig(components=2, hidden=8))


def _truth_fraction(model: Seq2Seq, ratio: float) -> float:
    """Fraction of decoder inputs that were the truth. The truth at step t is 1000 * (t + 1), far
    from anything the model (a residual step from its previous input) could predict."""
    seen = []
    hook = model.decoder.register_forward_pre_hook(lambda _m, args: seen.append(args[0][:, 0, 0]))
    steps = 6
    x = torch.zeros(400, 5, 2)
    target = (1000.0 * torch.arange(1, steps + 1)).view(1, steps, 1).expand(400, steps, 2)
    with torch.no_grad():  # torch's modules (hooks see the decoder's inputs); test_gru_bptt.py
        model(x, steps, target=target, teacher_forcing=ratio)  # shows training's path equals them
    hook.remove()
    hits = [(seen[t] - 1000.0 * t).abs().lt(100) for t in range(1, steps)]
    return torch.stack(hits).float().mean().item()


@pytest.mark.parametrize(
    ("ratio", "low", "high"),
    [(0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (0.5, 0.45, 0.55), (0.3, 0.25, 0.35)],
)
def test_scheduled_sampling_ratio(model, ratio, low, high):
    assert low <= _truth_fraction(model, ratio) <= high


def test_sampling_is_per_sample_not_per_batch(model):
    seen = []
    model.decoder.register_forward_pre_hook(
        lambda _m, args: seen.append(args[0][:, 0, 0].abs().gt(500))
    )
    with torch.no_grad():
        model(
            torch.zeros(200, 5, 2), 3, target=torch.full((200, 3, 2), 1000.0), teacher_forcing=0.5
        )
    mixed = seen[1]  # the first decision: truth (1000) or the first prediction (near 0)
    assert 0 < mixed.sum() < len(mixed)


def test_noise_only_in_training(model):
    x = torch.randn(4, 5, 2)
    model.eval()
    assert torch.equal(model(x, 3, noise=0.5), model(x, 3, noise=0.5))
    model.train()
    assert not torch.equal(model(x, 3, noise=0.5), model(x, 3, noise=0.5))
    assert torch.equal(model(x, 3, noise=0.0), model(x, 3, noise=0.0))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_shapes(cell):
    net = Seq2Seq(ModelConfig(components=3, hidden=8, layers=2, dropout=0.1, cell=cell))
    assert net(torch.randn(7, 10, 3), 4).shape == (7, 4, 3)


@pytest.mark.parametrize("bad", [{"cell": "rnn"}, {"hidden": 0}, {"dropout": 1.5}, {"colour": 1}])
def test_bad_model_config(bad):
    with pytest.raises(InputError, match="model config"):
        ModelConfig.from_dict(bad)
