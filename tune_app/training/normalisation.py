"""The z-score statistics a model was trained with, stored with it and applied to any later data.

A model maps z-scored inputs to z-scored outputs, so data it is evaluated on, generates from or
resumes on must be z-scored with the *training* statistics: normalising a file with its own
statistics shifts every forecast (a file holding one series has another mean than the training
set). `Normalisation` holds the component names (the order of the model's channels) and the
per-component mean and standard deviation of the train parts, computed in float64 from float64
values, so a component near 1e12 keeps its spread. No torch here: `runs/records.py` carries it in
checkpoint and export records.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CONSTANT_RELATIVE", "Normalisation", "is_constant"]

# A standard deviation below this fraction of the values' magnitude is rounding, not variation:
# the float64 mean of N equal values is off by about log2(N) * 2.2e-16 of their size, which
# leaves a std of ~1e-14 of it; a real spread of one part in 1e12 is kept (1e12 + x * 1e3 has a
# relative spread of 1e-9). An absolute threshold would call a component in units of 1e-10
# constant.
CONSTANT_RELATIVE = 1e-12


def is_constant(std: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Which components do not vary, relative to their scale.

    Args:
        std: [C] standard deviations.
        scale: [C] the largest absolute value of each component.

    Returns:
        [C] bool: std is at most `CONSTANT_RELATIVE` x scale (0 for an all-zero component).
    """
    return np.asarray(std) <= CONSTANT_RELATIVE * np.asarray(scale)


@dataclass(frozen=True)
class Normalisation:
    """Per-component z-score statistics, as used in training (a constant component's std is 1:
    it is centred, not blown up).

    Attributes:
        components: the component names, in the model's channel order.
        mean: [C] means of the train parts, float64.
        std: [C] standard deviations (population, ddof 0) of the train parts, float64.
    """

    components: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, train_parts: Sequence[np.ndarray], components: Sequence[str]) -> Normalisation:
        """The statistics of the train parts of every series together.

        Args:
            train_parts: per series, [T_i, C] values (any float type; summed in float64).
            components: the C component names.

        Returns:
            The statistics; a component that does not vary (`is_constant`) gets std 1.
        """
        stacked = np.concatenate([np.asarray(p, dtype=np.float64) for p in train_parts])
        mean = stacked.mean(axis=0)
        std = stacked.std(axis=0)
        std[is_constant(std, np.abs(stacked).max(axis=0))] = 1.0
        return cls(tuple(components), tuple(map(float, mean)), tuple(map(float, std)))

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Z-scores of values in the data's units: the mean is subtracted in float64 before the
        float32 cast, so large offsets keep their digits.

        Args:
            values: [..., C] values, C the statistics' components in their order.

        Returns:
            [..., C] float32 z-scores.
        """
        centred = np.asarray(values, dtype=np.float64) - np.asarray(self.mean)
        return (centred / np.asarray(self.std)).astype(np.float32)

    def invert(self, z: np.ndarray) -> np.ndarray:
        """Values in the data's units from z-scores.

        Args:
            z: [..., C] z-scores.

        Returns:
            [..., C] float64 values.
        """
        return np.asarray(z, dtype=np.float64) * np.asarray(self.std) + np.asarray(self.mean)

    def cast_notes(self, values: Sequence[np.ndarray]) -> list[str]:
        """A line for each component whose z-scores lose part of their variation in the float32
        cast: values so far from the mean, in standard deviations, that float32 cannot hold
        their spread (data far outside the range a model was trained on).

        Args:
            values: per series, [T_i, C] values in the data's units.

        Returns:
            One line per such component (none in the usual case; none for a component that is
            constant in these values, relative to its scale (`is_constant`): float64's rounding
            noise of a constant is no spread to lose).
        """
        notes = []
        for c, name in enumerate(self.components):
            column = np.concatenate([np.asarray(v[:, c], dtype=np.float64) for v in values])
            if column.size == 0 or is_constant(column.std(), np.abs(column).max()):
                continue
            z64 = (column - self.mean[c]) / self.std[c]
            exact = float(z64.std())
            kept = float(z64.astype(np.float32).astype(np.float64).std())
            if exact > 0 and abs(kept - exact) > 0.01 * exact:
                notes.append(
                    f"component {name!r}: its values lie up to {float(np.abs(z64).max()):.3g} "
                    "standard deviations from the training mean, too far for float32 to keep "
                    f"their spread (std {kept:.4g} instead of {exact:.4g} in z-units); "
                    "forecasts of it are unreliable"
                )
        return notes

    def to_dict(self) -> dict[str, Any]:
        """The statistics as plain data, as checkpoints and exports store them.

        Returns:
            {"components": names, "mean": per-component means, "std": per-component standard
            deviations}, lists in the components' order.
        """
        return {
            "components": list(self.components),
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, raw: Any) -> Normalisation | None:
        """The statistics as a checkpoint or export stored them.

        Args:
            raw: `to_dict`'s mapping, or whatever an older file holds there (None, ...).

        Returns:
            The statistics; None when absent or unusable (a checkpoint from before they were
            stored, a length mismatch, a non-finite mean or a standard deviation <= 0).
        """
        if not isinstance(raw, dict):
            return None
        try:
            names = tuple(str(name) for name in raw["components"])
            mean = tuple(float(v) for v in raw["mean"])
            std = tuple(float(v) for v in raw["std"])
        except (KeyError, TypeError, ValueError):
            return None
        usable = all(math.isfinite(v) for v in mean) and all(
            math.isfinite(v) and v > 0 for v in std
        )
        if not names or not len(names) == len(mean) == len(std) or not usable:
            return None
        return cls(names, mean, std)
