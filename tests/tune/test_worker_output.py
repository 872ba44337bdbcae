"""What Ray's workers write reaches the terminal while a run trains, and not once `fit` has
returned (CI stop 29: a trial worker's "Exception ignored ... SystemExit: 1", written as Ray
stopped it, was printed after tune-app's last line)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys, time
    import ray
    from types import SimpleNamespace
    from tune_app.tune.interrupt import fit
    from tune_app.tune.runner import init_ray

    init_ray(None)  # the runner's own: log_to_driver, a LoggingConfig (no pid prefix)

    @ray.remote
    class Worker:
        def say(self, text):
            print(text, file=sys.stderr, flush=True)

    worker = Worker.remote()

    class Tuner:  # stands for tune.Tuner: its workers write while fit runs
        def fit(self):
            ray.get(worker.say.remote("DURING-FIT"))
            time.sleep(3)  # Ray's log monitor forwards a worker's lines within ~1 s
            return "grid"

    assert fit(Tuner(), SimpleNamespace(name="r"), "unused") == "grid"
    ray.get(worker.say.remote("AFTER-FIT"))
    time.sleep(3)
    print("END", file=sys.stderr, flush=True)
    """
)


@pytest.mark.slow  # its own Ray: ~17 s here, more on CI's 2 cores
def test_workers_are_shown_while_fit_runs_and_not_after(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DURING-FIT" in done.stderr, done.stderr[-3000:]
    assert "AFTER-FIT" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.rstrip().endswith("END")
