"""The combined loss against a plain reference, gradients, and the alpha = 1 identity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from statsmodels.tsa.stattools import acf

from tune_app.training.loss import autocorrelation, combined_loss


def _reference_acf(x: np.ndarray, lags: int) -> np.ndarray:
    """Plain numpy: biased autocovariance over autocovariance at lag 0."""
    centred = x - x.mean()
    c0 = (centred * centred).sum()
    return np.array([(centred[:-k] * centred[k:]).sum() / c0 for k in range(1, lags + 1)])


@pytest.mark.parametrize(("steps", "max_lag"), [(24, 10), (24, 20), (8, 20), (2, 5), (31, 30)])
def test_autocorrelation_matches_numpy_and_statsmodels(steps, max_lag):
    torch.manual_seed(steps)
    x = torch.randn(3, steps, 2, dtype=torch.float64).cumsum(1)
    got = autocorrelation(x, max_lag).numpy()
    lags = min(max_lag, steps - 1)
    assert got.shape == (3, 2, lags)
    for b in range(3):
        for c in range(2):
            series = x[b, :, c].numpy()
            np.testing.assert_allclose(got[b, c], _reference_acf(series, lags), atol=1e-7)
            np.testing.assert_allclose(got[b, c], acf(series, nlags=lags, fft=True)[1:], atol=1e-7)


def test_combined_loss_reference_value():
    torch.manual_seed(0)
    pred, target = (
        torch.randn(4, 12, 3, dtype=torch.float64),
        torch.randn(4, 12, 3, dtype=torch.float64),
    )
    alpha, lag = 0.7, 5
    parts = combined_loss(pred, target, alpha, lag)
    mse = ((pred - target) ** 2).mean().item()
    temporal = np.mean(
        [
            np.mean(
                [
                    (
                        _reference_acf(pred[b, :, c].numpy(), lag)
                        - _reference_acf(target[b, :, c].numpy(), lag)
                    )
                    ** 2
                    for b in range(4)
                ]
            )
            for c in range(3)
        ]
    )
    assert parts.mse.item() == pytest.approx(mse)
    assert parts.temporal.item() == pytest.approx(temporal, rel=1e-6)
    assert parts.total.item() == pytest.approx(alpha * mse + (1 - alpha) * temporal, rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alpha_one_is_mse_exactly(seed):
    torch.manual_seed(seed)
    pred, target = torch.randn(5, 24, 3), torch.randn(5, 24, 3)
    assert (
        combined_loss(pred, target, 1.0, 20).total.item()
        == torch.nn.functional.mse_loss(pred, target).item()
    )


def test_component_weights_weigh_components():
    pred, target = torch.zeros(2, 10, 2), torch.zeros(2, 10, 2)
    target[..., 1] = 1.0  # only component 1 is wrong
    even = combined_loss(pred, target, 1.0, 3, (1.0, 1.0)).total.item()
    heavy = combined_loss(pred, target, 1.0, 3, (1.0, 3.0)).total.item()
    assert heavy == pytest.approx(0.75) and even == pytest.approx(0.5)
    with pytest.raises(ValueError, match="component_weights"):
        combined_loss(pred, target, 1.0, 3, (1.0,))


def test_gradcheck():
    torch.manual_seed(0)
    pred = torch.randn(2, 9, 2, dtype=torch.float64, requires_grad=True)
    target = torch.randn(2, 9, 2, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda p: combined_loss(p, target, 0.4, 4, (1.0, 2.0)).total, (pred,)
    )
