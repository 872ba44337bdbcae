"""A search's journal, `pbt_journal.jsonl`: every PBT round and exploit, as the scheduler
(`pbt.py`) writes them and PB2's explore step (`explore.py`) reads them back."""

from __future__ import annotations

import json
from typing import Any

from tune_app.runs.records import JOURNAL, JournalEvent, RoundEvent, read_events, read_rounds
from tune_app.runs.storage import Location
from tune_app.training.metrics import VAL_FREE_LOSS
from tune_app.tune.explore import Observation

__all__ = ["Journal"]


class Journal:
    """The run's `pbt_journal.jsonl`: round and exploit events (records.RoundEvent and
    JournalEvent), rewritten whole and atomically on every append."""

    def __init__(self, location: Location) -> None:
        self.location = location

    def events(self) -> list[RoundEvent | JournalEvent]:
        """Every round and exploit so far, in order, as records (`records.read_events`)."""
        return read_events(self.location)

    def lines(self) -> list[dict[str, Any]]:
        """The journal's lines, as its records write them."""
        return [event.to_dict() for event in self.events()]

    def append(self, *events: RoundEvent | JournalEvent) -> None:
        lines = [event.to_dict() for event in (*self.events(), *events)]
        self.location.join(JOURNAL).write_bytes(
            "".join(json.dumps(e) + "\n" for e in lines).encode()
        )

    def rounds_done(self) -> set[int]:
        return {event.epoch for event in read_rounds(self.location)}

    def history(self) -> list[Observation]:
        """Every member's score at every journalled round, and after each exploit the donor's
        score with the new parameters (the weights the member went on from): PB2's data."""
        events = self.events()
        seen = [
            (event.epoch, 0, Observation(r["trial"], event.epoch, r[VAL_FREE_LOSS], r["params"]))
            for event in events
            if isinstance(event, RoundEvent)
            for r in event.ranking
        ]
        seen += [
            (e.epoch, 1, Observation(e.trial, e.epoch, float(e.donor_val_free_loss or 0), e.new))
            for e in events
            if isinstance(e, JournalEvent)
        ]
        return [observation for _, _, observation in sorted(seen, key=lambda item: item[:2])]
