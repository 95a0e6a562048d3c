import type { z } from 'zod';

/**
 * zod issues as one line, each named by its path ("amount.value: …"): the reason that goes into
 * quarantine headers and errors. `prefix` roots the paths (e.g. "data.object"), `rename` maps a path
 * segment to the name the sender knows (a partner field, a table column), `root` names an empty path.
 */
export function describeIssues(
  error: z.ZodError,
  options: { prefix?: string; root?: string; rename?: (segment: string) => string } = {},
): string {
  const rename = options.rename ?? ((segment: string) => segment);
  return error.issues
    .map((i) => {
      const path = [options.prefix, ...i.path.map((p) => rename(String(p)))].filter(Boolean).join('.');
      return `${path || options.root || '(root)'}: ${i.message}`;
    })
    .join('; ');
}
