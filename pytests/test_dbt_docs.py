"""`dbt docs generate` on the project: every model, column and source documented, each Kafka topic a source
with freshness, and lineage from the topics through curated to every mart and the dashboard exposure."""

import json

import pytest

from conftest import dbt

pytestmark = pytest.mark.integration


def test_docs_show_documented_lineage_from_every_topic_to_every_mart(lake, tmp_path):
    docs = dbt(lake, tmp_path, "docs", "generate")
    assert docs.returncode == 0, docs.stdout[-4000:]
    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    assert (tmp_path / "target" / "catalog.json").exists() and (tmp_path / "target" / "index.html").exists()
    nodes = {k: v for k, v in manifest["nodes"].items() if v["package_name"] == "cdc_lakehouse"}
    models = {k: v for k, v in nodes.items() if v["resource_type"] == "model"}
    sources = {k: v for k, v in manifest["sources"].items() if v["package_name"] == "cdc_lakehouse"}

    undocumented = [k for k, v in {**models, **sources}.items() if not v["description"].strip()]
    undocumented += [
        f"{k}.{c}"
        for k, v in {**models, **sources}.items()
        for c, col in v["columns"].items()
        if not col["description"].strip()
    ]
    assert not undocumented, undocumented
    for key, model in models.items():
        assert model["config"]["contract"]["enforced"], f"{key}: contract not enforced"
        assert all(c["data_type"] for c in model["columns"].values()), f"{key}: a column without data_type"

    for key, source in sources.items():
        assert source["meta"]["kafka_topic"].endswith(source["name"].replace("__", ".")), key
        assert source["loaded_at_field"] == "_ingested_at", key
        assert source["freshness"]["warn_after"]["count"] and source["freshness"]["error_after"]["count"], key

    children = manifest["child_map"]
    parents = manifest["parent_map"]

    def descendants(node):
        seen, todo = set(), [node]
        while todo:
            for child in children.get(todo.pop(), []):
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        return seen

    def ancestors(node):
        seen, todo = set(), [node]
        while todo:
            for parent in parents.get(todo.pop(), []):
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return seen

    curated = {k for k, v in models.items() if "curated" in v["fqn"]}
    marts = {k for k, v in models.items() if "serving" in v["fqn"]}
    assert marts and curated
    for key in sources:
        assert descendants(key) & curated, f"{key}: no curated model reads this topic"
    for mart in marts:
        upstream = ancestors(mart)
        assert upstream & curated, f"{mart}: not built from curated"
        assert upstream & set(sources), f"{mart}: no Kafka topic in its lineage"
    (exposure,) = [k for k in manifest["exposures"] if k.endswith("inventory_operations_dashboard")]
    assert set(manifest["exposures"][exposure]["depends_on"]["nodes"]) == marts
    # the demo domain's topics all reach the dashboard
    dashboard_sources = {k.rsplit(".", 1)[-1] for k in ancestors(exposure) if k.startswith("source.")}
    assert {
        f"inventory__{t}" for t in ("customers", "products", "products_on_hand", "orders")
    } <= dashboard_sources
