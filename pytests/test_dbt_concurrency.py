"""Two `dbt build`s of one target at once: the plugin's lock (ingest/dbt_plugin.py) makes the second wait for
the first, says so, and both leave the curated and serving layers right."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CORPUS, REPO, VARIANTS, seed_dbt_target
from ingest.devtools.corpus import produce, read_variant

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not VARIANTS, reason="corpus not present")]


def start_build(lake, path: Path) -> subprocess.Popen[str]:
    path.mkdir()
    seed_dbt_target(lake, path / "target")
    command = [
        str(Path(sys.executable).parent / "dbt"),
        "build",
        "--target-path",
        str(path / "target"),
        "--log-path",
        str(path / "logs"),
    ]
    with (path / "stdout").open("w") as stdout, (path / "stderr").open("w") as stderr:
        return subprocess.Popen(command, env=lake.env, cwd=REPO, stdout=stdout, stderr=stderr)


def test_a_second_build_waits_for_the_first(lake, tmp_path):
    produce(
        read_variant(CORPUS / "precise-schemas", topic_prefix=lake.topic_prefix), lake.settings.kafka.client
    )
    lake.ingest("run", "--until-caught-up")

    builds = {name: start_build(lake, tmp_path / name) for name in ("a", "b")}
    results = [
        (
            build.wait(timeout=900),
            (tmp_path / name / "stdout").read_text(),
            (tmp_path / name / "stderr").read_text(),
        )
        for name, build in builds.items()
    ]

    for code, stdout, _ in results:
        assert code == 0, stdout[-6000:]
    waited = [stderr for _, _, stderr in results if "waiting for it to finish" in stderr]
    assert len(waited) == 1, "exactly one build must have waited for the other"
    assert "another dbt run holds target 'dev'" in waited[0]
    # both ran every model and test (reconciliation, history consistency, marts) on a consistent lake
    for _, stdout, _ in results:
        assert "ERROR=0" in stdout and "Completed successfully" in stdout
    assert sorted(lake.query("select id from lake.curated.inventory__customers")) == [
        (1001,),
        (1002,),
        (1003,),
        (1004,),
        (1006,),
        (1007,),
    ]
    assert sorted(
        lake.query("select product_id, quantity from lake.curated.inventory__products_on_hand")
    ) == [
        (101, 7),
        (102, 20),
    ]
    # no version was written twice by the two builds
    assert lake.query(
        "select count(*) from (select id, _cdc_batch_id, _cdc_kafka_partition, _cdc_kafka_offset, count(*) "
        "from lake.curated.inventory__customers__history group by all having count(*) > 1)"
    ) == [(0,)]
