import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { createLogger } from '../../src/logger';
import { ensurePythonVenv } from '../../src/stack/service';
import { migrateAsOwner } from '../../src/stores/migrate';
import { createOltpPool } from '../../src/stores/oltp';
import { createPool } from '../../src/stores/postgres';
import { listRuns } from '../../src/stores/reconciliation';
import { createS3Client, ensureBucket } from '../../src/stores/s3';
import { type SnowflakeSession, connectSnowflake } from '../../src/stores/snowflake';
import { migrateSnowflake } from '../../src/stores/snowflake-migrate';
import { createFinanceWorker } from '../../src/workers/finance-worker';
import { config, requireServices, uniqueId } from '../support/stack';

// The Airflow DAG's start function (airflow/dags/paylink_reconciliation.py), run by the stack's Python
// venv (tools/python/requirements.txt has temporalio) against the local Temporal: it must start the same
// ReconciliationWorkflow the CLI starts, under the same id, and return its result. Airflow itself is not
// installed here; the module defines the DAG only where it is.

const DAG = join(__dirname, '..', '..', 'airflow', 'dags', 'paylink_reconciliation.py');

function runPython(
  python: string,
  script: string,
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; signal: string | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(python, ['-c', script], { env: { ...process.env, ...env } });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('close', (code, signal) => resolve({ code: code ?? -1, signal, out, err }));
  });
}

describe('Airflow DAG: its start function starts reconciliation/<day> on the local Temporal', () => {
  const pool = createPool(config, 2);
  const oltp = createOltpPool(config, 1);
  const s3 = createS3Client(config);
  const bucket = uniqueId('recon-airflow').toLowerCase();
  const taskQueue = uniqueId('reconciliation-airflow');
  let snowflake: SnowflakeSession;
  let connection: Connection;
  let nativeConnection: NativeConnection;
  let worker: Worker;
  let running: Promise<void>;

  before(async () => {
    await requireServices('postgres', 'temporal', 'snowflake', 's3');
    await migrateAsOwner(config);
    await migrateSnowflake(config);
    await ensureBucket(s3, bucket);
    snowflake = await connectSnowflake(config);
    connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
    nativeConnection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
    worker = await createFinanceWorker({
      connection: nativeConnection,
      namespace: config.TEMPORAL_NAMESPACE,
      pool,
      snowflake,
      log: createLogger('airflow-dag-test'),
      taskQueue,
      oltp,
      oltpSchema: config.CDC_SCHEMA,
      reconciliation: { oltp, s3, bucket },
    });
    running = worker.run();
  });

  after(async () => {
    worker?.shutdown();
    await running?.catch(() => undefined);
    await snowflake?.close();
    await connection?.close();
    await nativeConnection?.close();
    await pool.end();
    await oltp.end();
    s3.destroy();
  });

  it('start_reconciliation returns the workflow result, under the CLI id, and a second call supersedes', async () => {
    const python = ensurePythonVenv().bin('python');
    assert.ok(existsSync(python), `venv python at ${python}`);
    const scope = `${uniqueId('airflow')}-`;
    const window = '2026-01-03';
    const script = `
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("dag", ${JSON.stringify(DAG)})
dag = importlib.util.module_from_spec(spec); spec.loader.exec_module(dag)
assert dag.DAG is None, "Airflow is not installed in the stack's venv"
r = dag.start_reconciliation(${JSON.stringify(window)}, scope=${JSON.stringify(scope)}, bucket=${JSON.stringify(bucket)})
print(json.dumps(r), flush=True)
# The SDK's Rust threads can outlive interpreter finalization and crash it after the work is done
# (temporalio/sdk-python#300); an Airflow worker is a long-lived process, so end this one without teardown.
import os; os._exit(0)
`;
    const env = {
      TEMPORAL_ADDRESS: config.TEMPORAL_ADDRESS,
      TEMPORAL_NAMESPACE: config.TEMPORAL_NAMESPACE,
      PAYLINK_RECONCILIATION_TASK_QUEUE: taskQueue,
    };
    const first = await runPython(python, script, env);
    assert.equal(first.code, 0, `python exited ${first.signal ?? first.code}: ${first.err}${first.out}`);
    const r1 = JSON.parse(first.out.trim().split('\n').at(-1)!) as {
      workflowId: string;
      window: string;
      scope: string;
      runId: number;
      outcome: string;
      breaks: number;
    };
    assert.equal(r1.workflowId, `reconciliation/${window}/${scope}`);
    assert.equal(r1.window, window);
    assert.equal(r1.scope, scope);
    assert.equal(r1.outcome, 'written');
    assert.equal(r1.breaks, 0);
    // The same execution as Temporal records it: the workflow type the CLI starts, completed.
    const client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
    const d = await client.workflow.getHandle(r1.workflowId).describe();
    assert.equal(d.type, 'reconciliationWorkflow');
    assert.equal(d.status.name, 'COMPLETED');
    assert.equal(d.taskQueue, taskQueue);

    const second = await runPython(python, script, env);
    assert.equal(second.code, 0, `python exited ${second.signal ?? second.code}: ${second.err}${second.out}`);
    const runs = await listRuns(pool, window, scope);
    assert.deepEqual(
      runs.map((x) => x.status),
      ['superseded', 'current'],
    );
    assert.equal(runs[0]!.runId, r1.runId);
  });
});
