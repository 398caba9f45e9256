"""SQLAlchemy connect arguments for Airflow's SQLite metadata database in tests that run a
scheduler, an api-server and task processes at once: wait for the write lock instead of failing
after SQLite's default five seconds."""

CONNECT_ARGS = {"timeout": 120}
