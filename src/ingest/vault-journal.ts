import { type Logger, errorMessage } from '../logger';
import {
  type EncryptedVaultEntry,
  type Vault,
  type VaultEntry,
  type VaultKeyring,
  encryptVaultEntries,
} from '../stores/vault';
import type { Spool, SpoolRecord } from './spool';

// The edge's vault journal: originals are encrypted here and fsynced to a local spool before the
// partner gets its 2xx; a drainer moves them into Postgres (vault.tokens, ON CONFLICT DO NOTHING,
// so a re-drain after a crash is harmless). A Postgres outage delays the vault, not ingest.
//
// One spool record per call: value = entries, each
//   u16 tokenLength | token | u8 kindLength | kind | u32 keyVersion | iv (12) | authTag (16) | u32 ctLength | ciphertext

const JOURNAL_TOPIC = 'vault.tokens';
const IV_BYTES = 12;
const TAG_BYTES = 16;
// Pending-token index bound: past it, a lookup can only say "may be in the journal".
const MAX_INDEXED_TOKENS = 200_000;
// Requests per drain batch: ~3 entries each keeps one Postgres insert near 3,000 rows.
const DRAIN_BATCH_RECORDS = 1000;
// Each drain pass costs an insert and a cursor fsync; 200 ms batches them at a vault lag nobody reads sooner.
const DRAIN_IDLE_MS = 200;
const DRAIN_MAX_BACKOFF_MS = 2000;

export class VaultJournalFullError extends Error {
  constructor(readonly records: number) {
    super(`vault journal is full (${records} records not yet in Postgres); retry later`);
    this.name = 'VaultJournalFullError';
  }
}

/** The token is (or may be) accepted at the edge but not yet written from the vault journal to Postgres. */
export class VaultEntryPendingError extends Error {
  constructor(
    readonly token: string,
    readonly certain: boolean,
    readonly journalRecords: number,
  ) {
    super(
      certain
        ? `token ${token} is in the edge's vault journal, not yet in the vault (Postgres); ${journalRecords} journal record(s) waiting — retry once the drain catches up`
        : `token ${token} is not in the vault (Postgres) yet; the edge's vault journal still holds ${journalRecords} record(s) not yet drained, so it may be among them — retry once the drain catches up`,
    );
    this.name = 'VaultEntryPendingError';
  }
}

export interface VaultJournalStatus {
  /** Journal records (one per accepted request) not yet in Postgres. */
  records: number;
  bytes: number;
  /** Set while the last drain attempt failed (Postgres unreachable): the edge is degraded. */
  drainError?: string;
  drainedRecords: number;
  lastDrainAt?: string;
}

export interface VaultJournal {
  /** Encrypts and fsyncs the entries; resolves once durable. Full journal: VaultJournalFullError. */
  append(entries: readonly VaultEntry[]): Promise<void>;
  /** Writes what the journal holds into Postgres; returns records drained (throws if Postgres fails). */
  drain(): Promise<number>;
  /** Drains continuously (short pause when empty, backoff while Postgres fails) until stop(). */
  startDraining(): { stop(): Promise<void> };
  status(): VaultJournalStatus;
  /** true: known to be waiting here; false: not known here (the journal may still hold it after a restart). */
  isPending(token: string): boolean;
}

export function encodeVaultRecord(entries: readonly EncryptedVaultEntry[]): Buffer {
  let size = 0;
  for (const e of entries) {
    size += 2 + Buffer.byteLength(e.token) + 1 + Buffer.byteLength(e.kind) + 4 + IV_BYTES + TAG_BYTES + 4;
    size += e.ciphertext.length;
  }
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const e of entries) {
    at = out.writeUInt16BE(Buffer.byteLength(e.token), at);
    at += out.write(e.token, at);
    at = out.writeUInt8(Buffer.byteLength(e.kind), at);
    at += out.write(e.kind, at);
    at = out.writeUInt32BE(e.keyVersion, at);
    at += e.iv.copy(out, at);
    at += e.authTag.copy(out, at);
    at = out.writeUInt32BE(e.ciphertext.length, at);
    at += e.ciphertext.copy(out, at);
  }
  return out;
}

function decodeVaultRecord(value: Buffer): EncryptedVaultEntry[] {
  const entries: EncryptedVaultEntry[] = [];
  let at = 0;
  const take = (n: number, what: string): number => {
    if (at + n > value.length) throw new Error(`vault journal record is truncated in ${what} at byte ${at}`);
    const start = at;
    at += n;
    return start;
  };
  while (at < value.length) {
    const tokenLength = value.readUInt16BE(take(2, 'token length'));
    const token = value.toString('utf8', take(tokenLength, 'token'), at);
    const kindLength = value.readUInt8(take(1, 'kind length'));
    const kind = value.toString('utf8', take(kindLength, 'kind'), at);
    const keyVersion = value.readUInt32BE(take(4, 'key version'));
    const iv = value.subarray(take(IV_BYTES, 'iv'), at);
    const authTag = value.subarray(take(TAG_BYTES, 'auth tag'), at);
    const ctLength = value.readUInt32BE(take(4, 'ciphertext length'));
    const ciphertext = value.subarray(take(ctLength, 'ciphertext'), at);
    entries.push({ token, kind, keyVersion, iv, authTag, ciphertext });
  }
  return entries;
}

export function createVaultJournal(deps: {
  spool: Spool;
  keyring: VaultKeyring;
  /** Where drained entries go: Vault.storeEncrypted (idempotent). */
  vault: Pick<Vault, 'storeEncrypted'>;
  log: Logger;
}): VaultJournal {
  const pending = new Map<string, number>();
  let drainError: string | undefined;
  let drainedRecords = 0;
  let lastDrainAt: string | undefined;

  const forget = (tokens: Iterable<string>): void => {
    for (const token of tokens) {
      const n = pending.get(token);
      if (n === undefined) continue;
      if (n <= 1) pending.delete(token);
      else pending.set(token, n - 1);
    }
  };

  const send = async (records: SpoolRecord[]): Promise<void> => {
    const entries = records.flatMap((r) => decodeVaultRecord(r.value));
    await deps.vault.storeEncrypted(entries);
    forget(entries.map((e) => e.token));
  };

  const drain = async (): Promise<number> => {
    try {
      const n = await deps.spool.drain(send, { batch: DRAIN_BATCH_RECORDS });
      if (drainError !== undefined) deps.log.info('vault journal draining again', { left: deps.spool.size().records });
      drainError = undefined;
      drainedRecords += n;
      lastDrainAt = new Date().toISOString();
      return n;
    } catch (err) {
      if (drainError === undefined) {
        deps.log.warn('vault journal cannot drain to Postgres; webhooks keep being accepted', {
          error: errorMessage(err),
          records: deps.spool.size().records,
        });
      }
      drainError = errorMessage(err);
      throw err;
    }
  };

  return {
    async append(entries) {
      if (entries.length === 0) return;
      const encrypted = encryptVaultEntries(entries, deps.keyring);
      const appended = await deps.spool.append({
        topic: JOURNAL_TOPIC,
        key: null,
        value: encodeVaultRecord(encrypted),
        headers: {},
      });
      if (!appended.ok) throw new VaultJournalFullError(deps.spool.size().records);
      for (const e of entries) {
        if (pending.size >= MAX_INDEXED_TOKENS && !pending.has(e.token)) continue;
        pending.set(e.token, (pending.get(e.token) ?? 0) + 1);
      }
    },
    drain,
    startDraining() {
      let stopped = false;
      let wake: (() => void) | undefined;
      const sleep = (ms: number): Promise<void> =>
        new Promise((resolve) => {
          const timer = setTimeout(resolve, ms);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      const loop = (async () => {
        let backoff = 100;
        while (!stopped) {
          try {
            const n = await drain();
            backoff = 100;
            if (n === 0) await sleep(DRAIN_IDLE_MS);
          } catch {
            await sleep(backoff);
            backoff = Math.min(DRAIN_MAX_BACKOFF_MS, backoff * 2);
          }
        }
      })();
      return {
        async stop() {
          stopped = true;
          wake?.();
          await loop;
        },
      };
    },
    status() {
      const size = deps.spool.size();
      return {
        records: size.records,
        bytes: size.bytes,
        drainedRecords,
        ...(drainError !== undefined ? { drainError } : {}),
        ...(lastDrainAt !== undefined ? { lastDrainAt } : {}),
      };
    },
    isPending: (token) => pending.has(token),
  };
}

/**
 * The Vault interface over a journal: store() journals (durable locally, Postgres later);
 * detokenize() says clearly when the token is still waiting in the journal.
 */
export function journaledVault(journal: VaultJournal, vault: Vault): Vault {
  return {
    async store(entries) {
      await journal.append(entries);
      return entries.length;
    },
    storeEncrypted: (entries) => vault.storeEncrypted(entries),
    async detokenize(token, request) {
      if (journal.isPending(token)) throw new VaultEntryPendingError(token, true, journal.status().records);
      const original = await vault.detokenize(token, request);
      const waiting = journal.status().records;
      if (original === undefined && waiting > 0) throw new VaultEntryPendingError(token, false, waiting);
      return original;
    },
    close: () => vault.close(),
  };
}
