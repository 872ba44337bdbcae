"""A Ray run's manifest (`tune_app_run.json`, records.RunManifest), written before Ray starts:
what the run is, and the settings `--resume` goes on with."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from tune_app import __version__
from tune_app.runs.records import MANIFEST, RunManifest
from tune_app.training.metrics import RANK_METRIC, RANK_MODE

if TYPE_CHECKING:
    from tune_app.plan.search_space import SearchSpace
    from tune_app.runs.spec import RunSpec
    from tune_app.runs.storage import Location
    from tune_app.training.data import SeriesTable

__all__ = ["space_record", "write_manifest"]


def write_manifest(
    location: Location, kind: str, spec: RunSpec, table: SeriesTable, extra: dict[str, Any]
) -> None:
    """Write the run's manifest into its folder.

    Args:
        location: the run's folder.
        kind: "baseline", "search", "capacity" or "compare".
        spec: the run (plan, model, data, trainer).
        table: its data (the manifest records its fingerprint and components).
        extra: the kind's own settings, by `RunManifest` field.
    """
    manifest = RunManifest(
        kind=kind,
        name=location.name,
        spec=spec.to_dict(),
        data_fingerprint=table.fingerprint,
        components=tuple(table.components),
        rank={
            "metric": RANK_METRIC,
            "mode": RANK_MODE,
            "alpha": spec.train.rank_alpha,
            "max_lag": spec.train.rank_max_lag,
        },
        tune_app_version=__version__,
        created=time.time(),
        **extra,
    )
    location.join(MANIFEST).write_bytes(manifest.to_json())


def space_record(space: SearchSpace) -> dict[str, Any]:
    """What a run's manifest records of its search space (`write_manifest`'s extra): its name,
    its --space file and its content, which `--resume` compares with the file then."""
    return {"space": space.source, "space_file": space.file, "space_content": space.to_dict()}
