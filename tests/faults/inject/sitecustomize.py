"""Fault injection for tests/faults/, loaded by every Python process started with this folder on
PYTHONPATH (the driver and Ray's workers):

- TUNE_APP_TEST_DIVERGE_MEMBER (test_divergence.py): the trial whose member index it names
  reports a non-finite loss from epoch TUNE_APP_TEST_DIVERGE_EPOCH on, exactly as the trainer does
  when training really diverges;
- TUNE_APP_TEST_SLOW_WRITES (test_output_failures.py): every atomic write then waits that many
  seconds, so a test can press Ctrl-C while `best` or `report` is half done.
"""

import os

if os.environ.get("TUNE_APP_TEST_SLOW_WRITES"):
    import time

    import tune_app.training.checkpoint as checkpoint

    pause = float(os.environ["TUNE_APP_TEST_SLOW_WRITES"])
    real_write = checkpoint.atomic_write_bytes

    def slow_write(path, data):
        real_write(path, data)
        time.sleep(pause)

    checkpoint.atomic_write_bytes = slow_write

if os.environ.get("TUNE_APP_TEST_DIVERGE_MEMBER"):
    try:
        import tune_app.tune.trainable as trainable
    except ImportError:  # a helper process without the package
        trainable = None
    if trainable is not None:
        from tune_app.errors import DivergedError

        member = int(os.environ["TUNE_APP_TEST_DIVERGE_MEMBER"])
        at_epoch = int(os.environ.get("TUNE_APP_TEST_DIVERGE_EPOCH", "3"))
        from tune_app.training.monitors import Callback

        real_run_trial, real_train = trainable.run_trial, trainable.train

        class Diverge(Callback):  # first in line: the epoch is never saved nor reported
            def on_epoch_end(self, metrics, state):
                if metrics["epoch"] >= at_epoch:
                    raise DivergedError(int(metrics["epoch"]), float("nan"), None)

        def diverging_train(*args, callbacks=(), **kwargs):
            return real_train(*args, callbacks=[Diverge(), *callbacks], **kwargs)

        def run_trial(config, table):
            diverges = config.get("member", {}).get("index") == member
            trainable.train = diverging_train if diverges else real_train
            return real_run_trial(config, table)

        trainable.run_trial = run_trial
