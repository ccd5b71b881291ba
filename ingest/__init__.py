"""Debezium change events from Kafka into DuckLake staging tables, exactly once."""
