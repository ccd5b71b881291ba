"""A stored position past the broker's log end means lost data, but only if it stays so: the cached high
watermark of a partition given back to a member is that of its last fetch (pure logic of the check)."""

from ingest.core.consumer import LOG_END_GRACE_S, lost_log_end

TP = ("t.s.items", 1)


def test_a_position_behind_the_log_end_is_fine():
    since: dict = {}
    assert lost_log_end({TP: 50}, {TP: 80}, since, 0.0) is None
    assert lost_log_end({TP: 80}, {TP: 80}, since, 1.0) is None
    assert since == {}


def test_a_stale_mark_after_a_reassignment_is_forgiven_once_a_fetch_answers():
    since: dict = {}
    # another member landed up to 130 while this one's cached mark stayed at 79
    assert lost_log_end({TP: 130}, {TP: 79}, since, 10.0) is None
    assert lost_log_end({TP: 130}, {TP: 79}, since, 10.0 + LOG_END_GRACE_S / 2) is None
    assert lost_log_end({TP: 130}, {TP: 140}, since, 11.0 + LOG_END_GRACE_S) is None
    assert since == {}, "the partition is no longer suspect"
    # a later stale moment starts its grace anew
    assert lost_log_end({TP: 150}, {TP: 140}, since, 20.0) is None


def test_a_position_that_stays_past_the_log_end_is_lost_data():
    since: dict = {}
    assert lost_log_end({TP: 50}, {TP: 10}, since, 0.0) is None
    assert lost_log_end({TP: 50}, {TP: 10}, since, LOG_END_GRACE_S) == (TP, 10)


def test_no_mark_yet_says_nothing():
    assert lost_log_end({TP: 50}, {TP: -1001}, {}, 0.0) is None
