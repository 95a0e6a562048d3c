import { mkdir, open, readFile, readdir, rename, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createLogger } from '../logger';
import { pidAlive } from '../pid';

// The edge's durable local spool (docs/architecture.md, CAP: edge ingest = A): while Kafka is
// unreachable a webhook is acknowledged only once its event is fsynced here, and drained in order later.
//
// On disk: segment files `<first seq, 20 digits>.seg` of frames, a `cursor.json` holding the first
// undrained seq, and a `spool.lock` holding the owner's pid. A frame is
//   u32 bodyLength | u32 crc32(bodyLength bytes + body) | body
//   body = u64 seq | u32 metaLength | meta JSON {t: topic, k: key, h: headers} | value bytes
// Seqs are contiguous across segments, so a gap or a bad frame anywhere but the tail is corruption.

export interface SpoolRecord {
  topic: string;
  key: string | null;
  value: Buffer;
  headers: Record<string, string>;
}

export type SpoolAppendResult = { ok: true; seq: number } | { ok: false; reason: 'full' };

export interface SpoolOptions {
  dir: string;
  /** Upper bound for the segment files on disk; an append that would exceed it answers `full`. */
  maxBytes: number;
  /** Upper bound for undrained records (default: unbounded). */
  maxRecords?: number;
  /** A segment is rolled once the next frame would make it larger (default: maxBytes / 4, at most 16 MiB). */
  segmentBytes?: number;
}

export interface SpoolSize {
  /** Acknowledged records not yet drained. */
  records: number;
  /** Bytes of segment files on disk (what maxBytes bounds; a partly drained segment counts whole). */
  bytes: number;
}

export interface Spool {
  append(record: SpoolRecord): Promise<SpoolAppendResult>;
  drain(send: (records: SpoolRecord[]) => Promise<void>, options?: { batch?: number }): Promise<number>;
  size(): SpoolSize;
  close(): Promise<void>;
}

export class SpoolCorruptError extends Error {
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`spool file ${file} is corrupt at byte ${offset}: ${reason}`);
    this.name = 'SpoolCorruptError';
  }
}

export class SpoolLockedError extends Error {
  constructor(
    readonly dir: string,
    readonly pid: number,
  ) {
    super(`spool ${dir} is in use by pid ${pid} (delete ${join(dir, LOCK_FILE)} if no process uses it)`);
    this.name = 'SpoolLockedError';
  }
}

export class SpoolClosedError extends Error {
  constructor(readonly dir: string) {
    super(`spool ${dir} is closed`);
    this.name = 'SpoolClosedError';
  }
}

export class SpoolRecordTooLargeError extends Error {
  constructor(
    readonly topic: string,
    readonly frameBytes: number,
    readonly maxBytes: number,
  ) {
    super(`record for topic ${topic} needs ${frameBytes} bytes, more than the spool's maxBytes ${maxBytes}`);
    this.name = 'SpoolRecordTooLargeError';
  }
}

/** A write or fsync failed: the file's state is unknown, so the spool refuses appends until reopened. */
export class SpoolWriteFailedError extends Error {
  constructor(
    readonly file: string,
    cause: unknown,
  ) {
    super(`spool write to ${file} failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'SpoolWriteFailedError';
  }
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (IEEE, as zlib); pass the previous result to continue over several buffers. */
export function crc32(data: Uint8Array, previous = 0): number {
  let c = ~previous >>> 0;
  for (let i = 0; i < data.length; i++) c = (CRC_TABLE[(c ^ (data[i] ?? 0)) & 0xff] ?? 0) ^ (c >>> 8);
  return ~c >>> 0;
}

const FRAME_HEADER = 8;
const BODY_FIXED = 12;
const READ_CHUNK = 1 << 20;
const CURSOR_FILE = 'cursor.json';
const LOCK_FILE = 'spool.lock';
const SEGMENT_NAME = /^(\d{20})\.seg$/;
const MIB = 1 << 20;

const log = createLogger('spool');
// Two Spool objects on one directory in one process would interleave writes; the pid file cannot tell them apart.
const openDirs = new Set<string>();

function segmentName(baseSeq: number): string {
  return `${baseSeq.toString().padStart(20, '0')}.seg`;
}

function encodeFrame(seq: number, meta: Buffer, value: Buffer): Buffer {
  const bodyLength = BODY_FIXED + meta.length + value.length;
  const frame = Buffer.allocUnsafe(FRAME_HEADER + bodyLength);
  frame.writeUInt32BE(bodyLength, 0);
  frame.writeBigUInt64BE(BigInt(seq), FRAME_HEADER);
  frame.writeUInt32BE(meta.length, FRAME_HEADER + 8);
  meta.copy(frame, FRAME_HEADER + BODY_FIXED);
  value.copy(frame, FRAME_HEADER + BODY_FIXED + meta.length);
  frame.writeUInt32BE(crc32(frame.subarray(FRAME_HEADER), crc32(frame.subarray(0, 4))), 4);
  return frame;
}

function decodeRecord(body: Buffer, file: string, offset: number): SpoolRecord {
  const metaLength = body.readUInt32BE(8);
  if (BODY_FIXED + metaLength > body.length) throw new SpoolCorruptError(file, offset, 'meta longer than frame');
  const meta: unknown = JSON.parse(body.toString('utf8', BODY_FIXED, BODY_FIXED + metaLength));
  if (typeof meta !== 'object' || meta === null || !('t' in meta) || !('k' in meta) || !('h' in meta)) {
    throw new SpoolCorruptError(file, offset, 'frame meta is not {t, k, h}');
  }
  const { t, k, h } = meta;
  const headers: Record<string, string> = {};
  if (typeof h !== 'object' || h === null) throw new SpoolCorruptError(file, offset, 'frame headers not an object');
  for (const [name, v] of Object.entries(h)) {
    if (typeof v !== 'string') throw new SpoolCorruptError(file, offset, `header ${name} is not a string`);
    headers[name] = v;
  }
  if (typeof t !== 'string' || (k !== null && typeof k !== 'string')) {
    throw new SpoolCorruptError(file, offset, 'frame topic/key has the wrong type');
  }
  // A copy, so a record handed to send() does not pin the whole read chunk.
  return { topic: t, key: k, headers, value: Buffer.from(body.subarray(BODY_FIXED + metaLength)) };
}

type Scanned =
  | { kind: 'frame'; seq: number; offset: number; next: number; body: Buffer }
  | { kind: 'bad'; offset: number; reason: string };

/** Frames of [start, end) in order; stops after the first bad or incomplete one. */
async function* scanFrames(file: FileHandle, start: number, end: number): AsyncGenerator<Scanned> {
  let buf = Buffer.alloc(0);
  let bufStart = start; // file offset of buf[0]
  let pos = 0;
  let readAt = start;
  for (;;) {
    const offset = bufStart + pos;
    if (offset === end) return;
    if (buf.length - pos >= FRAME_HEADER) {
      const bodyLength = buf.readUInt32BE(pos);
      if (bodyLength < BODY_FIXED) {
        yield { kind: 'bad', offset, reason: `frame length ${bodyLength} is too small` };
        return;
      }
      if (offset + FRAME_HEADER + bodyLength > end) {
        yield { kind: 'bad', offset, reason: `frame of ${bodyLength} bytes runs past the end (${end})` };
        return;
      }
      if (buf.length - pos >= FRAME_HEADER + bodyLength) {
        const body = buf.subarray(pos + FRAME_HEADER, pos + FRAME_HEADER + bodyLength);
        if (crc32(body, crc32(buf.subarray(pos, pos + 4))) !== buf.readUInt32BE(pos + 4)) {
          yield { kind: 'bad', offset, reason: 'crc mismatch' };
          return;
        }
        const seq = Number(body.readBigUInt64BE(0));
        pos += FRAME_HEADER + bodyLength;
        yield { kind: 'frame', seq, offset, next: bufStart + pos, body };
        continue;
      }
    }
    if (readAt >= end) {
      yield { kind: 'bad', offset, reason: `incomplete frame header (${end - offset} bytes)` };
      return;
    }
    const wanted = buf.length - pos >= FRAME_HEADER ? FRAME_HEADER + buf.readUInt32BE(pos) - (buf.length - pos) : 0;
    const chunk = Buffer.allocUnsafe(Math.min(end - readAt, Math.max(READ_CHUNK, wanted)));
    const { bytesRead } = await file.read(chunk, 0, chunk.length, readAt);
    if (bytesRead === 0) {
      yield { kind: 'bad', offset, reason: `file ends at ${readAt}, expected ${end}` };
      return;
    }
    readAt += bytesRead;
    buf = Buffer.concat([buf.subarray(pos), chunk.subarray(0, bytesRead)]);
    bufStart = offset;
    pos = 0;
  }
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function writeAll(handle: FileHandle, data: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

function isErrno(err: unknown, code: string): boolean {
  return err instanceof Error && 'code' in err && err.code === code;
}

async function readCursor(dir: string): Promise<number> {
  const file = join(dir, CURSOR_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return 0;
    throw err;
  }
  const parsed: unknown = JSON.parse(text);
  if (typeof parsed !== 'object' || parsed === null || !('nextSeq' in parsed)) {
    throw new SpoolCorruptError(file, 0, 'no nextSeq');
  }
  const { nextSeq } = parsed;
  if (typeof nextSeq !== 'number' || !Number.isSafeInteger(nextSeq) || nextSeq < 0) {
    throw new SpoolCorruptError(file, 0, `nextSeq ${String(nextSeq)} is not a seq`);
  }
  return nextSeq;
}

async function writeCursor(dir: string, nextSeq: number): Promise<void> {
  const tmp = join(dir, `${CURSOR_FILE}.tmp`);
  const handle = await open(tmp, 'w');
  try {
    await handle.writeFile(`${JSON.stringify({ nextSeq })}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, join(dir, CURSOR_FILE));
  await syncDir(dir);
}

async function acquireLock(dir: string): Promise<void> {
  const file = join(dir, LOCK_FILE);
  for (let attempt = 0; ; attempt++) {
    try {
      await writeFile(file, `${process.pid}\n`, { flag: 'wx' });
      return;
    } catch (err) {
      if (!isErrno(err, 'EEXIST') || attempt > 0) throw err;
    }
    const pid = Number((await readFile(file, 'utf8')).trim());
    // Our own pid with the dir not open here is a previous incarnation (containers reuse pid 1 after kill -9).
    if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && pidAlive(pid)) {
      throw new SpoolLockedError(dir, pid);
    }
    await unlink(file);
  }
}

/** Serializes async tasks: each starts after the previous one settled. */
class SerialQueue {
  private last: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.last.then(task);
    this.last = result.catch(() => undefined);
    return result;
  }
}

interface Segment {
  baseSeq: number;
  path: string;
  /** Durable bytes: every frame below this offset is fsynced. */
  bytes: number;
  /** One past the seq of the segment's last durable frame. */
  endSeq: number;
  handle?: FileHandle;
}

interface ReadBatch {
  records: SpoolRecord[];
  /** One past the last record's seq, and where that record ends. */
  endSeq: number;
  endBaseSeq: number;
  endOffset: number;
}

interface PendingAppend {
  seq: number;
  frame: Buffer;
  resolve: (result: SpoolAppendResult) => void;
  reject: (err: unknown) => void;
}

class FileSpool implements Spool {
  private readonly fileOps = new SerialQueue();
  private readonly drains = new SerialQueue();
  private pending: PendingAppend[] = [];
  private flushQueued = false;
  private pendingBytes = 0;
  private diskBytes: number;
  private failure: SpoolWriteFailedError | undefined;
  private closing = false;
  private closed: Promise<void> | undefined;

  constructor(
    private readonly dir: string,
    private readonly maxBytes: number,
    private readonly maxRecords: number,
    private readonly segmentBytes: number,
    private readonly segments: Segment[],
    /** First undrained seq; durably recorded in cursor.json. */
    private cursorSeq: number,
    /** Offset of the frame with seq cursorSeq in segments[0]. */
    private readOffset: number,
    /** Seq the next append gets. */
    private nextSeq: number,
    /** One past the last fsynced seq. */
    private durableSeq: number,
  ) {
    this.diskBytes = segments.reduce((sum, s) => sum + s.bytes, 0);
  }

  append(record: SpoolRecord): Promise<SpoolAppendResult> {
    if (this.closing) return Promise.reject(new SpoolClosedError(this.dir));
    if (this.failure) return Promise.reject(this.failure);
    const meta = Buffer.from(JSON.stringify({ t: record.topic, k: record.key, h: record.headers }), 'utf8');
    const frameBytes = FRAME_HEADER + BODY_FIXED + meta.length + record.value.length;
    if (frameBytes > this.maxBytes) {
      return Promise.reject(new SpoolRecordTooLargeError(record.topic, frameBytes, this.maxBytes));
    }
    const undrained = this.nextSeq - this.cursorSeq;
    if (this.diskBytes + this.pendingBytes + frameBytes > this.maxBytes || undrained + 1 > this.maxRecords) {
      return Promise.resolve({ ok: false, reason: 'full' });
    }
    // The seq is taken synchronously, so seq order is call order whatever the flushes do.
    const seq = this.nextSeq++;
    const frame = encodeFrame(seq, meta, record.value);
    this.pendingBytes += frame.length;
    return new Promise((resolve, reject) => {
      this.pending.push({ seq, frame, resolve, reject });
      if (!this.flushQueued) {
        this.flushQueued = true;
        void this.fileOps.run(() => this.flush());
      }
    });
  }

  drain(send: (records: SpoolRecord[]) => Promise<void>, options: { batch?: number } = {}): Promise<number> {
    const batch = options.batch ?? 256;
    if (!Number.isSafeInteger(batch) || batch < 1) {
      return Promise.reject(new RangeError(`drain batch must be a positive integer, got ${batch}`));
    }
    return this.drains.run(async () => {
      if (this.closing) throw new SpoolClosedError(this.dir);
      // Bounded by what is durable now, so a drain ends even while appends keep coming.
      const until = this.durableSeq;
      let drained = 0;
      while (this.cursorSeq < until && !this.closing) {
        const read = await this.fileOps.run(() => this.readBatch(Math.min(batch, until - this.cursorSeq)));
        if (read.records.length === 0) throw new Error(`spool ${this.dir}: no record at cursor ${this.cursorSeq}`);
        await send(read.records);
        await this.fileOps.run(() => this.commit(read));
        drained += read.records.length;
      }
      return drained;
    });
  }

  size(): SpoolSize {
    return { records: this.durableSeq - this.cursorSeq, bytes: this.diskBytes };
  }

  close(): Promise<void> {
    this.closed ??= (async () => {
      this.closing = true;
      await this.drains.run(async () => undefined); // a running drain stops after its current batch
      await this.fileOps.run(async () => {
        await this.segments.at(-1)?.handle?.close();
        await unlink(join(this.dir, LOCK_FILE));
        openDirs.delete(this.dir);
      });
    })();
    return this.closed;
  }

  /** Writes every pending frame with one fsync per segment touched (group commit), then acknowledges. */
  private async flush(): Promise<void> {
    this.flushQueued = false;
    const batch = this.pending;
    this.pending = [];
    let i = 0;
    try {
      if (this.failure) throw this.failure;
      while (i < batch.length) {
        const first = batch[i];
        if (!first) break;
        let segment = this.segments.at(-1);
        if (!segment?.handle || (segment.bytes > 0 && segment.bytes + first.frame.length > this.segmentBytes)) {
          segment = await this.startSegment(first.seq);
        }
        let j = i;
        let length = 0;
        while (j < batch.length) {
          const frameBytes = batch[j]?.frame.length ?? 0;
          if (length > 0 && segment.bytes + length + frameBytes > this.segmentBytes) break;
          length += frameBytes;
          j++;
        }
        const chunk = batch.slice(i, j);
        const handle = segment.handle;
        if (!handle) throw new Error(`segment ${segment.path} has no open handle`);
        try {
          await writeAll(handle, Buffer.concat(chunk.map((p) => p.frame)), segment.bytes);
          await handle.sync();
        } catch (err) {
          throw new SpoolWriteFailedError(segment.path, err);
        }
        segment.bytes += length;
        segment.endSeq += chunk.length;
        this.diskBytes += length;
        this.pendingBytes -= length;
        this.durableSeq += chunk.length;
        for (const p of chunk) p.resolve({ ok: true, seq: p.seq });
        i = j;
      }
    } catch (err) {
      this.failure ??= err instanceof SpoolWriteFailedError ? err : new SpoolWriteFailedError(this.dir, err);
      for (const p of batch.slice(i)) p.reject(this.failure);
    }
  }

  /** A new segment whose first frame is `baseSeq`; the previous one is already fsynced, so only the tail can tear. */
  private async startSegment(baseSeq: number): Promise<Segment> {
    const previous = this.segments.at(-1);
    if (previous?.handle) {
      await previous.handle.close();
      delete previous.handle;
    }
    const path = join(this.dir, segmentName(baseSeq));
    try {
      const handle = await open(path, 'wx');
      await syncDir(this.dir);
      const segment: Segment = { baseSeq, path, bytes: 0, endSeq: baseSeq, handle };
      this.segments.push(segment);
      return segment;
    } catch (err) {
      throw new SpoolWriteFailedError(path, err);
    }
  }

  private async readBatch(limit: number): Promise<ReadBatch> {
    const records: SpoolRecord[] = [];
    const read: ReadBatch = { records, endSeq: this.cursorSeq, endBaseSeq: -1, endOffset: this.readOffset };
    for (const [index, segment] of this.segments.entries()) {
      if (records.length >= limit) break;
      const handle = await open(segment.path, 'r');
      try {
        for await (const scanned of scanFrames(handle, index === 0 ? this.readOffset : 0, segment.bytes)) {
          if (scanned.kind === 'bad') throw new SpoolCorruptError(segment.path, scanned.offset, scanned.reason);
          if (scanned.seq !== read.endSeq) {
            throw new SpoolCorruptError(segment.path, scanned.offset, `seq ${scanned.seq}, expected ${read.endSeq}`);
          }
          records.push(decodeRecord(scanned.body, segment.path, scanned.offset));
          read.endSeq++;
          read.endBaseSeq = segment.baseSeq;
          read.endOffset = scanned.next;
          if (records.length >= limit) break;
        }
      } finally {
        await handle.close();
      }
    }
    return read;
  }

  private async commit(read: ReadBatch): Promise<void> {
    await writeCursor(this.dir, read.endSeq);
    this.cursorSeq = read.endSeq;
    // A segment is deleted once drained; an unlink lost in a crash is redone on open.
    for (let head = this.segments[0]; head && head.endSeq <= this.cursorSeq; head = this.segments[0]) {
      await head.handle?.close();
      await unlink(head.path);
      this.segments.shift();
      this.diskBytes -= head.bytes;
    }
    this.readOffset = this.segments[0]?.baseSeq === read.endBaseSeq ? read.endOffset : 0;
  }
}

/**
 * Opens (creating if needed) the spool in `dir`: cuts a torn tail left by a crash, drops drained
 * segments, and resumes at the durable cursor. One process per directory (pid lock file).
 */
export async function openSpool(options: SpoolOptions): Promise<Spool> {
  const dir = resolve(options.dir);
  const { maxBytes } = options;
  const maxRecords = options.maxRecords ?? Number.MAX_SAFE_INTEGER;
  const segmentBytes = options.segmentBytes ?? Math.max(1, Math.min(16 * MIB, Math.floor(maxBytes / 4)));
  for (const [name, v] of Object.entries({ maxBytes, maxRecords, segmentBytes })) {
    if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`spool ${name} must be a positive integer, got ${v}`);
  }
  if (openDirs.has(dir)) throw new SpoolLockedError(dir, process.pid);
  await mkdir(dir, { recursive: true });
  await acquireLock(dir);
  openDirs.add(dir);
  try {
    return await recover(dir, maxBytes, maxRecords, segmentBytes);
  } catch (err) {
    openDirs.delete(dir);
    await unlink(join(dir, LOCK_FILE));
    throw err;
  }
}

async function recover(dir: string, maxBytes: number, maxRecords: number, segmentBytes: number): Promise<FileSpool> {
  const cursorSeq = await readCursor(dir);
  await unlink(join(dir, `${CURSOR_FILE}.tmp`)).catch((err: unknown) => {
    if (!isErrno(err, 'ENOENT')) throw err;
  });
  const names = (await readdir(dir))
    .map((name) => SEGMENT_NAME.exec(name))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ name: m[0], baseSeq: Number(m[1]) }))
    .sort((a, b) => a.baseSeq - b.baseSeq);
  const segments: Segment[] = [];
  let readOffset = 0;
  let expectedSeq: number | undefined;
  let dirChanged = false;
  for (const [index, { name, baseSeq }] of names.entries()) {
    const path = join(dir, name);
    const isTail = index === names.length - 1;
    if (expectedSeq !== undefined && baseSeq !== expectedSeq) {
      throw new SpoolCorruptError(path, 0, `segment starts at seq ${baseSeq}, previous one ended at ${expectedSeq}`);
    }
    const handle = await open(path, 'r+');
    let bytes = 0;
    let endSeq = baseSeq;
    let cursorOffset = 0;
    try {
      const { size } = await handle.stat();
      for await (const scanned of scanFrames(handle, 0, size)) {
        if (scanned.kind === 'bad') {
          // Only the tail segment is written unsynced, so only it may end in a torn frame.
          if (!isTail) throw new SpoolCorruptError(path, scanned.offset, scanned.reason);
          log.warn('cutting torn tail of spool segment', {
            file: path,
            offset: scanned.offset,
            bytesCut: size - scanned.offset,
            reason: scanned.reason,
          });
          await handle.truncate(scanned.offset);
          await handle.sync();
          dirChanged = true;
          break;
        }
        if (scanned.seq !== endSeq) {
          throw new SpoolCorruptError(path, scanned.offset, `seq ${scanned.seq}, expected ${endSeq}`);
        }
        if (scanned.seq === cursorSeq) cursorOffset = scanned.offset;
        endSeq++;
        bytes = scanned.next;
      }
    } finally {
      await handle.close();
    }
    expectedSeq = endSeq;
    const drained = endSeq > baseSeq && endSeq <= cursorSeq;
    if (!drained && segments.length === 0 && baseSeq > cursorSeq) {
      throw new SpoolCorruptError(path, 0, `records ${cursorSeq}..${baseSeq - 1} are missing (cursor ${cursorSeq})`);
    }
    if (drained || endSeq === baseSeq) {
      await unlink(path); // fully drained (crash before its unlink) or empty (crash right after creating it)
      dirChanged = true;
      continue;
    }
    if (segments.length === 0) readOffset = cursorSeq > baseSeq ? cursorOffset : 0;
    segments.push({ baseSeq, path, bytes, endSeq });
  }
  if (dirChanged) await syncDir(dir);
  const tail = segments.at(-1);
  if (tail) tail.handle = await open(tail.path, 'r+');
  const nextSeq = Math.max(cursorSeq, tail?.endSeq ?? 0);
  return new FileSpool(dir, maxBytes, maxRecords, segmentBytes, segments, cursorSeq, readOffset, nextSeq, nextSeq);
}
