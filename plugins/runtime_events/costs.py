"""What a run's statements cost on Athena: the statistics each one pushed, priced.

Athena's price is per byte scanned, so the bytes each statement scanned (from Athena, or from
the embedded engine's imitation) make the rows of ``runtime_events_query_costs``.
"""

from __future__ import annotations

import logging
import math
import re

from runtime_events.operators import QUERY_STATISTICS

log = logging.getLogger(__name__)

# Athena's price: $5 per TB scanned, each query rounded up to the MB with a 10 MB minimum; DDL
# statements are free (https://aws.amazon.com/athena/pricing/).
USD_PER_TB = 5.0
MB, TB = 2**20, 2**40
MIN_BILLED_BYTES = 10 * MB
# Values of the statistics that end up in SQL, and the form Athena gives them.
_STATISTICS = {"task_id": re.compile(r"^[a-z][a-z0-9_]*$"), "query_execution_id": re.compile(r"^[A-Za-z0-9-]+$"),
               "statement_type": re.compile(r"^(DDL|DML|UTILITY)$")}


def billed_bytes(statement_type: str | None, scanned: int) -> int:
    if statement_type == "DDL" and scanned == 0:
        return 0
    return max(math.ceil(scanned / MB) * MB, MIN_BILLED_BYTES)


def collect_query_costs(context) -> dict:
    """The statistics every statement of the run pushed, with their estimated cost, as the
    ``statements`` of ``runtime_events_query_costs/record_run.sql``; logs the run's total.

    A task instance pushed one statement's statistics, or a list of them (a task that runs
    several statements: their ``map_index`` is their position in the task)."""
    pushed = context["ti"].xcom_pull(task_ids=list(context["dag"].task_ids), key=QUERY_STATISTICS)
    statements = []
    for stats in (s for value in filter(None, pushed) for s in (value if isinstance(value, list) else [value])):
        for key, form in _STATISTICS.items():
            if not form.match(str(stats[key])):
                raise ValueError(f"query statistics {key}={stats[key]!r} is not of the form Athena reports")
        scanned = int(stats["data_scanned_bytes"])
        billed = billed_bytes(stats["statement_type"], scanned)
        statements.append({**stats, "map_index": int(stats["map_index"]), "data_scanned_bytes": scanned,
                           "billed_bytes": billed, "estimated_cost_usd": billed / TB * USD_PER_TB})
    log.info("run total: %d statements scanned %d bytes, billed %d bytes, estimated cost $%.6f",
             len(statements), sum(s["data_scanned_bytes"] for s in statements),
             sum(s["billed_bytes"] for s in statements), sum(s["estimated_cost_usd"] for s in statements))
    return {"statements": statements}
