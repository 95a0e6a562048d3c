import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { describeIssues } from '../../contracts/issues';
import { errorMessage } from '../../logger';

// One cursor file per gateway: the feed seq up to which every event is acknowledged by Kafka.
// Replaced atomically (temp file + fsync + rename + directory fsync), so a crash leaves the old or the new one.

export const GatewayCursor = z.object({
  gateway: z.string().min(1),
  region: z.string().min(1),
  after: z.number().int().nonnegative(),
  updatedAt: z.iso.datetime({ offset: true }),
});
export type GatewayCursor = z.infer<typeof GatewayCursor>;

export const cursorFile = (dir: string, gateway: string): string => join(dir, `${gateway}.cursor.json`);

/** The stored cursor, or 0 when the gateway was never read. A corrupt file throws: guessing could skip events. */
export async function readGatewayCursor(dir: string, gateway: string): Promise<number> {
  const file = cursorFile(dir, gateway);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`cursor file ${file} is not JSON: ${errorMessage(err)}`);
  }
  const parsed = GatewayCursor.safeParse(json);
  if (!parsed.success || parsed.data.gateway !== gateway) {
    const why = parsed.success ? `it belongs to ${parsed.data.gateway}` : describeIssues(parsed.error);
    throw new Error(`cursor file ${file} is invalid: ${why}`);
  }
  return parsed.data.after;
}

export async function writeGatewayCursor(dir: string, cursor: GatewayCursor): Promise<void> {
  await mkdir(dir, { recursive: true });
  const file = cursorFile(dir, cursor.gateway);
  const tmp = `${file}.tmp`;
  const handle = await open(tmp, 'w');
  try {
    await handle.writeFile(`${JSON.stringify(cursor)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, file);
  // The rename itself is durable only once the directory entry is.
  const dirHandle = await open(dir, 'r');
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
}
