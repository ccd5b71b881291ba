"""The consumer loop: read Kafka, decode, close micro-batches at N events or T milliseconds, land them.

The ingesters of a lake form one consumer group (`group_id`) and split the partitions of the matched topics
(cooperative-sticky: a rebalance moves only the partitions that change hands). Positions come from the lake,
never from the broker: a member seeks each partition it is given to the offset stored with the last landed
batch (or the beginning), and any record below that offset is dropped, so re-reading adds nothing. Before it
gives a partition up it lands what it holds; a member that lost its partitions (paused past the session
timeout) drops what it holds, and the lake's fence (ownership.py) refuses any batch of it that would land a
partition twice. Broker-side group commits are made after each landed batch only so that standard lag
tooling works. A stored offset beyond the log's end (the broker lost data) stops the ingester with an
explanation instead of silently re-reading or skipping.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from ingest.core.batch import Batch
from ingest.core.config import IngestSettings
from ingest.core.decode import DeadLetter, Decoder, colliding_topics, position, to_record
from ingest.core.decode_sql import BulkDecoder, Chunk
from ingest.core.flush import Flush, FlushPolicy, FlushState
from ingest.core.logs import OffsetRuns, event_fields, event_ref
from ingest.core.metrics import IngestMetrics
from ingest.core.naming import TableNaming
from ingest.core.offsets import Positions, StagingReplaced
from ingest.core.rows import ChangeRows
from ingest.core.sink import LakeSink
from ingest.core.source_types import load_source_types

log = logging.getLogger(__name__)

METADATA_REFRESH_S = 10.0
LOG_END_CHECK_S = 1.0
LOG_END_GRACE_S = 5.0  # a stored position past the log's end for this long means the broker lost data


class IngestError(RuntimeError):
    """The ingester cannot go on safely; the message says why and what to do."""


@dataclass
class RunStats:
    batches: int = 0
    resyncs: int = 0
    records: int = 0
    change_rows: int = 0
    dead_letters: int = 0
    already_landed: int = 0
    last_batch_id: int = 0
    last_batch_records: int = 0
    last_batch_seconds: float = 0.0
    started_at: float = field(default_factory=time.time)
    first_read_at: float | None = None  # time.monotonic() when the first records came back from the broker


def lost_log_end(
    positions: Positions,
    highs: dict[tuple[str, int], int],
    past_end_since: dict[tuple[str, int], float],
    now: float,
) -> tuple[tuple[str, int], int] | None:
    """The partition (and its log end) whose stored position has stayed past the broker's high watermark
    for LOG_END_GRACE_S, if any; `past_end_since` keeps since when each has been past it (updated here).

    The cached high watermark of a partition given back to this member is that of its last fetch, maybe
    long ago (another member landed it since): it is past for a moment, until the next fetch answers."""
    for tp, high in highs.items():
        if not (high >= 0 and positions.get(tp, 0) > high):
            past_end_since.pop(tp, None)
        elif now - past_end_since.setdefault(tp, now) >= LOG_END_GRACE_S:
            return tp, high
    return None


def decoder_for(settings: IngestSettings) -> Decoder:
    """The decoder the settings describe: the topic kinds it skips, and the types file of events that carry
    no Connect schema (source_types.py; TypesFileError if one does not validate)."""
    return Decoder(
        settings.skip_heartbeats,
        settings.skip_schema_changes,
        load_source_types(settings.path(settings.types_dir)),
        table_naming(settings),
    )


def table_naming(settings: IngestSettings) -> TableNaming:
    """The staging table of each topic, as the settings name it (ValueError for a template that cannot)."""
    return TableNaming(settings.staging_table, settings.staging_tables)


def consumer_config(settings: IngestSettings) -> dict[str, str | bool | int]:
    config: dict[str, str | bool | int] = {
        # librdkafka (>= 2.1) stops fetching a partition for fetch.queue.backoff.ms (default 1 s) whenever
        # its prefetch queue is full, which is all the time while this process decodes a backlog: with ~3 KB
        # events the reader waited more than it worked (31,000 events/s instead of 75,000, measured with
        # bench/ingest_throughput.py). kafka.client may still set it.
        "fetch.queue.backoff.ms": 10,
        # librdkafka's prefetch queue (default 64 MB) is a large part of a draining ingester's memory; 16 MB
        # still holds three consume() calls of ~1 KB records (bench/memory.py, docs/benchmarks.md).
        "queued.max.messages.kbytes": 16384,
        **settings.kafka.client,
    }
    config.update(
        {
            "group.id": settings.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            # EOF marks catch-up; watermark offsets are not trusted (the dev broker reports them wrong).
            "enable.partition.eof": True,
            # Every partition is assigned at an explicit offset; an invalid one must surface as an error.
            "auto.offset.reset": "error",
            # A rebalance moves only the partitions that change owner; the others keep landing.
            "partition.assignment.strategy": "cooperative-sticky",
        }
    )
    return config


@dataclass
class _Read:
    """One consume() call's records that go to a batch: ones the Python decoder takes, and chunks of one
    data topic each, decoding in SQL (or None: then in Python too)."""

    python: list[Message] = field(default_factory=list)
    chunks: list[tuple[list[Message], Future[ChangeRows | None]]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.python) + sum(len(chunk) for chunk, _ in self.chunks)


@dataclass
class _InHand:
    """What the loop holds that is not handed to the writer yet: the open batch, the last consume() call's
    records (in flight) and when the batch was opened."""

    batch: Batch
    reading: _Read = field(default_factory=_Read)
    opened_at: float | None = None  # time.monotonic() of the consume() call that read its first records


class Ingester:
    def __init__(
        self,
        settings: IngestSettings,
        sink: LakeSink,
        decoder: Decoder | None = None,
        on_batch: Callable[[Batch, float], None] | None = None,
        from_beginning: bool = False,
        metrics: IngestMetrics | None = None,
        share_partitions: bool = True,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.decoder = decoder or decoder_for(settings)
        # Chunks of plain change events are decoded in SQL; a decoder of another kind (replay's, skipping
        # records by time) decides record by record, so it decodes everything itself.
        plain_decoder = type(self.decoder) is Decoder
        self.bulk = BulkDecoder(self.decoder) if settings.batch.sql_decoding and plain_decoder else None
        self.topic_pattern = re.compile(settings.topics)
        self.on_batch = on_batch
        # Re-read from offset 0; what is already landed is still recognised by its stored position.
        self.from_beginning = from_beginning
        # Join the group and land only the partitions it gives this member; False: take every partition
        # (`ingest replay`, which lands beside the live tables and is the only writer of its own).
        self.share_partitions = share_partitions
        if share_partitions and (sink.member.run_id is None or sink.member.group_id != settings.group_id):
            # Fencing, the batch log and `ingest status` tell members apart by the sink's member.
            raise ValueError(
                "a group member lands through a sink of its own: "
                "LakeSink(..., member=Member.this_process(settings.group_id))"
            )
        self.stats = RunStats()
        self.positions: Positions = {}
        self.assigned: set[tuple[str, int]] = set()
        self._consumer: Consumer | None = None
        # One batch at a time lands in a writer thread while the next one is consumed and decoded (DuckDB
        # releases the GIL): batches still commit strictly in order, each with its offsets.
        self._writer: ThreadPoolExecutor | None = None
        self._landing: tuple[Future[float], Batch] | None = None
        # Chunks of plain change events decode in SQL in this thread while the loop reads the next records.
        self._decoding: ThreadPoolExecutor | None = None
        self.metrics = metrics
        if metrics is not None and sink.on_retry is None:
            sink.on_retry = lambda _error, _attempt: metrics.commit_retries.inc()
        self._dropped = OffsetRuns()  # already landed, not logged yet
        self._hand = _InHand(Batch())
        self._at_eof: set[tuple[str, int]] = set()
        self._past_log_end: dict[tuple[str, int], float] = {}  # since when each looked past the log's end
        self._subscribed: list[str] = []
        self._assignment_seen = False
        self._closing = False
        # An exception raised inside a rebalance callback, re-raised once consume() returns.
        self._callback_error: BaseException | None = None
        self.not_owned = 0  # records read of partitions this member no longer owns (dropped)
        self._conflicts_counted = 0

    # ----------------------------------------------------------------------------------------- run
    def run(self, until_caught_up: bool = False, stop: threading.Event | None = None) -> RunStats:
        stop = stop or threading.Event()
        self.positions, _ = self.sink.open()
        try:
            self._consumer = Consumer(consumer_config(self.settings), logger=log)
        except KafkaException as error:
            raise IngestError(f"the Kafka client refused its configuration: {error.args[0].str()}") from None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="lake-writer")
        if self.bulk is not None:
            self._decoding = ThreadPoolExecutor(1, thread_name_prefix="sql-decoder")
        try:
            self._refresh_assignment()
            if not self.assigned and not self._subscribed:
                log.warning(
                    "no topic matches %r on %s", self.settings.topics, self.settings.kafka.bootstrap_servers
                )
            self._loop(until_caught_up, stop)
            self._wait_for_first_assignment()
        finally:
            self._closing = True
            if self._landing is not None:  # the loop failed: let the write in flight end before closing
                self._landing[0].exception()
                self._landing = None
            self._writer.shutdown(wait=True)
            self._writer = None
            if self._decoding is not None:
                self._decoding.shutdown(wait=True)
                self._decoding = None
            self._consumer.close()
            self._consumer = None
            if self.bulk is not None:
                self.bulk.close()
        return self.stats

    def _loop(self, until_caught_up: bool, stop: threading.Event) -> None:
        """Consume, decode, add to the batch, ask the flush policy, land; return once all read has landed."""
        assert self._consumer is not None
        policy = FlushPolicy.of(self.settings.batch, until_caught_up)
        hand = self._hand = _InHand(Batch())
        at_eof = self._at_eof
        next_refresh = time.monotonic() + METADATA_REFRESH_S
        next_log_end_check = time.monotonic() + LOG_END_CHECK_S
        while True:
            polled_at = time.monotonic()
            ask = policy.next_read(self._flush_state(hand, polled_at))
            messages = self._consumer.consume(ask.count, timeout=ask.timeout_s)
            hand = self._hand  # a rebalance callback may have landed or dropped what was in hand
            if messages and self.stats.first_read_at is None:
                self.stats.first_read_at = time.monotonic()
            # The last call's records join the batch before anything read after them (positions never skip).
            self._apply(hand.batch, hand.reading)
            hand.reading = self._read(messages, at_eof)
            if hand.reading.count and hand.opened_at is None:
                hand.opened_at = polled_at  # dated from the call (see FlushState.age_s)
            now = time.monotonic()
            flush = policy.decide(self._flush_state(hand, now, stop.is_set(), self._caught_up()))
            try:
                self._raise_callback_error()
                self._flush(flush, hand, polled_at)
                # Wait for the last batch when finishing; else account for one that has landed meanwhile.
                if flush.stops or not self._writer_busy():
                    self._finish_landing()
                finished = flush.stops
            except StagingReplaced as replaced:
                self._restart_on_switch(replaced, hand, at_eof)
                # Nothing is in hand now: a stop ends the run; caught up or not is known only on re-reading.
                finished = stop.is_set()
            if finished:
                self._log_dropped()
                self._report_lag()
                return
            if now >= next_log_end_check:
                self._check_log_ends()
                self._report_lag()
                self._log_dropped()
                next_log_end_check = now + LOG_END_CHECK_S
            if now >= next_refresh:
                self._refresh_assignment()
                next_refresh = now + METADATA_REFRESH_S

    def _flush_state(
        self, hand: _InHand, now: float, stop_requested: bool = False, caught_up: bool = False
    ) -> FlushState:
        return FlushState(
            batch=hand.batch.size,
            in_flight=hand.reading.count,
            age_s=None if hand.opened_at is None else now - hand.opened_at,
            writer_busy=self._writer_busy(),
            stop_requested=stop_requested,
            caught_up=caught_up,
        )

    def _flush(self, flush: Flush, hand: _InHand, polled_at: float) -> None:
        """Do what the policy decided with what is in hand (StagingReplaced: see _restart_on_switch)."""
        if flush.joins:
            self._apply(hand.batch, hand.reading)
        if not flush.lands:
            return
        self._land(hand)
        if flush.stops and hand.reading.count:  # what did not fit in that batch lands in one of its own
            self._apply(hand.batch, hand.reading)
            self._land(hand)
        # Records still in flight were read by the last call: they open the next batch.
        hand.opened_at = polled_at if hand.reading.count else None

    def _restart_on_switch(
        self, replaced: StagingReplaced, hand: _InHand, at_eof: set[tuple[str, int]]
    ) -> None:
        """Staging was switched under this ingester (`ingest replay`): the batch in flight was dropped, so is
        everything read after it; all of it is read again from the lake's new positions."""
        self._resync(replaced)
        self._drop(hand.reading)
        hand.batch, hand.reading, hand.opened_at = Batch(), _Read(), None
        at_eof.clear()

    def _wait_for_first_assignment(self) -> None:
        """A member stopping in the middle of its first join waits for the join to finish before it
        leaves: the dev broker (Tansu) never completes a join round in which a member left, and the whole
        group then stays without partitions (docs/scale-out.md). What it reads meanwhile is not landed."""
        if not self.share_partitions or not self._subscribed or self._assignment_seen:
            return
        assert self._consumer is not None
        session_s = int(self.settings.kafka.client.get("session.timeout.ms", "45000")) / 1000
        deadline = time.monotonic() + 2 * session_s + 5
        while not self._assignment_seen and time.monotonic() < deadline:
            self._consumer.consume(500, timeout=0.2)
        self._drop_hand()

    def _caught_up(self) -> bool:
        """Every owned partition is read to its end (a group member first has to be given its share)."""
        # Subscribed to nothing (no topic matches): nothing to wait for.
        joined = self._assignment_seen or not self.share_partitions or not self._subscribed
        return joined and self.assigned <= self._at_eof

    def _raise_callback_error(self) -> None:
        error, self._callback_error = self._callback_error, None
        if error is not None:
            raise error

    def _writer_busy(self) -> bool:
        """The previous batch is still landing."""
        return self._landing is not None and not self._landing[0].done()

    def _read(self, messages: list[Message], at_eof: set[tuple[str, int]]) -> _Read:
        """Sort one consume() call's records: end-of-partition events and errors are handled here, records
        landed before are dropped, data records of a topic go to the SQL decoder as one chunk (started at
        once, in its thread), the rest to the Python decoder (when the read is applied)."""
        read = _Read()
        chunks: dict[str, Chunk] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_eof.add(position(message)[:2])
                    continue
                self._on_consumer_error(message, error)
                continue
            topic, partition, offset = position(message)
            if (topic, partition) not in self.assigned:  # fetched before a rebalance took it away
                self.not_owned += 1
                continue
            at_eof.discard((topic, partition))
            if offset < self.positions.get((topic, partition), 0):
                self.stats.already_landed += 1
                self._dropped.add(topic, partition, offset)
                continue
            value = message.value()
            if self.bulk is not None and value is not None:
                chunk = chunks.get(topic)
                if chunk is None:
                    chunk = chunks[topic] = Chunk()
                chunk.messages.append(message)
                chunk.values.append(value)
                chunk.partitions.append(partition)
                chunk.offsets.append(offset)
            else:
                read.python.append(message)
        for topic, chunk in chunks.items():
            kind = self.decoder.topic_kind(topic)
            if kind.kind != "data" or kind.table is None:
                read.python.extend(chunk.messages)
                continue
            # Chunks are gathered only with SQL decoding, whose thread exists exactly then.
            assert self.bulk is not None and self._decoding is not None
            parsed = self._decoding.submit(self.bulk.parse, topic, kind.table, chunk)
            read.chunks.append((chunk.messages, parsed))
        return read

    def _apply(self, batch: Batch, read: _Read) -> None:
        """Add what `read` holds to the batch, in order (waiting for its chunks' SQL decoding), once."""
        for message in read.python:
            self._decode_into(batch, message)
        for chunk, parsed in read.chunks:
            rows = parsed.result()
            if rows is not None:
                assert self.bulk is not None
                batch.add_rows(self.bulk.settle(rows))
            else:
                for message in chunk:
                    self._decode_into(batch, message)
        read.python, read.chunks = [], []

    @staticmethod
    def _drop(read: _Read) -> None:
        """Drop what was read after a dropped batch (staging was switched): it is read again."""
        for _, parsed in read.chunks:
            parsed.exception()  # let its decoding end

    def _decode_into(self, batch: Batch, message: Message) -> None:
        decoded = self.decoder.decode(to_record(message))
        if isinstance(decoded, DeadLetter):
            topic, partition, offset = position(message)
            log.warning(
                "dead letter %s: %s",
                event_ref(topic, partition, offset),
                decoded.error,
                extra=event_fields(topic, partition, offset),
            )
        batch.add(decoded)

    def _land(self, hand: _InHand) -> None:
        """Hand the open batch (if any) to the writer thread once the batch before it has landed, and open
        the next. StagingReplaced if staging was switched meanwhile (`ingest replay`)."""
        assert self._writer is not None
        if hand.batch.empty:
            return
        self._finish_landing()
        batch = hand.batch
        batch.started_from = {tp: self.positions.get(tp) for tp in batch.next_offsets}
        self._landing = (self._writer.submit(self._write, batch), batch)
        hand.batch = Batch()

    def _write(self, batch: Batch) -> float:
        started = time.monotonic()
        self.sink.write(batch)
        return time.monotonic() - started

    def _finish_landing(self) -> None:
        """Wait for the batch in flight (re-raising its failure, StagingReplaced if staging was switched:
        then nothing of it landed) and account for it."""
        if self._landing is None:
            return
        future, batch = self._landing
        self._landing = None
        elapsed = future.result()
        self.positions.update(batch.next_offsets)
        self._commit_to_broker(batch)
        self.stats.batches += 1
        self.stats.records += batch.size
        self.stats.change_rows += batch.change_rows
        self.stats.dead_letters += len(batch.dead_letters)
        self.stats.last_batch_id = batch.batch_id
        self.stats.last_batch_records = batch.size
        self.stats.last_batch_seconds = elapsed
        if self.metrics is not None and self.sink.conflict_count > self._conflicts_counted:
            self.metrics.commit_conflicts.inc(self.sink.conflict_count - self._conflicts_counted)
            self._conflicts_counted = self.sink.conflict_count
        log.info(
            "batch %d landed: %d records (%d rows, %d dead letters) in %.0f ms",
            batch.batch_id,
            batch.size,
            batch.change_rows,
            len(batch.dead_letters),
            elapsed * 1000,
        )
        if self.metrics is not None and self.sink.last_landing is not None:
            landed = self.sink.last_landing
            self.metrics.observe_batch(
                batch.size,
                elapsed,
                landed.rows,
                landed.dead_letters,
                landed.quarantined,
                landed.schema_changes,
                landed.newest_source_ts,
                landed.untyped_columns,
            )
        if self.on_batch is not None:
            self.on_batch(batch, elapsed)

    def _resync(self, replaced: StagingReplaced) -> None:
        """Staging was switched by `ingest replay` (or is paused for it): drop the batch in hand, wait
        out the pause, reload positions and table state from the lake and re-read from there."""
        assert self._consumer is not None
        log.warning(
            "%s; resuming from the lake's positions (after a switch of staging, once it is done)", replaced
        )
        while True:
            self.positions, _ = self.sink.open()
            if self.sink.generation is None or not self.sink.generation.paused:
                break
            time.sleep(0.5)
        if self.share_partitions:
            self._reseek_owned()
        else:
            self._consumer.unassign()
            self.assigned.clear()
            self._refresh_assignment()
        self.stats.resyncs += 1
        generation = self.sink.generation.name if self.sink.generation else ""
        log.info("resumed on staging generation %r", generation)

    def high_watermarks(self) -> dict[tuple[str, int], int]:
        """Per assigned partition, the log end seen in the last fetch response (not ListOffsets, which the
        dev broker answers wrongly); partitions not fetched yet are left out."""
        if self._consumer is None:
            return {}
        ends = {}
        for topic, partition in sorted(self.assigned):
            _, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            if high >= 0:
                ends[(topic, partition)] = high
        return ends

    def _commit_to_broker(self, batch: Batch) -> None:
        """Report progress to the broker's group, for lag monitoring only (best effort)."""
        assert self._consumer is not None
        offsets = [TopicPartition(t, p, o) for (t, p), o in batch.next_offsets.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=True)
        except Exception as error:
            log.debug("group commit failed (lag reporting only): %s", error)

    # --------------------------------------------------------------------------------- assignment
    def _start_offset(self, topic: str, partition: int) -> int:
        stored = self.positions.get((topic, partition), OFFSET_BEGINNING)
        return OFFSET_BEGINNING if self.from_beginning else stored

    def _refresh_assignment(self) -> None:
        """Follow the matching topics: subscribe the group to them (sharing partitions), or assign every
        partition not assigned yet at its stored position."""
        assert self._consumer is not None
        metadata = self._consumer.list_topics(timeout=10)
        new: list[TopicPartition] = []
        matched: list[str] = []
        for topic, topic_metadata in sorted(metadata.topics.items()):
            if not self.topic_pattern.search(topic) or topic_metadata.error is not None:
                continue
            matched.append(topic)
            for partition in sorted(topic_metadata.partitions):
                if (topic, partition) in self.assigned:
                    continue
                new.append(TopicPartition(topic, partition, self._start_offset(topic, partition)))
        vanished = {tp for tp in self.assigned if tp[0] not in metadata.topics}
        if vanished:
            raise IngestError(
                f"topics vanished from the broker while assigned: {sorted({t for t, _ in vanished})}. "
                + self._lost_topics_advice()
            )
        # Landed positions of matching topics the broker does not have: it lost them (the dev broker keeps
        # topics in memory) or they were deleted. Consuming on would silently forget what was landed.
        missing = sorted(
            {t for t, _ in self.positions if self.topic_pattern.search(t) and t not in metadata.topics}
        )
        if missing:
            raise IngestError(
                f"topics {missing} have data landed in the lake but do not exist on the broker "
                f"{self.settings.kafka.bootstrap_servers}. " + self._lost_topics_advice()
            )
        # Two live topics in one table are two sources (a topic re-created under another name, as the demo
        # does, continues its table: the sink checks that its rows are of the same source table).
        collisions = colliding_topics(matched, self.decoder.naming)
        if collisions:
            table, topics = next(iter(collisions.items()))
            raise IngestError(
                f"topics {', '.join(topics)} would all land in staging.{table}: set staging_table to "
                "'{server}__{schema}__{table}' (or name them apart in staging_tables) in profiles/ingest.yml"
            )
        if self.share_partitions:
            if matched and matched != self._subscribed:
                # New topics (or the first): the group rebalances and calls _on_assign with this one's share.
                self._consumer.subscribe(
                    matched, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
                )
                self._subscribed = matched
                log.info("joining group %r for %d topics", self.settings.group_id, len(matched))
            return
        if new:
            self._consumer.incremental_assign(new)
            self.assigned.update((tp.topic, tp.partition) for tp in new)
            self._log_assigned(new)

    @staticmethod
    def _log_assigned(partitions: list[TopicPartition]) -> None:
        log.info(
            "assigned %d partitions: %s",
            len(partitions),
            ", ".join(f"{t.topic}[{t.partition}]@{t.offset}" for t in partitions[:10]),
        )

    # Rebalance callbacks run inside consume(), in the loop's thread. The sink's connection is not shared
    # between threads, so each first lets the batch in flight finish. Exceptions are kept for the loop.
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Given partitions: seek each to the lake's position (read now: another member may have landed
        it a moment ago), never to the group's offset."""
        self._assignment_seen = True
        try:
            self._settle_landing()
            if partitions:
                lake = self.sink.load_positions()
                for tp in partitions:
                    key = (tp.topic, tp.partition)
                    if key in lake:
                        self.positions[key] = lake[key]
                    else:
                        self.positions.pop(key, None)
                    tp.offset = self._start_offset(tp.topic, tp.partition)
        except BaseException as error:  # re-raised by the loop
            self._keep_callback_error(error)
            # Assign nonetheless (records below the kept positions are dropped); the loop stops on the error.
            for tp in partitions:
                tp.offset = self._start_offset(tp.topic, tp.partition)
        consumer.incremental_assign(partitions)
        self.assigned.update((tp.topic, tp.partition) for tp in partitions)
        if partitions:
            self._log_assigned(partitions)
        self._record_assignment()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions move to another member: land what is in hand first, so it resumes after it."""
        if not self._closing:
            try:
                hand = self._hand
                self._apply(hand.batch, hand.reading)
                self._land(hand)
                hand.opened_at = None
                self._settle_landing()
            except BaseException as error:  # re-raised by the loop
                self._drop_hand()
                self._keep_callback_error(error)
        self._give_up(consumer, partitions, "revoked")

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The group went on without this member (it stalled past the session timeout): others may land
        these partitions already, so what is in hand is dropped; a batch in flight is fenced by the lake."""
        log.warning(
            "lost %d partitions to the group (this member stalled past session.timeout.ms); dropping what "
            "was read and not landed, then rejoining",
            len(partitions),
        )
        if not self._closing:
            self._drop_hand()
            try:
                self._settle_landing()
            except BaseException as error:  # re-raised by the loop
                self._keep_callback_error(error)
        self._give_up(consumer, partitions, "lost")

    def _give_up(self, consumer: Consumer, partitions: list[TopicPartition], how: str) -> None:
        consumer.incremental_unassign(partitions)
        for tp in partitions:
            self.assigned.discard((tp.topic, tp.partition))
            self._at_eof.discard((tp.topic, tp.partition))
        if partitions:
            log.info(
                "%s %d partitions: %s",
                how,
                len(partitions),
                ", ".join(f"{t.topic}[{t.partition}]" for t in partitions[:10]),
            )
        if not self._closing:
            self._record_assignment()

    def _keep_callback_error(self, error: BaseException) -> None:
        if self._callback_error is None:
            self._callback_error = error

    def _settle_landing(self) -> None:
        """Wait for the batch in flight and account for it; if staging moved under it, let the loop resync
        (the batch landed nothing)."""
        try:
            self._finish_landing()
        except StagingReplaced as replaced:
            self._keep_callback_error(replaced)

    def _drop_hand(self) -> None:
        hand = self._hand
        self._drop(hand.reading)
        hand.batch, hand.reading, hand.opened_at = Batch(), _Read(), None

    def _record_assignment(self) -> None:
        """What this member owns, for `ingest status` (best effort: ownership itself is the lake's fence)."""
        try:
            self.sink.record_assignment(self.assigned)
        except Exception as error:
            log.warning("could not record this member's partitions in the lake: %s", error)
        if self.metrics is not None:
            self.metrics.owned_partitions.set(len(self.assigned))

    def _reseek_owned(self) -> None:
        """Re-read every owned partition from the lake's position (after a switch or a fenced batch)."""
        assert self._consumer is not None
        owned = [TopicPartition(t, p) for t, p in sorted(self.assigned)]
        if not owned:
            return
        self._consumer.incremental_unassign(owned)
        for tp in owned:
            tp.offset = self._start_offset(tp.topic, tp.partition)
        self._consumer.incremental_assign(owned)
        self._at_eof.clear()

    @staticmethod
    def _lost_topics_advice() -> str:
        return (
            "The broker lost or deleted them (the development broker keeps topics in memory: a restart wipes "
            "them). Nothing was skipped or re-read. Either re-produce the topics from the source (a new "
            "Debezium snapshot) and rebuild staging from them with `ingest replay --from earliest` (see "
            "docs/operations.md, 'Broker outage or data loss'), or, if they are gone for good, leave them "
            "out with --topics (a regular expression that does not match them)."
        )

    def _check_log_ends(self) -> None:
        """A stored position past the log's end means the broker lost data that was already landed.

        Some brokers (the dev broker among them) answer a fetch beyond the end with nothing at all rather
        than OFFSET_OUT_OF_RANGE; the high watermark of the fetch responses shows it either way. In a
        healthy log the stored position exceeds it only until the first fetch after an assignment.
        """
        consumer = self._consumer
        assert consumer is not None
        highs = {
            tp: consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)[1]
            for tp in self.positions
            if tp in self.assigned
        }
        lost = lost_log_end(self.positions, highs, self._past_log_end, time.monotonic())
        if lost is not None:
            (topic, partition), high = lost
            raise IngestError(self._lost_data_message(topic, partition, f"the log ends at {high}"))

    def _report_lag(self) -> None:
        """Lag per partition: the high watermark of the last fetch response minus the landed position.

        The fetch response's high watermark is right on every broker; ListOffsets (what
        `get_watermark_offsets(cached=False)` asks) is wrong on the dev broker, so it is never used.
        """
        if self.metrics is None or self._consumer is None:
            return
        for topic, partition in self.assigned:
            low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            if high < 0:
                continue  # no fetch response yet
            landed = self.positions.get((topic, partition), max(low, 0))
            self.metrics.set_lag(topic, partition, max(0, high - landed))

    def _log_dropped(self) -> None:
        """One line per partition for re-read records dropped because they were landed before."""
        runs = self._dropped.drain()
        if self.metrics is not None:
            self.metrics.already_landed.inc(sum(run.events for run in runs))
        for run in runs:
            log.info(
                "dropped %d already-landed records %s (landed before; positions come from the lake)",
                run.events,
                run.ref,
                extra=run.fields,
            )

    def _lost_data_message(self, topic: str, partition: int, detail: str) -> str:
        stored = self.positions.get((topic, partition))
        return (
            f"{topic}[{partition}]: the offset stored in the lake ({stored}) is outside the log "
            "on the broker "
            f"({detail}). The broker has lost or truncated data that was already landed. "
            "Nothing was skipped or re-read. Re-produce the topic (e.g. a new Debezium snapshot), then "
            "rebuild staging from what the broker now holds with `ingest replay --from earliest "
            f"--topics '^{re.escape(topic)}$'`; it switches atomically and the ingester resumes from the "
            "replayed positions (see docs/operations.md, 'Broker outage or data loss')."
        )

    def _on_consumer_error(self, message: Message, error: KafkaError) -> None:
        topic, partition, offset = position(message)
        where = event_ref(topic, partition, offset)
        if error.code() in (KafkaError.OFFSET_OUT_OF_RANGE, KafkaError._AUTO_OFFSET_RESET):
            raise IngestError(self._lost_data_message(topic, partition, error.str()))
        if error.fatal():
            raise IngestError(f"{where}: fatal consumer error: {error.str()}")
        log.warning(
            "%s: consumer error: %s",
            where,
            error.str(),
            extra=event_fields(topic, partition, offset),
        )
