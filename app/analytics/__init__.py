"""Business metrics of the cinema (time on site, retention, ratings, completion,
recommendation funnel, ingestion health, model runs) read from ClickHouse.
SQL in `queries`, the Python API returning plain dicts in `api`."""
