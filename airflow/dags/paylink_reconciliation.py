"""PayLink reconciliation for teams that schedule with Airflow (docs/reconciliation.md#airflow).

A daily DAG whose one task starts the same Temporal workflow as ``npm run finance -- reconcile``:
``reconciliationWorkflow`` with id ``reconciliation/<day>`` on the ``finance`` task queue, and waits for
its result. The workflow does the work (and is idempotent: a re-run of a day supersedes the earlier
result); Airflow only starts it, so a retried task or a cleared day never runs two reconciliations at once
(the workflow id is refused while one is running, and the task then waits for that one).

Configuration from the environment (the Airflow worker's, or an Airflow connection exported to it):
``TEMPORAL_ADDRESS`` (host:port, default 127.0.0.1:7233), ``TEMPORAL_NAMESPACE`` (default ``default``),
``PAYLINK_RECONCILIATION_TASK_QUEUE`` (default ``finance``).

The start function imports nothing from Airflow, so it is tested against a local Temporal without
Airflow installed (test/integration/airflow-dag.test.ts).
"""

from __future__ import annotations

import asyncio
import os
import re
from datetime import timedelta
from typing import Any, Optional

WORKFLOW_TYPE = "reconciliationWorkflow"
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def workflow_id(window: str, scope: str = "") -> str:
    """The id the TypeScript starter uses (src/workflows/reconciliation.ts reconciliationWorkflowId)."""
    return f"reconciliation/{window}/{scope}" if scope else f"reconciliation/{window}"


async def start_reconciliation_async(
    window: str,
    *,
    scope: str = "",
    oltp_schema: str = "public",
    bucket: Optional[str] = None,
    address: Optional[str] = None,
    namespace: Optional[str] = None,
    task_queue: Optional[str] = None,
    timeout: timedelta = timedelta(minutes=30),
) -> dict[str, Any]:
    """Starts reconciliation/<window> and returns the workflow's result (a dict, as the CLI's --json)."""
    from temporalio.client import Client
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

    if not DAY.match(window):
        raise ValueError(f'window "{window}" is not a UTC day (YYYY-MM-DD)')
    client = await Client.connect(
        address or os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
        namespace=namespace or os.environ.get("TEMPORAL_NAMESPACE", "default"),
    )
    args: dict[str, Any] = {"window": window, "scope": scope, "oltpSchema": oltp_schema}
    if bucket:
        args["bucket"] = bucket
    wf_id = workflow_id(window, scope)
    handle = await client.start_workflow(
        WORKFLOW_TYPE,
        args,
        id=wf_id,
        task_queue=task_queue or os.environ.get("PAYLINK_RECONCILIATION_TASK_QUEUE", "finance"),
        execution_timeout=timeout,
        # A finished day may be reconciled again (it supersedes); one already running is joined, not doubled.
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    result = await handle.result()
    return {"workflowId": wf_id, **result}


def start_reconciliation(window: str, **kwargs: Any) -> dict[str, Any]:
    """Synchronous wrapper for Airflow's PythonOperator (and scripts)."""
    return asyncio.run(start_reconciliation_async(window, **kwargs))


# --- the DAG (only where Airflow is installed) -------------------------------------------------------
try:  # Airflow 3
    from airflow.sdk import DAG  # type: ignore[import-not-found]
    from airflow.providers.standard.operators.python import PythonOperator  # type: ignore[import-not-found]
except ImportError:
    try:  # Airflow 2
        from airflow import DAG  # type: ignore[import-not-found,no-redef]
        from airflow.operators.python import PythonOperator  # type: ignore[import-not-found,no-redef]
    except ImportError:
        DAG = None  # type: ignore[assignment,misc]

if DAG is not None:
    import pendulum  # type: ignore[import-not-found]

    def _reconcile(ds: str, **_: Any) -> dict[str, Any]:
        # A daily run's logical date is the start of the day it covers: that day is the window.
        return start_reconciliation(ds)

    with DAG(
        dag_id="paylink_reconciliation",
        description="Three-way reconciliation of PayLink's ledger, OLTP records and settlement files",
        schedule="5 2 * * *",
        start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
        tags=["paylink", "finance"],
    ) as dag:
        PythonOperator(task_id="reconcile", python_callable=_reconcile)
