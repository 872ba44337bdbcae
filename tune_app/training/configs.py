"""A run's model, data and trainer settings, as plain frozen dataclasses: their defaults are
defined here and nowhere else (the command line's flags default to None and name these).

No torch, numpy or pandas here, so the command line can build its parser (and show these
defaults in `--help`) without importing them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tune_app.errors import InputError

__all__ = ["CELL_NAMES", "DataConfig", "ModelConfig", "TrainConfig"]

CELL_NAMES = ("gru", "lstm")  # the recurrent cells `model.Seq2Seq` builds


@dataclass(frozen=True)
class ModelConfig:
    """The encoder-decoder's shape (`model.Seq2Seq`): components in and out, hidden units,
    recurrent layers, dropout between layers and on the decoder's output, and the cell.

    Raises:
        InputError: an unknown cell, a size below 1, or dropout outside [0, 1).
    """

    components: int = 3
    hidden: int = 64
    layers: int = 1
    dropout: float = 0.0
    cell: str = "gru"

    def __post_init__(self) -> None:
        problems = []
        if self.cell not in CELL_NAMES:
            problems.append(f"cell: {self.cell!r} is not one of {', '.join(CELL_NAMES)}")
        if self.hidden < 1 or self.layers < 1 or self.components < 1:
            problems.append(
                f"hidden, layers and components must be >= 1 (got {self.hidden}, {self.layers}, {self.components})"
            )
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout: must lie in [0, 1) (got {self.dropout})")
        if problems:
            raise InputError("model config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data.

        Returns:
            Field name -> value.
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelConfig:
        """The config `to_dict` gave, or a model config file's model fields.

        Args:
            raw: field name -> value; a field left out takes its default.

        Returns:
            The config.

        Raises:
            InputError: a key that is not a field (each named, with the known ones).
        """
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise InputError(
                f"model config: unknown key(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(cls.__dataclass_fields__)}"
            )
        return cls(**raw)


@dataclass(frozen=True)
class DataConfig:
    """How a table becomes windows (`data.build_dataset`): input and output lengths and the
    stride in steps, the train and validation fractions of each series, the component columns
    (None: all) and how gaps are filled (None: refused)."""

    input_len: int = 48
    output_len: int = 24
    stride: int = 1
    train_frac: float = 0.70
    val_frac: float = 0.15
    components: tuple[str, ...] | None = None
    fill: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data (components as a list).

        Returns:
            Field name -> value.
        """
        out = dict(self.__dict__)
        out["components"] = list(self.components) if self.components else None
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DataConfig:
        """The config `to_dict` gave.

        Args:
            raw: field name -> value; a field left out takes its default.

        Returns:
            The config.
        """
        raw = dict(raw)
        if raw.get("components"):
            raw["components"] = tuple(raw["components"])
        return cls(**raw)


@dataclass(frozen=True)
class TrainConfig:
    """The trainer's settings (`trainer.train`): seed, batch size, extra checkpoints, the
    fixed reference objective that `val_free_loss` is measured with (alpha, max_lag), plateau
    patience in epochs, torch threads, device and the evaluation batch size."""

    seed: int = 0
    batch_size: int = 64
    checkpoint_every: int = 0  # extra checkpoints every N epochs; phase boundaries always
    rank_alpha: float = 0.6  # the fixed reference objective for val_free_loss (the seed's final)
    rank_max_lag: int = 20
    plateau_epochs: int = 30
    threads: int = 1  # fixed, so a run gives the same numbers in any process
    device: str = "cpu"
    eval_batch_size: int = 2048

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data.

        Returns:
            Field name -> value.
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        """The config `to_dict` gave; keys that are not fields (an older run's) are dropped.

        Args:
            raw: field name -> value; a field left out takes its default.

        Returns:
            The config.
        """
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})
