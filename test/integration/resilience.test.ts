import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { runDemo } from '../support/demo';
import { requireServices } from '../support/stack';

// The pipeline under its operator's worst hours, through the demo's own drills (--fault): Postgres
// stopped fast (57P01 to every session) and killed -9, Temporal killed -9 for longer than a Kafka
// session, the Kafka broker killed -9, and kill -9 of every pipeline process once. Each run must end exact — the ledger equals
// the simulator's truth with no duplicate posting — with every process alive, and the outages must
// not multiply Temporal actions: no timer, no reopened payment, signals and actions near a quiet run
// of the same seed (docs/architecture.md, docs/operations.md).

interface Summary {
  paymentsClosed: number;
  /** Distinct facts the simulator delivered (by every path). */
  uniqueEvents: number;
  actionsPerPayment: number;
  actionsByKind: Record<string, number>;
  restarts: number;
  processes: { name: string; restarts: number; alive: boolean }[];
  faults?: { fault: string; postedAtStart: number; expectedEntries: number; downMs: number }[];
  ledger: { entries: number; unbalanced: number; duplicatePostings: number; matchesSimulator: boolean };
  piiLeaks: number;
}

const PAYMENTS = 200;
const SEED = 11;

function demo(...extra: string[]): Summary {
  return runDemo<Summary>(['--payments', String(PAYMENTS), '--seed', String(SEED), ...extra], 600_000);
}

function assertExact(s: Summary, what: string): void {
  assert.equal(s.paymentsClosed, PAYMENTS, `${what}: payments closed`);
  assert.equal(s.ledger.unbalanced, 0, `${what}: unbalanced entries`);
  assert.equal(s.ledger.duplicatePostings, 0, `${what}: duplicate postings`);
  assert.equal(s.ledger.matchesSimulator, true, `${what}: ledger differs from the simulator's truth`);
  assert.equal(s.piiLeaks, 0, `${what}: PII leaks`);
}

describe('the pipeline rides out outages and kill -9 (demo drills)', { timeout: 40 * 60_000 }, () => {
  let quiet: Summary;
  before(async () => {
    await requireServices('postgres', 'kafka', 'temporal', 's3', 'snowflake');
    quiet = demo();
    assertExact(quiet, 'quiet run');
    assert.equal(quiet.restarts, 0, 'a quiet run restarts nothing');
  });

  // Each drill begins once 30% of the postings landed (`@0.3`), so workflows are mid-posting when it hits: for
  // Postgres, the case that used to bill a retry per ledger-activity attempt (×1.12–×1.13 the quiet run's actions).
  const dependencyDrills: [fault: string, what: string][] = [
    ['postgres-fast:15@0.3', 'Postgres fast shutdown, down 15 s'],
    ['postgres-kill:15@0.3', 'Postgres kill -9, down 15 s'],
    // Longer than the consumer group's 30 s session: the router must keep its membership meanwhile.
    ['temporal-kill:35@0.3', 'Temporal kill -9, down 35 s'],
    ['kafka-kill:20@0.3', 'Kafka kill -9, down 20 s'],
  ];
  for (const [fault, what] of dependencyDrills) {
    it(`${what} mid-run: every process rides it out, the ledger is exact, no fact signalled twice`, (t) => {
      const s = demo('--fault', fault);
      assertExact(s, fault);
      const drill = s.faults?.[0];
      assert.ok(drill, `${fault}: the summary reports no drill`);
      assert.ok(
        drill.postedAtStart < drill.expectedEntries,
        `${fault}: the drill began after every posting (${drill.postedAtStart}/${drill.expectedEntries}), not mid-run`,
      );
      const share = /@([0-9.]+)$/.exec(fault);
      if (share) {
        assert.ok(
          drill.postedAtStart >= Number(share[1]) * drill.expectedEntries,
          `${fault}: the drill began at ${drill.postedAtStart}/${drill.expectedEntries} postings, before its share`,
        );
      }
      for (const p of s.processes) {
        assert.ok(p.alive, `${fault}: ${p.name} is not alive at the end`);
        assert.equal(p.restarts, 0, `${fault}: ${p.name} died and was restarted instead of riding it out`);
      }
      // The router's share, what a rebalance used to multiply (5,257 signals instead of ~2,900): no fact is
      // signalled twice. The facts that need a signal no longer depend on arrival order (a `created` is
      // never signalled; before, a CDC `created` reaching its payment first was), so the quiet run's
      // signals are the bound: 725 in each of quiet, postgres-kill and kafka-kill on 2026-11-29.
      const signals = (k: Record<string, number>): number =>
        (k.signal_workflow ?? 0) + (k.signal_workflow_with_start ?? 0);
      assert.ok(
        signals(s.actionsByKind) <= signals(quiet.actionsByKind) * 1.05,
        `${fault}: ${signals(s.actionsByKind)} signals vs ${signals(quiet.actionsByKind)} quiet (${s.uniqueEvents} facts)`,
      );
      // What out-of-order facts used to cost, structurally: a durable timer per wait (none now), and a new
      // run for a fact after the close (the kafka drill reopened all 200; CI measured up to 6 of 200).
      assert.equal(s.actionsByKind.start_timer ?? 0, 0, `${fault}: a payment started a durable timer`);
      const runs = (k: Record<string, number>): number => k.signal_workflow_with_start ?? 0;
      assert.ok(
        runs(s.actionsByKind) <= runs(quiet.actionsByKind) * 1.1,
        `${fault}: ${runs(s.actionsByKind)} runs vs ${runs(quiet.actionsByKind)} quiet: payments reopened`,
      );
      // All actions within 20% of the quiet run (signals and runs above are the structural bounds). A Postgres
      // kill -9 mid-posting measured ×1.12 while each ledger activity failed and was retried by Temporal (110
      // billed local retries); the activities now wait Postgres out inside their attempt: ×1.00–×1.02; Temporal
      // kill -9 @0.3 ×1.03, Kafka kill -9 @0.3 ×1.035 on 2026-11-29. With the fraud scenario's 90 extra payments
      // and the finance, DQ and fraud processes on the same cores, Temporal kill -9 @0.3 measured ×1.12 on
      // 2026-11-30 with the quiet run's signals exactly: 322 local-activity markers instead of 194, from
      // workflow tasks in flight at the kill (docs/operations.md).
      const ratio = s.actionsPerPayment / quiet.actionsPerPayment;
      assert.ok(
        ratio <= 1.2,
        `${fault}: ${s.actionsPerPayment} actions per payment vs ${quiet.actionsPerPayment} quiet (×${ratio.toFixed(2)}): ${JSON.stringify(s.actionsByKind)} vs ${JSON.stringify(quiet.actionsByKind)}`,
      );
      t.diagnostic(
        `actions per payment ${s.actionsPerPayment} vs ${quiet.actionsPerPayment} quiet (×${ratio.toFixed(2)}): ${JSON.stringify(s.actionsByKind)} vs ${JSON.stringify(quiet.actionsByKind)}`,
      );
    });
  }

  it('kill -9 of each pipeline process once: the supervisor restarts each, the run ends exact', () => {
    const s = demo('--fault', 'processes');
    assertExact(s, 'processes');
    assert.equal(
      s.processes.length,
      12,
      'every pipeline process, the finance worker, fraud views and fraud page included',
    );
    for (const p of s.processes) {
      assert.ok(p.alive, `${p.name} is not alive at the end`);
      assert.equal(p.restarts, 1, `${p.name}: ${p.restarts} restarts, expected the one kill -9`);
    }
  });
});
