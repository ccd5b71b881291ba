"""Ingest throughput: events/s landed in staging, divided by the raw consume rate of the same messages.

Both are measured in the same run, from the same embedded broker, so the ratio survives a noisy machine.
The raw rate is confluent-kafka `assign()` + `consume(10000)` until partition EOF, doing nothing with the
messages: the ceiling for a Python consumer. The landed rate is the real ingester (decode, type, batch,
commit to DuckLake with offsets) reading the same topic into a fresh lake, once as configured by default
(plain chunks decoded in SQL, `batch.sql_decoding`) and once decoding every record in Python. Both rates are
timed from the first records read, so neither counts its client's start-up; the landed rate is also
reported with the ingester's start-up included (consumer, assignment, positions read from the lake).
~1 KB Debezium envelopes, schemas off and on. Prints a table and writes bench/results/ingest_throughput.json.

    .venv/bin/python bench/ingest_throughput.py [--events 200000] [--runs 3]
"""

from __future__ import annotations

import argparse
import time
import uuid

from common import (
    REPO,
    bench_env,
    consume_pages,
    customer_payload,
    customer_schemas,
    delete_topic,
    encode,
    produce_all,
    spread,
    write_result,
)

from ingest.core.config import load_settings
from ingest.core.consumer import Ingester
from ingest.core.logs import configure_logging
from ingest.core.ownership import Member
from ingest.core.sink import LakeSink
from ingest.embedded.catalog import connect_lake


def produce(bootstrap: str, topic: str, events: int, schemas: bool) -> float:
    """Produce `events` ~1 KB customers creates (key = event number); returns the mean value size."""
    envelope_schemas = customer_schemas() if schemas else None
    records = (encode(customer_payload(i, i), i, envelope_schemas) for i in range(events))
    _, size = produce_all(bootstrap, topic, records)
    return size / events


def raw_consume_rate(bootstrap: str, topic: str, events: int) -> float:
    pages = consume_pages(bootstrap, topic, "raw")
    seen, started = 0, None
    for page in pages:
        if started is None and (page.messages or page.eof):
            started = page.arrived  # timed from the first records, as they arrive
        seen += len(page.messages)
        if page.eof and seen >= events:
            break
    elapsed = time.perf_counter() - started
    pages.close()
    return seen / elapsed


def landed_rate(settings_env: dict[str, str], topic: str, events: int) -> tuple[float, float]:
    """Events/s landed, timed from the first records read to the last commit (as the raw rate is timed
    from its first records), and timed from the start of `Ingester.run` (its start-up included: consumer,
    assignment, positions read from the lake)."""
    settings = load_settings("dev", project_dir=REPO, environ={**settings_env, "INGEST_TOPICS": f"^{topic}$"})
    sink = LakeSink.for_lake(
        lambda: connect_lake(settings), settings.lake, member=Member.this_process(settings.group_id)
    )
    sink.open()  # attach and create bookkeeping tables outside the timed part
    started = time.monotonic()
    stats = Ingester(settings, sink).run(until_caught_up=True)
    ended = time.monotonic()
    sink.close()
    assert stats.change_rows == events and stats.first_read_at is not None, stats
    return events / (ended - stats.first_read_at), events / (ended - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    configure_logging("text", level=30)
    results: dict[str, dict] = {}
    with bench_env() as bench:
        for schemas in (False, True):
            mode = "schemas on" if schemas else "schemas off"
            figures: dict[str, list[float]] = {}
            for run in range(args.runs):
                topic = f"bench{run}{uuid.uuid4().hex[:6]}.inventory.customers"
                size = produce(bench.bootstrap, topic, args.events, schemas)
                raw = raw_consume_rate(bench.bootstrap, topic, args.events)
                landed, with_start = landed_rate(bench.lake_env(f"^{topic}$"), topic, args.events)
                python, _ = landed_rate(
                    bench.lake_env(f"^{topic}$", INGEST_BATCH__SQL_DECODING="false"), topic, args.events
                )
                delete_topic(bench.bootstrap, topic)  # before the next run produces its events
                run_figures = {
                    "raw_consume_per_s": raw,
                    "landed_per_s": landed,
                    "ratio": landed / raw,
                    "landed_with_start_up_per_s": with_start,
                    "ratio_with_start_up": with_start / raw,
                    "landed_python_decoding_per_s": python,
                    "ratio_python_decoding": python / raw,
                }
                for name, value in run_figures.items():
                    figures.setdefault(name, []).append(value)
                print(
                    f"{mode} run {run + 1}: {size:.0f} B/event, raw {raw:,.0f}/s, landed {landed:,.0f}/s, "
                    f"ratio {landed / raw:.3f} (start-up included {with_start / raw:.3f}); "
                    f"Python decoding only {python:,.0f}/s, ratio {python / raw:.3f}",
                    flush=True,
                )
            results[mode] = {"value_bytes": round(size)} | {n: spread(v) for n, v in figures.items()}
    write_result(
        "ingest_throughput",
        f"python bench/ingest_throughput.py --events {args.events} --runs {args.runs}",
        results,
        events=args.events,
        runs=args.runs,
        goal="landed / raw >= 0.5",
    )
    print()
    print(
        "| mode | value size | raw consume (events/s) | landed (events/s) | landed / raw (median, min-max) |"
    )
    print("|---|---|---|---|---|")
    for mode, r in results.items():
        print(
            f"| {mode} | {r['value_bytes']} B | {r['raw_consume_per_s']['median']:,.0f} | "
            f"{r['landed_per_s']['median']:,.0f} | {r['ratio']['median']:.3f} "
            f"({r['ratio']['min']:.3f}-{r['ratio']['max']:.3f}) |"
        )


if __name__ == "__main__":
    main()
