"""The flush policy: when the micro-batch being read lands, and how the next consume() call asks for records.

Pure, so that every rule is a unit test (pytests/test_flush.py). The consumer loop (consumer.py) reads one
consume() call at a time; that call's records stay "in flight" (their chunks decode in SQL) while the next
call waits, and join the batch before anything read after them. After each call the loop describes what it
holds (`FlushState`) and does what `FlushPolicy.decide` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ingest.core.config import BatchSettings

CONSUME_CHUNK = 5_000  # records one consume() call asks for at most
WRITER_BUSY_POLL_S = 0.02
# consume() never blocks longer, so that a stop request and the loop's periodic checks are not held up.
MAX_WAIT_S = 0.5


@dataclass(frozen=True)
class FlushState:
    """What the loop holds when it asks the policy."""

    batch: int = 0  # records in the open batch
    in_flight: int = 0  # the last consume() call's records, not in the batch yet
    # Seconds since the consume() call that read the batch's first records (None: nothing read for it yet).
    # consume() blocks until it has its count or its timeout, so dating a batch from when that call returned
    # made its first event wait up to twice max_ms (freshness p99 1.3 s at 1,000 events/s).
    age_s: float | None = None
    writer_busy: bool = False  # the previous batch is still landing
    stop_requested: bool = False
    caught_up: bool = False  # every assigned partition is read to its end

    @property
    def in_hand(self) -> int:
        return self.batch + self.in_flight


class Flush(Enum):
    """What the loop does with what it holds."""

    KEEP_READING = "keep reading"  # nothing lands; the last call's records stay in flight
    LAND = "land"  # the last call's records join the batch, which lands
    LAND_FULL = "land the full batch"  # it lands without the last call's records: they open the next one
    LAND_AND_STOP = "land and stop"  # the last call's records join the batch, which lands; then stop
    # The full batch lands, then the last call's records in a batch of their own (instead of overfilling
    # it: a 4,513-record batch at max_events 2,500 was seen); then stop.
    LAND_FULL_AND_STOP = "land the full batch, then the rest apart, and stop"
    STOP = "stop"  # nothing in hand: stop once the batch in flight has landed

    @property
    def joins(self) -> bool:
        """The last call's records join the batch before it lands."""
        return self in (Flush.LAND, Flush.LAND_AND_STOP)

    @property
    def lands(self) -> bool:
        return self not in (Flush.KEEP_READING, Flush.STOP)

    @property
    def stops(self) -> bool:
        return self in (Flush.LAND_AND_STOP, Flush.LAND_FULL_AND_STOP, Flush.STOP)


@dataclass(frozen=True)
class Read:
    """The next consume() call's arguments."""

    count: int
    timeout_s: float


@dataclass(frozen=True)
class FlushPolicy:
    """A batch lands at `max_events` records, or `max_s` after it was opened once the writer is free; a run
    finishes when a stop is requested or, `until_caught_up`, once every partition is read to its end."""

    max_events: int
    max_s: float
    until_caught_up: bool = False
    chunk: int = CONSUME_CHUNK
    writer_busy_poll_s: float = WRITER_BUSY_POLL_S
    max_wait_s: float = MAX_WAIT_S

    @classmethod
    def of(cls, settings: BatchSettings, until_caught_up: bool = False) -> FlushPolicy:
        return cls(settings.max_events, settings.max_ms / 1000, until_caught_up)

    def finishing(self, state: FlushState) -> bool:
        return state.stop_requested or (self.until_caught_up and state.caught_up)

    def aged(self, state: FlushState) -> bool:
        """Open for max_s, and the writer is free. Closing a batch while the one before it still lands would
        only queue it, and small batches cap the rate at batch size / commit time: under load the batch
        grows (up to max_events) instead."""
        return state.age_s is not None and state.age_s >= self.max_s and not state.writer_busy

    def decide(self, state: FlushState) -> Flush:
        """What to do after a consume() call, given what is in hand."""
        if state.in_hand == 0:
            return Flush.STOP if self.finishing(state) else Flush.KEEP_READING
        # The last call's records join the batch only if it stays within max_events; else they open the next.
        fits = state.in_hand <= self.max_events
        if self.finishing(state):
            return Flush.LAND_AND_STOP if fits else Flush.LAND_FULL_AND_STOP
        if state.batch >= self.max_events or self.aged(state):
            return Flush.LAND if fits else Flush.LAND_FULL
        return Flush.KEEP_READING

    def next_read(self, state: FlushState) -> Read:
        """The next consume() call: its records go to the open batch, or to the next one when it is full."""
        if state.in_hand >= self.max_events:  # the batch lands once the last call's records are in
            return Read(min(self.chunk, self.max_events), 0.0)  # take what is here
        wait = self.max_s if state.age_s is None else max(0.0, self.max_s - state.age_s)
        # While the previous batch is still landing, an aged batch keeps growing instead of queueing behind
        # it (`aged`); poll in short steps meanwhile rather than spin.
        if state.writer_busy:
            wait = max(wait, self.writer_busy_poll_s)
        # Asking for no more than the batch has room for keeps it within max_events.
        return Read(min(self.chunk, self.max_events - state.in_hand), min(wait, self.max_wait_s))
