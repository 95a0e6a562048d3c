import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { type ReplayResult, Worker, type WorkflowBundle, bundleWorkflowCode } from '@temporalio/worker';
import { DeterminismViolationError } from '@temporalio/workflow';
import { historyFromJSON } from '../../src/ops/history-json';

// Determinism check, offline: recorded histories (npm run histories:record) must replay against the
// current workflow code, and a deliberately altered one must fail, proving the check can fail.

const HISTORIES_DIR = join(__dirname, '..', 'fixtures', 'histories');
const ALTERED_DIR = join(HISTORIES_DIR, 'altered');
const MIN_HISTORIES = 4;
// Long-running workflows that must stay covered: a change that breaks replay breaks every open run.
const COVERED_WORKFLOW_TYPES = ['backfillWorkflow', 'partnerPollWorkflow', 'paymentWorkflow'];

interface Fixture {
  file: string;
  workflowId: string;
  workflowType: string | undefined;
  history: ReturnType<typeof historyFromJSON>;
}

function loadFixtures(dir: string): Fixture[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((file) => {
      const history = historyFromJSON(JSON.parse(readFileSync(join(dir, file), 'utf8')));
      // The workflow id is not replayed from history by default; the started event carries the real one.
      const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
      const workflowId = started?.workflowId;
      assert.ok(workflowId, `${file}: first event is not a WorkflowExecutionStarted with a workflowId`);
      return { file, workflowId, workflowType: started?.workflowType?.name ?? undefined, history };
    });
}

async function replay(workflowBundle: WorkflowBundle, fixtures: Fixture[]): Promise<ReplayResult[]> {
  const results: ReplayResult[] = [];
  const histories = fixtures.map((f) => ({ history: f.history, workflowId: f.workflowId }));
  for await (const result of Worker.runReplayHistories({ workflowBundle }, histories)) results.push(result);
  assert.equal(results.length, fixtures.length, 'every history yields a replay result');
  return results;
}

describe('workflow replay (determinism)', () => {
  let workflowBundle: WorkflowBundle;

  before(async () => {
    // One bundle of the real src/workflows for both replays, as the worker would run it.
    workflowBundle = await bundleWorkflowCode({ workflowsPath: require.resolve('../../src/workflows') });
  });

  it('replays every recorded history against the current workflow code', async () => {
    const fixtures = loadFixtures(HISTORIES_DIR);
    assert.ok(
      fixtures.length >= MIN_HISTORIES,
      `expected at least ${MIN_HISTORIES} histories in ${HISTORIES_DIR}, found ${fixtures.length}`,
    );
    const types = new Set(fixtures.map((f) => f.workflowType));
    const uncovered = COVERED_WORKFLOW_TYPES.filter((t) => !types.has(t));
    assert.deepEqual(uncovered, [], `no recorded history of ${uncovered.join(', ')}: npm run histories:record`);
    const results = await replay(workflowBundle, fixtures);
    const failures = results.flatMap((r, i) => (r.error ? [`${fixtures[i]!.file}: ${r.error.message}`] : []));
    assert.deepEqual(failures, [], `histories that no longer replay:\n${failures.join('\n')}`);
  });

  it('fails with a DeterminismViolationError on the deliberately altered history', async () => {
    const altered = loadFixtures(ALTERED_DIR);
    const alteredTypes = new Set(altered.map((f) => f.workflowType));
    const unaltered = COVERED_WORKFLOW_TYPES.filter((t) => !alteredTypes.has(t));
    assert.deepEqual(unaltered, [], `no altered history of ${unaltered.join(', ')} in ${ALTERED_DIR}`);
    const results = await replay(workflowBundle, altered);
    for (const [i, r] of results.entries()) {
      assert.ok(
        r.error instanceof DeterminismViolationError,
        `${altered[i]!.file}: expected DeterminismViolationError, got ${r.error ? `${r.error.name}: ${r.error.message}` : 'a clean replay'}`,
      );
      assert.equal(r.error.name, 'DeterminismViolationError');
      assert.match(r.error.message, /nondeterminism/i);
    }
  });
});
