"""The plan's combined loss: alpha * MSE + (1 - alpha) * temporal.

temporal compares autocorrelations: for every sequence and component, the autocorrelation at lags
1..min(max_lag, T-1) (computed with an FFT, biased estimator as statsmodels' `acf`), then the mean
squared difference between prediction and target. Optional per-component weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["LossParts", "autocorrelation", "combined_loss"]

_EPS = 1e-8


@dataclass(frozen=True)
class LossParts:
    total: torch.Tensor  # scalar, the objective
    mse: torch.Tensor  # scalar
    temporal: torch.Tensor  # scalar
    per_component: torch.Tensor  # [C], alpha * mse_c + (1 - alpha) * temporal_c


def autocorrelation(x: torch.Tensor, max_lag: int) -> torch.Tensor:
    """The autocorrelation of each sequence along time, by FFT (zero-padded, so linear, not
    circular), each lag's autocovariance over the lag-0 one.

    Args:
        x: [B, T, C] sequences.
        max_lag: the largest lag; at most T - 1 are computed.

    Returns:
        [B, C, L] autocorrelations at lags 1..L, L = min(max_lag, T - 1).
    """
    steps = x.shape[1]
    lags = min(max_lag, steps - 1)
    centred = (x - x.mean(dim=1, keepdim=True)).transpose(1, 2)  # [B, C, T]
    size = 1 << (2 * steps - 1).bit_length()  # zero-pad: circular correlation becomes linear
    spectrum = torch.fft.rfft(centred, n=size)
    power = spectrum.real.square() + spectrum.imag.square()
    autocov = torch.fft.irfft(power, n=size)[..., : lags + 1]
    return autocov[..., 1:] / (autocov[..., :1] + _EPS)


def combined_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    alpha: float,
    max_lag: int,
    component_weights: tuple[float, ...] | None = None,
) -> LossParts:
    """The plan's loss `alpha * MSE + (1 - alpha) * temporal` of a prediction, where temporal is
    the mean squared difference of the autocorrelations (lags 1..max_lag) of prediction and
    target, per component.

    Args:
        pred: [B, T, C] predictions, in z-units.
        target: [B, T, C] targets, in z-units.
        alpha: the MSE's weight, in [0, 1].
        max_lag: the largest autocorrelation lag compared.
        component_weights: one weight per component (C of them): the total is then
            `sum(w_c * loss_c) / sum(w_c)`; None weighs the components alike.

    Returns:
        LossParts: total (the scalar objective), mse and temporal (scalars, unweighted) and
        per_component ([C], each component's `alpha * mse_c + (1 - alpha) * temporal_c`).

    Raises:
        ValueError: `component_weights` does not have one entry per component.
    """
    squared = (pred - target).square()
    mse_c = squared.mean(dim=(0, 1))
    if pred.shape[1] > 1:
        temporal_c = (
            (autocorrelation(pred, max_lag) - autocorrelation(target, max_lag))
            .square()
            .mean(dim=(0, 2))
        )
    else:
        temporal_c = torch.zeros_like(mse_c)
    per_component = alpha * mse_c + (1.0 - alpha) * temporal_c
    mse = squared.mean()
    temporal = temporal_c.mean()
    if component_weights is None:
        total = alpha * mse + (1.0 - alpha) * temporal
    else:
        if len(component_weights) != pred.shape[2]:
            raise ValueError(
                f"component_weights has {len(component_weights)} entries for {pred.shape[2]} components"
            )
        weights = torch.as_tensor(component_weights, dtype=pred.dtype, device=pred.device)
        total = (weights * per_component).sum() / weights.sum()
    return LossParts(total=total, mse=mse, temporal=temporal, per_component=per_component)
