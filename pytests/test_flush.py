"""The flush policy, rule by rule: when a micro-batch lands, what happens to the last consume() call's records
(in flight while the next call reads), when the run stops, and what the next consume() call asks for."""

import pytest

from ingest.core.config import BatchSettings
from ingest.core.flush import Flush, FlushPolicy, FlushState, Read

MAX = 2_500
POLICY = FlushPolicy(max_events=MAX, max_s=0.5)
UNTIL_CAUGHT_UP = FlushPolicy(max_events=MAX, max_s=0.5, until_caught_up=True)


def test_the_policy_comes_from_the_batch_settings():
    policy = FlushPolicy.of(BatchSettings(max_events=7, max_ms=250), until_caught_up=True)
    assert (policy.max_events, policy.max_s, policy.until_caught_up) == (7, 0.25, True)


# --------------------------------------------------------------------------------------- what lands when
def test_with_nothing_in_hand_it_keeps_reading_or_stops():
    assert POLICY.decide(FlushState()) is Flush.KEEP_READING
    assert POLICY.decide(FlushState(stop_requested=True)) is Flush.STOP
    assert UNTIL_CAUGHT_UP.decide(FlushState(caught_up=True)) is Flush.STOP


def test_caught_up_finishes_only_a_run_until_caught_up():
    assert POLICY.decide(FlushState(caught_up=True)) is Flush.KEEP_READING
    assert POLICY.decide(FlushState(batch=10, age_s=0.1, caught_up=True)) is Flush.KEEP_READING
    assert UNTIL_CAUGHT_UP.decide(FlushState(batch=10, age_s=0.1, caught_up=True)) is Flush.LAND_AND_STOP


def test_a_young_batch_under_max_events_keeps_reading_with_the_last_call_in_flight():
    assert POLICY.decide(FlushState(batch=100, in_flight=200, age_s=0.1)) is Flush.KEEP_READING
    assert POLICY.decide(FlushState(batch=0, in_flight=200, age_s=0.0)) is Flush.KEEP_READING


def test_a_batch_lands_at_max_s_with_the_last_call_joining_it():
    assert POLICY.decide(FlushState(batch=100, in_flight=200, age_s=0.5)) is Flush.LAND
    assert POLICY.decide(FlushState(batch=100, in_flight=200, age_s=0.499)) is Flush.KEEP_READING
    # the last call's records alone open and age a batch
    assert POLICY.decide(FlushState(in_flight=200, age_s=0.7)) is Flush.LAND


def test_an_aged_batch_grows_while_the_writer_is_busy():
    """Closing it would only queue it behind the batch still landing; small batches cap the rate."""
    assert (
        POLICY.decide(FlushState(batch=100, in_flight=200, age_s=5.0, writer_busy=True)) is Flush.KEEP_READING
    )


def test_a_batch_that_never_read_a_record_never_ages():
    assert not POLICY.aged(FlushState(age_s=None))
    assert POLICY.aged(FlushState(age_s=0.5))
    assert not POLICY.aged(FlushState(age_s=0.5, writer_busy=True))


def test_a_full_batch_lands_young_or_with_the_writer_busy():
    assert POLICY.decide(FlushState(batch=MAX, age_s=0.0)) is Flush.LAND
    assert POLICY.decide(FlushState(batch=MAX, age_s=0.0, writer_busy=True)) is Flush.LAND


def test_a_full_batch_lands_without_the_last_call_whose_records_open_the_next():
    assert POLICY.decide(FlushState(batch=MAX, in_flight=1, age_s=0.0)) is Flush.LAND_FULL
    assert POLICY.decide(FlushState(batch=MAX, in_flight=MAX, age_s=9.0)) is Flush.LAND_FULL
    assert POLICY.decide(FlushState(batch=MAX - 1, in_flight=2, age_s=0.6)) is Flush.LAND_FULL


def test_exactly_max_events_in_hand_fits():
    assert POLICY.decide(FlushState(batch=MAX - 200, in_flight=200, age_s=0.6)) is Flush.LAND


def test_finishing_lands_everything_in_hand_young_or_with_the_writer_busy():
    young = FlushState(batch=10, in_flight=20, age_s=0.0, writer_busy=True, stop_requested=True)
    assert POLICY.decide(young) is Flush.LAND_AND_STOP
    assert POLICY.decide(FlushState(in_flight=20, age_s=0.0, stop_requested=True)) is Flush.LAND_AND_STOP


def test_finishing_with_a_full_batch_lands_the_last_call_in_a_batch_of_its_own():
    """Not one overfull batch (a 4,513-record batch at max_events 2,500 was seen)."""
    full = FlushState(batch=MAX, in_flight=2_013, age_s=0.1, caught_up=True)
    assert UNTIL_CAUGHT_UP.decide(full) is Flush.LAND_FULL_AND_STOP
    assert POLICY.decide(FlushState(batch=MAX, in_flight=1, stop_requested=True)) is Flush.LAND_FULL_AND_STOP


@pytest.mark.parametrize(
    ("flush", "joins", "lands", "stops"),
    [
        (Flush.KEEP_READING, False, False, False),
        (Flush.LAND, True, True, False),
        (Flush.LAND_FULL, False, True, False),
        (Flush.LAND_AND_STOP, True, True, True),
        (Flush.LAND_FULL_AND_STOP, False, True, True),
        (Flush.STOP, False, False, True),
    ],
)
def test_each_decision_says_what_the_loop_does(flush, joins, lands, stops):
    assert (flush.joins, flush.lands, flush.stops) == (joins, lands, stops)


# ------------------------------------------------------------------------------- the next consume() call
def test_a_batch_not_opened_yet_waits_max_s():
    assert POLICY.next_read(FlushState()) == Read(2_500, 0.5)
    assert FlushPolicy(max_events=20_000, max_s=0.2).next_read(FlushState()) == Read(5_000, 0.2)


def test_the_wait_is_dated_from_the_consume_call_that_opened_the_batch():
    """consume() blocks until it has its count or its timeout: the batch's first event must not wait for
    max_s after that call returned too (freshness p99 was 1.3 s at max_ms 500)."""
    assert POLICY.next_read(FlushState(batch=10, age_s=0.3)).timeout_s == pytest.approx(0.2)
    assert POLICY.next_read(FlushState(batch=10, age_s=0.8)).timeout_s == 0.0


def test_while_the_writer_is_busy_it_polls_in_short_steps():
    busy = FlushState(batch=10, age_s=0.8, writer_busy=True)
    assert POLICY.next_read(busy).timeout_s == POLICY.writer_busy_poll_s


def test_it_never_waits_longer_than_max_wait():
    assert FlushPolicy(max_events=MAX, max_s=60.0).next_read(FlushState()).timeout_s == 0.5


def test_it_asks_for_no_more_than_the_batch_has_room_for():
    assert POLICY.next_read(FlushState(batch=2_000, in_flight=300, age_s=0.1)).count == 200
    assert FlushPolicy(max_events=20_000, max_s=0.5).next_read(FlushState(batch=100)).count == 5_000


def test_with_a_full_batch_in_hand_it_takes_what_is_there_for_the_next_one():
    """The batch lands once the last call's records are in; the next call's records go to the next batch."""
    assert POLICY.next_read(FlushState(batch=2_000, in_flight=500, age_s=0.1)) == Read(2_500, 0.0)
    assert FlushPolicy(max_events=20_000, max_s=0.5).next_read(FlushState(batch=20_000)) == Read(5_000, 0.0)


# ------------------------------------------------------------------------------- the rules together
def drain(policy: FlushPolicy, available: int) -> list[int]:
    """The consumer loop's bookkeeping on a backlog of `available` records, every call returning all it asks
    for: the sizes of the batches landed, in order."""
    batch = in_flight = 0
    landed: list[int] = []
    while True:
        ask = policy.next_read(FlushState(batch, in_flight, age_s=0.0 if batch + in_flight else None))
        got = min(ask.count, available)
        available -= got
        batch, in_flight = batch + in_flight, got  # the last call's records join before this call's
        flush = policy.decide(FlushState(batch, in_flight, age_s=0.0, caught_up=available == 0))
        if flush.joins:
            batch, in_flight = batch + in_flight, 0
        if flush.lands:
            landed.append(batch)
            batch = 0
            if flush.stops and in_flight:
                landed.append(in_flight)
                in_flight = 0
        if flush.stops:
            assert batch == in_flight == 0
            return [size for size in landed if size]


@pytest.mark.parametrize(("max_events", "available"), [(2_500, 12_000), (1, 5), (7, 100), (10_000, 33_333)])
def test_a_backlog_lands_once_in_batches_within_max_events(max_events, available):
    landed = drain(FlushPolicy(max_events=max_events, max_s=0.5, until_caught_up=True), available)
    assert sum(landed) == available
    assert all(size <= max_events for size in landed), landed
    assert all(size == max_events for size in landed[:-1]), landed
