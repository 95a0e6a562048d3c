import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

// Docs are followed by operators word for word: every `npm run <script>` they show must exist.

const root = join(__dirname, '..', '..');
const scripts = new Set(
  Object.keys((JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: object }).scripts),
);

/** The script names of every `npm run [--flags] <name>` in `text`, with the line they are on. */
function npmRunCommands(text: string): { name: string; line: number }[] {
  const found: { name: string; line: number }[] = [];
  text.split('\n').forEach((line, i) => {
    for (const m of line.matchAll(/npm run(?:\s+--?[a-z-]+)*\s+([A-Za-z0-9_-]+(?::[A-Za-z0-9_-]+)*)/g))
      found.push({ name: m[1]!, line: i + 1 });
  });
  return found;
}

const documents = [
  'README.md',
  ...readdirSync(join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => join('docs', f)),
];

describe('commands in the docs', () => {
  it('finds the script name after any flags, and would catch one that does not exist', () => {
    assert.deepEqual(
      npmRunCommands('run `npm run --silent stack -- up`, then `npm run demo -- --json`\n`npm run no-such-script`').map(
        (c) => c.name,
      ),
      ['stack', 'demo', 'no-such-script'],
    );
    assert.ok(!scripts.has('no-such-script'));
  });

  it('every `npm run <script>` in README.md and docs/ is a script in package.json', () => {
    const missing: string[] = [];
    let seen = 0;
    for (const doc of documents) {
      for (const { name, line } of npmRunCommands(readFileSync(join(root, doc), 'utf8'))) {
        seen += 1;
        if (!scripts.has(name)) missing.push(`${doc}:${line} npm run ${name}`);
      }
    }
    assert.ok(seen > 20, `only ${seen} commands found: the pattern no longer matches the docs`);
    assert.deepEqual(missing, []);
  });
});
