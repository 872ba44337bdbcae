"""Can a trial's resources ever be granted? Checked before a run starts, so no trial waits in
PENDING forever (Tune keeps an unplaceable trial pending without a word).

- Local Ray (no --address): the machine's CPUs and GPUs, before Ray starts or anything is
  written; a request beyond them is bad input (exit 2).
- A cluster (--address): the largest node's resources once connected (a trial runs on one node).
  If no node fits, the autoscaler (if any) is asked for one, and the check waits at most
  `wait_s` seconds before giving up with the same kind of message.
"""

from __future__ import annotations

import os
import time

import ray
import torch

from tune_app.errors import InputError
from tune_app.tune.cluster import target

__all__ = ["check_cluster", "check_local", "check_resources", "machine_resources"]


def _plural(count: float, noun: str) -> str:
    number = f"{count:g}"
    return f"{number} {noun}" if count == 1 else f"{number} {noun}s"


def machine_resources() -> tuple[int, int]:
    """The CPUs this process may use and the GPUs torch sees: what a local Ray would offer."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return cpus, torch.cuda.device_count()


def _refusal(where: str, cpus: float, gpus: float, have_cpus: float, have_gpus: float) -> str:
    problems = []
    if cpus > have_cpus:
        problems.append(f"--cpus-per-trial {cpus:g} but {where} has {_plural(have_cpus, 'CPU')}")
    if gpus > have_gpus:
        have = _plural(have_gpus, "GPU") if have_gpus else "no GPU"
        problems.append(f"--gpus-per-trial {gpus:g} but {where} has {have}")
    return "; ".join(problems)


def check_local(cpus: float, gpus: float) -> None:
    """Refuse (InputError) per-trial resources beyond this machine, before Ray starts."""
    have_cpus, have_gpus = machine_resources()
    problem = _refusal("this machine", cpus, gpus, have_cpus, have_gpus)
    if problem:
        raise InputError(
            f"{problem}: the trial could never start; ask for at most {have_cpus:g} CPUs"
            f"{f' and {have_gpus} GPUs' if have_gpus else ' and no GPU'} per trial, "
            "or run on a cluster with --address"
        )


def _largest_node() -> tuple[float, float]:
    """The most CPUs and GPUs any one alive node of the connected cluster has."""
    alive = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    best_cpus = max((r.get("CPU", 0.0) for r in alive), default=0.0)
    best_gpus = max((r.get("GPU", 0.0) for r in alive), default=0.0)
    return best_cpus, best_gpus


def _fits(cpus: float, gpus: float) -> bool:
    return any(
        node["Resources"].get("CPU", 0.0) >= cpus and node["Resources"].get("GPU", 0.0) >= gpus
        for node in ray.nodes()
        if node.get("Alive")
    )


def check_cluster(cpus: float, gpus: float, where: str, wait_s: float, poll_s: float = 2.0) -> None:
    """Refuse (InputError) per-trial resources that no node of the connected cluster has,
    after asking the autoscaler and waiting at most `wait_s` seconds for such a node."""
    if _fits(cpus, gpus):
        return
    bundle = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
    asked = False
    if wait_s > 0:
        try:
            from ray.autoscaler.sdk import request_resources

            request_resources(bundles=[bundle])
            asked = True
        except Exception:  # no autoscaler API on this cluster: just wait
            pass
        need = _plural(cpus, "CPU") + (f" and {_plural(gpus, 'GPU')}" if gpus else "")
        print(
            f"tune-app: no node of {where} has {need} for one trial; waiting up to "
            f"{wait_s:g} s for one (--wait-for-resources)",
            flush=True,
        )
    deadline = time.monotonic() + wait_s
    try:
        while time.monotonic() < deadline:
            time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
            if _fits(cpus, gpus):
                return
    finally:
        if asked:
            from ray.autoscaler.sdk import request_resources

            request_resources(bundles=[])
    have_cpus, have_gpus = _largest_node()
    problem = _refusal(f"the largest node of {where}", cpus, gpus, have_cpus, have_gpus)
    raise InputError(
        f"{problem} (waited {wait_s:g} s); a trial runs on one node, so it could never start: "
        "lower --cpus-per-trial/--gpus-per-trial, add a bigger node, or wait longer with "
        "--wait-for-resources SECONDS"
    )


def check_resources(address: str | None, cpus: float, gpus: float, wait_s: float) -> None:
    """The check that fits where the run goes (see the module doc). For a cluster it joins it
    first (`init_ray`), which the run then reuses. No --address: RAY_ADDRESS, as Ray reads it."""
    address = target(address)
    if address is None and not ray.is_initialized():
        check_local(cpus, gpus)
        return
    from tune_app.tune.runner import init_ray

    init_ray(address)
    check_cluster(
        cpus,
        gpus,
        f"the cluster at {address}" if address else "this Ray",
        wait_s if address else 0.0,
    )
