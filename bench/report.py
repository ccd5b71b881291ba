"""Render bench/results/*.json into the generated section of docs/benchmarks.md.

Only the text between the two markers is replaced; everything else in the file (analysis, other teams'
sections) is kept as written.

    .venv/bin/python bench/report.py
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "benchmarks.md"
BEGIN = "<!-- bench/report.py: generated section, begin (do not edit by hand) -->"
END = "<!-- bench/report.py: generated section, end -->"


def fmt(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def triple(stat: dict, digits: int = 0, unit: str = "") -> str:
    return (
        f"{fmt(stat['median'], digits)}{unit} ({fmt(stat['min'], digits)}-{fmt(stat['max'], digits)})"
        if stat["min"] != stat["max"]
        else f"{fmt(stat['median'], digits)}{unit}"
    )


def header(title: str, report: dict) -> list[str]:
    m = report["machine"]
    return [
        f"### {title}",
        "",
        f"Command: `.venv/bin/{report['command']}`. Goal: {report.get('goal', 'n/a')}.",
        f"Machine: {m['cpus']} cores, {m['memory_gib']} GiB, Python {m['python']}, {m['date']}, "
        f"load average at the end {m['load_average_at_end']}.",
        "Figures: median (min-max) of the runs.",
        "",
    ] + ([f"Note: {report['note']}", ""] if report.get("note") else [])


def ingest_throughput(report: dict) -> list[str]:
    lines = header("Ingest throughput vs raw confluent-kafka consume", report)
    lines += [
        "| mode | value size | raw consume (events/s) | landed (events/s) | landed / raw |",
        "|---|---|---|---|---|",
    ]
    results = report["results"].values()
    start_up_column = any("ratio_with_start_up" in r for r in results)
    if start_up_column:  # results since fc2a2b3: landed is timed from the first records, as raw is
        lines[-2] += " landed / raw, the ingester's start-up included |"
        lines[-1] += "---|"
    python_column = any("ratio_python_decoding" in r for r in results)
    if python_column:  # results since 4403934: the same run also lands with every record decoded in Python
        lines[-2] += " landed, Python decoding only (events/s) | its landed / raw |"
        lines[-1] += "---|---|"
    for mode, r in report["results"].items():
        line = (
            f"| {mode} | {r['value_bytes']} B | {triple(r['raw_consume_per_s'])} | "
            f"{triple(r['landed_per_s'])} | **{triple(r['ratio'], 3)}** |"
        )
        if start_up_column:
            line += f" {triple(r['ratio_with_start_up'], 3)} |"
        if python_column:
            line += (
                f" {triple(r['landed_python_decoding_per_s'])} | {triple(r['ratio_python_decoding'], 3)} |"
            )
        lines.append(line)
    if start_up_column:
        lines += [
            "",
            "Both rates are timed from the first records read; the extra column counts the ingester's "
            "start-up (consumer, assignment, positions read from the lake) in the landed time, as results "
            "before 2026-11-21 20:18 UTC (fc2a2b3) did.",
        ]
    return lines


def peer_dlt(report: dict) -> list[str]:
    r = report["results"]
    lines = header(f"Peer: dlt merge into DuckDB ({fmt(report['events'])} events)", report)
    lines += [
        "| figure | value |",
        "|---|---|",
        f"| dlt (extract + normalize + merge load) events/s | {triple(r['dlt_per_s'])} |",
        f"| ours (ingest to staging + dbt run history & current) events/s | {triple(r['ours_per_s'])} |",
        f"| ours / dlt (events/s ratio) | **{triple(r['ratio'], 2)}** |",
        f"| ours staging only / dlt | {triple(r['ratio_staging_only'], 2)} |",
        f"| dlt seconds | {triple(r['dlt_s'], 1)} |",
        f"| our ingest seconds (CLI process, start-up included) | {triple(r['ingest_s'], 1)} |",
        f"| our dbt run seconds (process, parse included) | {triple(r['dbt_s'], 1)} |",
        f"| equal end results (same rows per key, {fmt(r['live_keys'])} live keys) | "
        f"{'yes' if r['equal_end_results'] else 'NO'} |",
    ]
    return lines


def freshness(report: dict) -> list[str]:
    lines = header(f"Freshness: produce to visible in staging ({report['duration_s']:g} s per run)", report)
    lines += [
        f"Poll interval {report['poll_ms']} ms (adds up to that to each figure); ingester "
        f"`batch.max_ms={report['batch_max_ms']}`.",
        "",
        "| rate | p50 (ms) | p99 (ms) | max (ms) | batches | events/batch | landing p50 (ms) "
        "| landing p99 (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rate, r in report["results"].items():
        lines.append(
            f"| {rate} | {triple(r['p50_ms'])} | **{triple(r['p99_ms'])}** | {triple(r['max_ms'])} | "
            f"{triple(r['batches'])} | {triple(r['mean_batch_events'])} | {triple(r['land_p50_ms'])} | "
            f"{triple(r['land_p99_ms'])} |"
        )
    return lines


def _node_name(unique_id: str) -> str:
    """`model.<project>.<name>` or `test.<project>.<name>.<hash>`: the name, shortened."""
    name = unique_id.split(".")[2]
    return name if len(name) <= 60 else name[:57] + "..."


def dbt_incremental(report: dict) -> list[str]:
    r = report["results"]
    sizes = [str(s) for s in report["history"]]
    lines = header(
        f"Incremental cost: dbt build of the curated models after {fmt(report['new_events'])} new events",
        report,
    )
    lines += [
        "| history (change events) | staging rows | maintain (s) | incremental wall (s) | "
        "incremental models (s) | incremental tests (s) | incremental other (s) | full refresh (s) | "
        "full / incremental |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(row: dict, key: str, digits: int = 1) -> str:
        return triple(row[key], digits) if key in row else "-"

    for size in sizes:
        row = r[size]
        lines.append(
            f"| {fmt(int(size))} | {fmt(row['staging_rows']) if 'staging_rows' in row else '-'} | "
            f"{row.get('maintain_s', '-')} | "
            f"{cell(row, 'incremental_wall_s')} | {cell(row, 'incremental_models_s')} | "
            f"{cell(row, 'incremental_tests_s')} | {cell(row, 'incremental_other_s')} | "
            f"{cell(row, 'full_refresh_wall_s')} | "
            f"{cell(row, 'full_over_incremental', 2)} |"
        )
    ratio = r.get("incremental_large_over_small")
    if ratio:
        lines += [
            "",
            f"Incremental at {fmt(int(sizes[-1]))} / at {fmt(int(sizes[0]))} (medians): wall "
            f"**{ratio['wall']:.2f}**"
            + "".join(f", {part} {ratio[part]:.2f}" for part in ("models", "tests", "other") if part in ratio)
            + ".",
        ]
    slowest = r[sizes[-1]].get("nodes", {})
    for kind, per_node in slowest.items():
        top = list(per_node.items())[:5]
        lines += [
            "",
            f"Slowest nodes, {kind.replace('_', ' ')} at {fmt(int(sizes[-1]))} (median s): "
            + ", ".join(f"`{_node_name(node)}` {seconds:.2f}" for node, seconds in top)
            + ".",
        ]
    return lines


def memory(report: dict) -> list[str]:
    r = report["results"]
    lines = header(f"Memory: draining a backlog of {fmt(report['events'])} events", report)
    lines += [
        "| peak RSS (MB) | median RSS (MB) | drain (s) | drain (events/s) |",
        "|---|---|---|---|",
        f"| **{triple(r['peak_rss_mb'])}** | {triple(r['median_rss_mb'])} | {triple(r['drain_s'])} | "
        f"{triple(r['drain_per_s'])} |",
    ]
    return lines


def by_count(results: dict) -> list[tuple[int, dict]]:
    """The rows `N=1` .. `N=3` of a result measured for 1, 2 and 3 processes, those present."""
    return [(n, results[f"N={n}"]) for n in (1, 2, 3) if f"N={n}" in results]


def scale_out(report: dict) -> list[str]:
    r = report["results"]
    lines = header(
        f"Scale-out: 1, 2, 3 ingesters on one {report['partitions']}-partition topic, "
        f"{fmt(report['events'])}-event backlog",
        report,
    )
    lines += [
        "| members | landed (events/s, from start) | from the first commit | per core | vs N=1 "
        "| conflicts per member | retries per member |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, row in by_count(r):
        lines.append(
            f"| {n} | **{triple(row['landed_per_s'])}** | {triple(row['landed_from_first_commit_per_s'])} "
            f"| {triple(row['per_core_per_s'])} | {triple(row['ratio'], 2)} | {row['conflicts_per_member']} "
            f"| {row['retries_per_member']} |"
        )
    pauses = r["rebalance"]["runs"]
    lines += [
        "",
        f"Rebalance pause (a member of two stops; time until all its busy partitions land again): "
        f"**{triple(r['rebalance']['pause_s'], 1, ' s')}**, "
        f"{', '.join(str(p['partitions_moved']) for p in pauses)} partitions moved.",
    ]
    return lines


def catalog_commits(report: dict) -> list[str]:
    r = report["results"]
    lines = header(
        f"Commits per second one lake takes: batches of {report['rows_per_batch']} rows, "
        f"{report['seconds']:g} s per writer count",
        report,
    )
    lines += [
        "| writers | commits/s of the lake | vs 1 writer | commits per writer | lost and retried |",
        "|---|---|---|---|---|",
    ]
    for n, row in by_count(r):
        lines.append(
            f"| {n} | **{triple(row['commits_per_s'], 1)}** | {triple(row['ratio'], 2)} "
            f"| {row['commits_per_writer']} | {row['lost_per_writer']} |"
        )
    return lines


RENDERERS = {
    "ingest_throughput": ingest_throughput,
    "peer_dlt": peer_dlt,
    "freshness": freshness,
    "dbt_incremental": dbt_incremental,
    "memory": memory,
    "scale_out": scale_out,
    "catalog_commits": catalog_commits,
}


def render() -> str:
    parts = [BEGIN, "", "## Results (generated)", ""]
    for name, renderer in RENDERERS.items():
        path = RESULTS / f"{name}.json"
        if path.exists():
            parts += [*renderer(json.loads(path.read_text())), ""]
        else:
            parts += [f"### {name}", "", f"Not run yet: `.venv/bin/python bench/{name}.py`.", ""]
    parts.append(END)
    return "\n".join(parts)


def main() -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    generated = render()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + generated + tail
    else:
        text = text.rstrip("\n") + "\n\n" + generated + "\n"
    DOC.write_text(text)
    print(f"updated {DOC.relative_to(REPO)}")


if __name__ == "__main__":
    main()
