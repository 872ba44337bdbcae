"""Tiny shapes shared by the tests, so the default suite stays fast."""

from tune_app.training.data import DataConfig
from tune_app.training.model import ModelConfig
from tune_app.training.trainer import TrainConfig

TINY_DATA = DataConfig(input_len=16, output_len=8, stride=4)
TINY_MODEL = ModelConfig(components=3, hidden=16)
TINY_TRAIN = TrainConfig(seed=0, batch_size=32)
