"""`dbt build` on test data: land a corpus variant, then the real dbt build (models, contracts, unit and data
tests, reconciliation) against that lake, twice (the second build is incremental)."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CORPUS, REPO, VARIANTS, dbt
from ingest.devtools.corpus import produce, read_variant

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not VARIANTS, reason="corpus not present")]


def test_dbt_build_passes_and_lints_clean_on_a_landed_corpus(lake, tmp_path):
    # Schemas on, decimals precise: the configuration the curated contracts are typed for.
    variant = "precise-schemas"
    produce(read_variant(CORPUS / variant, topic_prefix=lake.topic_prefix), lake.settings.kafka.client)
    lake.ingest("run", "--until-caught-up")
    first = dbt(lake, tmp_path, "build")
    assert first.returncode == 0, first.stdout[-6000:]
    second = dbt(lake, tmp_path, "build")
    assert second.returncode == 0, second.stdout[-6000:]
    # the corpus's final state, from its SQL: customer 1005 deleted, 1006 and 1007 created, 1001 got a phone
    customers = dict(lake.query("select id, email from lake.curated.inventory__customers"))
    assert sorted(customers) == [1001, 1002, 1003, 1004, 1006, 1007]
    assert lake.query("select phone from lake.curated.inventory__customers where id = 1001") == [
        ("+1-555-0101",)
    ]
    # TRUNCATE then two inserts, then the transaction's update of product 101: 10 - 3
    assert sorted(
        lake.query("select product_id, quantity from lake.curated.inventory__products_on_hand")
    ) == [(101, 7), (102, 20)]
    # the primary-key change 110 -> 210
    assert lake.query("select id from lake.curated.inventory__products where id in (110, 210)") == [(210,)]

    # `dbt source freshness` reads each topic's _ingested_at: just landed, so every source passes
    freshness = dbt(lake, tmp_path, "source", "freshness")
    assert freshness.returncode == 0, freshness.stdout[-4000:]
    assert freshness.stdout.count(" PASS ") >= 7 and "inventory__type_zoo" in freshness.stdout

    # `make lint` lints against an empty lake, where every incremental model compiles its full-refresh
    # branch; with the models built, sqlfluff sees the incremental branches too
    lint = subprocess.run(
        [str(Path(sys.executable).parent / "sqlfluff"), "lint", "models", "macros", "tests"],
        env=lake.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert lint.returncode == 0, lint.stdout[-6000:] + lint.stderr[-2000:]
