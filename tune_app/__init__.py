"""tune_app: a multi-phase training plan for a seq2seq sequence generator, run and searched with Ray Tune."""

__version__ = "0.1.0"
