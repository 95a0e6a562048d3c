/**
 * Whether a process with this pid exists. EPERM means it exists but belongs to another user (a
 * Postgres started as `postgres` by root, say): alive, not dead. The one rule for spool locks and
 * the stack's pid files.
 */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException | null)?.code === 'EPERM';
  }
}
