import { isDeepStrictEqual } from 'node:util';
import { isJsonObject, joinPath, resolveLocalRef, schemaTypes } from './json-schema';
import type { JsonSchema } from './schema-registry';

// BACKWARD compatibility of two frozen versions: a reader of `next` must accept every document
// valid under `previous`. The check is structural over the JSON Schema zod emits; where it cannot
// prove inclusion (a changed regex, an unknown keyword) it says so instead of passing.

export type CompatRule =
  | 'required-field-added'
  | 'field-removed'
  | 'type-narrowed'
  | 'allowed-value-removed'
  | 'constraint-tightened'
  | 'pattern-changed'
  | 'format-changed'
  | 'additional-properties-closed'
  | 'union-branch-removed'
  | 'unsupported-change';

export interface Incompatibility {
  /** Dotted field path, arrays as `[]`, map values as `*`; `(root)` for the document itself. */
  path: string;
  rule: CompatRule;
  detail: string;
}

// Keywords that describe but do not constrain: changing them never breaks a reader.
const ANNOTATIONS = new Set([
  '$schema',
  '$id',
  '$comment',
  'title',
  'description',
  'default',
  'examples',
  'deprecated',
  'readOnly',
  'writeOnly',
  '$defs',
  'definitions',
]);
const HANDLED = new Set([
  'type',
  'const',
  'enum',
  'anyOf',
  'oneOf',
  '$ref',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
  'multipleOf',
  'minLength',
  'maxLength',
  'pattern',
  'format',
  'items',
  'prefixItems',
  'minItems',
  'maxItems',
  'uniqueItems',
  'properties',
  'required',
  'additionalProperties',
  'propertyNames',
  'minProperties',
  'maxProperties',
]);

interface Node {
  schema: JsonSchema;
  root: JsonSchema;
}

const asSchema = (v: unknown): JsonSchema | false => (v === true || v === undefined ? {} : isJsonObject(v) ? v : false);
const show = (path: string): string => path || '(root)';

function deref(node: Node, depth = 0): Node {
  const ref = node.schema.$ref;
  const target = typeof ref === 'string' && depth <= 32 ? resolveLocalRef(node.root, ref) : undefined;
  return target ? deref({ schema: target, root: node.root }, depth + 1) : node;
}

function branches(node: Node): Node[] {
  const n = deref(node);
  const union = [...((n.schema.anyOf as unknown[]) ?? []), ...((n.schema.oneOf as unknown[]) ?? [])];
  if (union.length === 0) return [n];
  return union.flatMap((s) => {
    const sub = asSchema(s);
    return sub ? branches({ schema: sub, root: n.root }) : [];
  });
}

const constrains = (s: JsonSchema): boolean => Object.keys(s).some((k) => !ANNOTATIONS.has(k) && !k.startsWith('x-'));

function allowedValues(s: JsonSchema): unknown[] | undefined {
  if ('const' in s) return [s.const];
  return Array.isArray(s.enum) ? s.enum : undefined;
}

function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

const typeAccepts = (types: string[], t: string): boolean =>
  types.includes(t) || (t === 'integer' && types.includes('number'));

type Bound = { value: number; exclusive: boolean } | undefined;
function bound(s: JsonSchema, inclusive: string, exclusive: string): Bound {
  const inc = typeof s[inclusive] === 'number' ? s[inclusive] : undefined;
  const exc = typeof s[exclusive] === 'number' ? s[exclusive] : undefined;
  if (inc === undefined && exc === undefined) return undefined;
  if (exc === undefined) return { value: inc!, exclusive: false };
  if (inc === undefined) return { value: exc, exclusive: true };
  const lower = inclusive === 'minimum';
  const excTighter = lower ? exc >= inc : exc <= inc;
  return excTighter ? { value: exc, exclusive: true } : { value: inc, exclusive: false };
}

/** True if bound `next` rejects a value bound `previous` accepted (lower: direction = 1). */
function tighter(previous: Bound, next: Bound, direction: 1 | -1): boolean {
  if (!next) return false;
  if (!previous) return true;
  if (next.value * direction > previous.value * direction) return true;
  return next.value === previous.value && next.exclusive && !previous.exclusive;
}

function compareNode(previous: Node, next: Node, path: string, out: Incompatibility[]): void {
  const olds = branches(previous);
  const news = branches(next);
  if (news.some((n) => !constrains(n.schema))) return;
  if (news.length === 1 && olds.length === 1) {
    compareBranch(olds[0]!, news[0]!, path, out);
    return;
  }
  for (const [i, old] of olds.entries()) {
    const attempts = news.map((n) => {
      const issues: Incompatibility[] = [];
      compareBranch(old, n, path, issues);
      return issues;
    });
    if (attempts.some((a) => a.length === 0)) continue;
    const closest = attempts.reduce((a, b) => (b.length < a.length ? b : a));
    // A plain value that no longer fits: its own reasons say more than "no alternative fits".
    if (olds.length === 1) {
      out.push(...closest);
      continue;
    }
    out.push({
      path: show(path),
      rule: 'union-branch-removed',
      detail: `no alternative of the new version accepts alternative ${i + 1} of the previous one (closest: ${closest
        .map((c) => `${c.path} ${c.rule}`)
        .join(', ')})`,
    });
  }
}

function compareBranch(prevNode: Node, nextNode: Node, path: string, out: Incompatibility[]): void {
  const p = prevNode.schema;
  const n = nextNode.schema;
  const at = show(path);
  const push = (rule: CompatRule, detail: string): void => void out.push({ path: at, rule, detail });
  const child = (prev: unknown, next: unknown, childPath: string): void => {
    const ps = asSchema(prev);
    const ns = asSchema(next);
    if (ps === false) return; // nothing was accepted there before
    if (ns === false) {
      out.push({ path: show(childPath), rule: 'type-narrowed', detail: 'the new version accepts nothing here' });
      return;
    }
    compareNode({ schema: ps, root: prevNode.root }, { schema: ns, root: nextNode.root }, childPath, out);
  };

  // Types and allowed values.
  const pTypes = schemaTypes(p);
  const nTypes = schemaTypes(n);
  const pValues = allowedValues(p);
  const nValues = allowedValues(n);
  if (nTypes) {
    const prevTypes = pTypes ?? (pValues ? [...new Set(pValues.map(jsonType))] : undefined);
    const lost = prevTypes ? prevTypes.filter((t) => !typeAccepts(nTypes, t)) : ['any type'];
    if (lost.length > 0) push('type-narrowed', `${lost.join(', ')} no longer accepted (now ${nTypes.join(', ')})`);
  }
  if (nValues) {
    if (!pValues) push('allowed-value-removed', `values now restricted to ${JSON.stringify(nValues)}`);
    else {
      const lost = pValues.filter((v) => !nValues.some((w) => isDeepStrictEqual(v, w)));
      if (lost.length > 0) push('allowed-value-removed', `${JSON.stringify(lost)} no longer allowed`);
    }
  }

  // Numbers, strings, arrays, objects: a bound that moves inward rejects old documents.
  if (tighter(bound(p, 'minimum', 'exclusiveMinimum'), bound(n, 'minimum', 'exclusiveMinimum'), 1))
    push('constraint-tightened', `lower bound raised to ${JSON.stringify(bound(n, 'minimum', 'exclusiveMinimum'))}`);
  if (tighter(bound(p, 'maximum', 'exclusiveMaximum'), bound(n, 'maximum', 'exclusiveMaximum'), -1))
    push('constraint-tightened', `upper bound lowered to ${JSON.stringify(bound(n, 'maximum', 'exclusiveMaximum'))}`);
  if (typeof n.multipleOf === 'number') {
    const pm = typeof p.multipleOf === 'number' ? p.multipleOf : undefined;
    if (pm === undefined || pm % n.multipleOf !== 0) push('constraint-tightened', `multipleOf ${n.multipleOf}`);
  }
  for (const [key, direction] of [
    ['minLength', 1],
    ['maxLength', -1],
    ['minItems', 1],
    ['maxItems', -1],
    ['minProperties', 1],
    ['maxProperties', -1],
  ] as const) {
    const pv = typeof p[key] === 'number' ? { value: p[key], exclusive: false } : undefined;
    const nv = typeof n[key] === 'number' ? { value: n[key], exclusive: false } : undefined;
    if (tighter(pv, nv, direction)) push('constraint-tightened', `${key} ${pv?.value ?? 'none'} → ${nv?.value}`);
  }
  if (n.uniqueItems === true && p.uniqueItems !== true) push('constraint-tightened', 'uniqueItems added');
  if (n.pattern !== undefined && n.pattern !== p.pattern)
    push('pattern-changed', `pattern ${JSON.stringify(p.pattern ?? null)} → ${JSON.stringify(n.pattern)}`);
  if (n.format !== undefined && n.format !== p.format)
    push('format-changed', `format ${JSON.stringify(p.format ?? null)} → ${JSON.stringify(n.format)}`);

  if ('items' in p || 'items' in n) child(p.items, n.items, `${path}[]`);
  if (Array.isArray(p.prefixItems) || Array.isArray(n.prefixItems)) {
    const pi = (p.prefixItems as unknown[] | undefined) ?? [];
    const ni = (n.prefixItems as unknown[] | undefined) ?? [];
    for (let i = 0; i < Math.max(pi.length, ni.length); i++) child(pi[i], ni[i] ?? n.items, `${path}[${i}]`);
  }

  const pProps = isJsonObject(p.properties) ? p.properties : {};
  const nProps = isJsonObject(n.properties) ? n.properties : {};
  const pRequired = new Set(Array.isArray(p.required) ? (p.required as string[]) : []);
  const nRequired = Array.isArray(n.required) ? (n.required as string[]) : [];
  const pOpen = p.additionalProperties;
  const nOpen = n.additionalProperties;
  for (const key of nRequired) {
    if (!pRequired.has(key))
      out.push({
        path: joinPath(path, key),
        rule: 'required-field-added',
        detail: key in pProps ? 'optional before, required now' : 'new required field without a default',
      });
  }
  for (const [key, prev] of Object.entries(pProps)) {
    if (key in nProps) child(prev, nProps[key], joinPath(path, key));
    else if (nOpen === false)
      out.push({ path: joinPath(path, key), rule: 'field-removed', detail: 'removed and the object is now closed' });
    else child(prev, nOpen, joinPath(path, key));
  }
  for (const [key, next] of Object.entries(nProps)) {
    // Documents could only carry a new field through the old additionalProperties; open-ended
    // objects are taken as compatible (docs/schema-drift.md says why).
    if (!(key in pProps) && isJsonObject(pOpen) && constrains(pOpen)) child(pOpen, next, joinPath(path, key));
  }
  if (nOpen === false && pOpen !== false) push('additional-properties-closed', 'unknown fields are now rejected');
  else if (isJsonObject(nOpen) && pOpen !== false) child(pOpen, nOpen, joinPath(path, '*'));
  if ('propertyNames' in n) child(p.propertyNames, n.propertyNames, joinPath(path, '{key}'));

  for (const key of new Set([...Object.keys(p), ...Object.keys(n)])) {
    if (ANNOTATIONS.has(key) || HANDLED.has(key) || key.startsWith('x-')) continue;
    if (!isDeepStrictEqual(p[key], n[key])) push('unsupported-change', `keyword "${key}" changed; compare by hand`);
  }
}

/** Why a reader of `next` could not read some document written under `previous`; [] = compatible. */
export function backwardIncompatibilities(previous: JsonSchema, next: JsonSchema): Incompatibility[] {
  const out: Incompatibility[] = [];
  compareNode({ schema: previous, root: previous }, { schema: next, root: next }, '', out);
  return out;
}
