"""The hand-written backward pass for the GRU encoder and decoder (`gru_bptt`): same outputs as
torch's modules bit for bit, gradients equal to autograd's (gradcheck in float64), and used only
where it applies."""

from __future__ import annotations

import pytest
import torch

from tune_app.training import gru_bptt
from tune_app.training.model import ModelConfig, Seq2Seq


def _model(components: int = 3, hidden: int = 16, dtype: torch.dtype = torch.float32) -> Seq2Seq:
    torch.manual_seed(0)
    return Seq2Seq(ModelConfig(components=components, hidden=hidden)).to(dtype)


def _run(model: Seq2Seq, by_hand: bool, x, y, teacher_forcing: float, noise: float):  # type: ignore[no-untyped-def]
    """Outputs and parameter gradients of an MSE loss, through one path or the other."""
    model._bptt_by_hand = lambda _x: by_hand  # type: ignore[method-assign]
    generator = torch.Generator().manual_seed(3)
    pred = model(
        x, y.shape[1], target=y, teacher_forcing=teacher_forcing, noise=noise, generator=generator
    )
    grads = torch.autograd.grad((pred - y).square().mean(), list(model.parameters()))
    return pred.detach(), grads


@pytest.mark.parametrize(
    ("batch", "steps_in", "steps_out", "teacher_forcing", "noise"),
    [(64, 48, 24, 0.0, 0.0), (64, 48, 24, 0.5, 0.05), (7, 5, 3, 1.0, 0.0), (1, 2, 1, 0.3, 0.1)],
)
def test_outputs_equal_torch_modules_and_gradients_equal_autograd(
    batch, steps_in, steps_out, teacher_forcing, noise
):
    model = _model()
    model.train()
    x, y = torch.randn(batch, steps_in, 3), torch.randn(batch, steps_out, 3)
    pred_torch, grads_torch = _run(model, False, x, y, teacher_forcing, noise)
    pred_hand, grads_hand = _run(model, True, x, y, teacher_forcing, noise)
    assert torch.equal(pred_torch, pred_hand)  # the same arithmetic in the same order
    for (name, _), a, b in zip(model.named_parameters(), grads_torch, grads_hand, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=name)


def test_encoder_gradients_pass_gradcheck():
    gru = torch.nn.GRU(2, 4, batch_first=True).double()
    x = torch.randn(3, 5, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, *w: gru_bptt._Encode.apply(x, *w), (x, *gru.parameters())
    )


@pytest.mark.parametrize("teacher_forcing", [None, 0.5])
def test_decoder_gradients_pass_gradcheck(teacher_forcing):
    torch.manual_seed(1)
    gru = torch.nn.GRU(2, 4, batch_first=True).double()
    head = torch.nn.Linear(4, 2).double()
    first = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    state = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    target = torch.randn(3, 4, 2, dtype=torch.float64)
    mask = None if teacher_forcing is None else torch.rand(3, 4, 1) < teacher_forcing

    def decode(first, state, *weights):  # type: ignore[no-untyped-def]
        return gru_bptt._Decode.apply(first, state, target, mask, *weights, 4)

    inputs = (first, state, *gru.parameters(), *head.parameters())
    assert torch.autograd.gradcheck(decode, inputs)


@pytest.mark.parametrize(
    ("config", "grad", "expected"),
    [
        (ModelConfig(), True, True),
        (ModelConfig(), False, False),
        (ModelConfig(cell="lstm"), True, False),
        (ModelConfig(layers=2), True, False),
        (ModelConfig(dropout=0.1), True, False),
    ],
)
def test_used_only_for_one_layer_gru_training_on_cpu(config, grad, expected):
    model = Seq2Seq(config)
    with torch.set_grad_enabled(grad):
        assert model._bptt_by_hand(torch.zeros(1, 2, config.components)) is expected
