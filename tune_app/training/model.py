"""Encoder-decoder sequence generator with scheduled sampling (teacher forcing) and input noise."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tune_app.training import gru_bptt
from tune_app.training.configs import CELL_NAMES, ModelConfig

__all__ = ["ModelConfig", "Seq2Seq"]

CELLS = dict(zip(CELL_NAMES, (nn.GRU, nn.LSTM), strict=True))  # the modules, by name


class Seq2Seq(nn.Module):
    """Reads `x` [B, T_in, C], generates `steps` next values [B, steps, C].

    The decoder predicts the change from its previous input (a residual step), which makes a
    persistence forecast the starting point rather than something to learn.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        cell = CELLS[config.cell]
        between = config.dropout if config.layers > 1 else 0.0
        self.encoder = cell(
            config.components, config.hidden, config.layers, batch_first=True, dropout=between
        )
        self.decoder = cell(
            config.components, config.hidden, config.layers, batch_first=True, dropout=between
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, config.components)

    def _bptt_by_hand(self, x: torch.Tensor) -> bool:
        """Training the default shape (one GRU layer, no dropout) on the CPU: `gru_bptt`'s
        hand-written backward pass, same forward values (an epoch 1.67x as fast, measured by
        benchmarks/trainer_overhead.py). Elsewhere (no
        gradients, LSTM, layers, dropout, CUDA's fused kernels) torch's modules."""
        config = self.config
        return (
            torch.is_grad_enabled()
            and x.device.type == "cpu"
            and config.cell == "gru"
            and config.layers == 1
            and config.dropout == 0.0
        )

    def encode(self, x: torch.Tensor) -> Any:
        """The encoder's final state, to share one encoding between several decodings of the same
        inputs (`forward`'s `encoded`).

        Args:
            x: [B, T_in, C] inputs, z-scored.

        Returns:
            torch's recurrent state: [layers, B, hidden] for a GRU, a (h, c) pair of them for an
            LSTM.
        """
        return self.encoder(x)[1]

    def forward(
        self,
        x: torch.Tensor,
        steps: int,
        target: torch.Tensor | None = None,
        teacher_forcing: float = 0.0,
        noise: float = 0.0,
        generator: torch.Generator | None = None,
        encoded: Any = None,
    ) -> torch.Tensor:
        """Generate `steps` values from x, each step fed back as the next input (free-running) or,
        with `teacher_forcing`, the truth instead.

        Args:
            x: [B, T_in, C] inputs, z-scored.
            steps: how many values to generate.
            target: [B, steps, C] truth, for teacher forcing (None: free-running).
            teacher_forcing: each step of each sample feeds the truth with this probability,
                else the model's own previous prediction (scheduled sampling; Bengio et al.,
                2015, "Scheduled Sampling for Sequence Prediction with Recurrent Neural Networks").
            noise: standard deviation of Gaussian noise added to the inputs (training only).
            generator: the random source for noise and teacher-forcing draws.
            encoded: `encode(x)`, when the caller already has it (no noise then).

        Returns:
            [B, steps, C] predictions, z-scored. Training one GRU layer without dropout on
            the CPU, the backward pass is `gru_bptt`'s hand-written one (same forward values).

        Raises:
            ValueError: `encoded` given with input noise while training (the noise would not
                reach the encoding).
        """
        if encoded is not None and noise > 0.0 and self.training:
            raise ValueError("encoded inputs cannot take input noise")
        if noise > 0.0 and self.training:
            x = x + noise * torch.randn(
                x.shape, generator=generator, device=x.device, dtype=x.dtype
            )
        mask = None
        if target is not None and teacher_forcing > 0.0:
            draws = torch.rand((x.shape[0], steps, 1), generator=generator, device=x.device)
            mask = draws < teacher_forcing
        if encoded is None and self._bptt_by_hand(x):
            state = gru_bptt.encode(x, self.encoder)
            return gru_bptt.decode(
                x[:, -1, :],
                state,
                self.decoder,
                self.head,
                steps,
                target,
                mask,
            )
        state = self.encode(x) if encoded is None else encoded
        previous = x[:, -1:, :]
        outputs = []
        for t in range(steps):
            hidden, state = self.decoder(previous, state)
            prediction = previous + self.head(self.dropout(hidden))
            outputs.append(prediction)
            if mask is not None:
                assert target is not None
                previous = torch.where(mask[:, t : t + 1], target[:, t : t + 1], prediction)
            else:
                previous = prediction
        return torch.cat(outputs, dim=1)
