import { TOKEN_PATTERN } from '../ingest/pii-detect';
import { isJsonObject, joinPath, resolveLocalRef, schemaTypes } from './json-schema';
import { type DocumentLocation, FIELDS_OF_KEYWORD, type JsonSchema } from './schema-registry';

// Drift = field paths a document carries that its schema version does not declare. Paths are
// dotted, arrays are `[]` (data.object.items[].sku); everything under an unknown field is unknown too.
// Rules for open parts of a schema (docs/schema-drift.md):
//  - a declared open map (additionalProperties is a schema, e.g. Adyen's additionalData) is not
//    drift: the contract says any key goes there;
//  - unless the map is marked `x-paylink-fields-of: <name>@<version>`: then its keys are compared
//    with that schema's fields and the map's own properties (Stripe-style data.object against the
//    payment fact);
//  - `<field>Bin` / `<field>Last4` next to a card token are the edge's tokenizer's, not the sender's;
//  - an unconstrained schema ({} / true, e.g. z.unknown()) accepts anything below it.

export interface DriftOptions {
  /** Resolves `<name>@<version>` of an x-paylink-fields-of map to its frozen schema. */
  resolve: (ref: string) => JsonSchema | undefined;
  /** Stop after this many paths per document (a map keyed by ids must not flood the table). */
  maxPaths: number;
}

export interface UnknownPaths {
  paths: string[];
  /** True when maxPaths cut the list short. */
  truncated: boolean;
}

interface Branch {
  schema: JsonSchema;
  /** The document the branch's local $refs (#/$defs/…) resolve in. */
  root: JsonSchema;
}

const MAX_DEPTH = 32;
const CONSTRAINING = [
  'type',
  'properties',
  'additionalProperties',
  'patternProperties',
  'items',
  'prefixItems',
  'const',
  'enum',
  'anyOf',
  'oneOf',
  'allOf',
  '$ref',
  FIELDS_OF_KEYWORD,
];

function asSchema(value: unknown): JsonSchema | undefined {
  if (value === true) return {};
  return isJsonObject(value) ? value : undefined;
}

/** Flattens unions, $refs and fields-of maps into the plain branches a value may match. */
function expand(branch: Branch, options: DriftOptions, depth = 0): Branch[] {
  if (depth > MAX_DEPTH) return [{ schema: {}, root: branch.root }];
  const { schema, root } = branch;
  const fieldsOf = schema[FIELDS_OF_KEYWORD];
  if (typeof fieldsOf === 'string') {
    const target = options.resolve(fieldsOf);
    // An unresolvable reference checks nothing rather than flagging every key.
    if (!target) return [{ schema: {}, root }];
    // The map's own declared properties count too (a v2 can declare what partners add), its openness not.
    const { [FIELDS_OF_KEYWORD]: _ref, additionalProperties: _open, ...own } = schema;
    return [{ schema: own, root }, ...expand({ schema: target, root: target }, options, depth + 1)];
  }
  if (typeof schema.$ref === 'string') {
    const target = resolveLocalRef(root, schema.$ref);
    return target ? expand({ schema: target, root }, options, depth + 1) : [{ schema: {}, root }];
  }
  const parts = ['anyOf', 'oneOf', 'allOf'].flatMap((k) =>
    Array.isArray(schema[k]) ? (schema[k] as unknown[]).map(asSchema) : [],
  );
  if (parts.length > 0) {
    return parts.flatMap((s) => (s ? expand({ schema: s, root }, options, depth + 1) : []));
  }
  return [branch];
}

// Frozen schemas never change: a branch is expanded once per resolver, not once per message.
const expansions = new WeakMap<DriftOptions['resolve'], WeakMap<JsonSchema, Map<JsonSchema, Branch[]>>>();
function expandOnce(branch: Branch, options: DriftOptions): Branch[] {
  let bySchema = expansions.get(options.resolve);
  if (!bySchema) expansions.set(options.resolve, (bySchema = new WeakMap<JsonSchema, Map<JsonSchema, Branch[]>>()));
  let byRoot = bySchema.get(branch.schema);
  if (!byRoot) bySchema.set(branch.schema, (byRoot = new Map<JsonSchema, Branch[]>()));
  let found = byRoot.get(branch.root);
  if (!found) byRoot.set(branch.root, (found = expand(branch, options)));
  return found;
}

const isWildcard = (s: JsonSchema): boolean => !CONSTRAINING.some((k) => k in s);

const admits = (s: JsonSchema, type: 'object' | 'array'): boolean => {
  const t = schemaTypes(s);
  if (t) return t.includes(type);
  return type === 'object'
    ? 'properties' in s || 'additionalProperties' in s || 'patternProperties' in s
    : 'items' in s || 'prefixItems' in s;
};

/** Schemas a field's value must match, across the branches; undefined = not declared anywhere. */
function fieldSchemas(branches: Branch[], key: string): Branch[] | undefined {
  const found: Branch[] = [];
  let declared = false;
  for (const { schema, root } of branches) {
    const property = isJsonObject(schema.properties) ? asSchema(schema.properties[key]) : undefined;
    if (property) {
      declared = true;
      found.push({ schema: property, root });
      continue;
    }
    if (isJsonObject(schema.patternProperties)) {
      for (const [pattern, sub] of Object.entries(schema.patternProperties)) {
        const s = asSchema(sub);
        if (s && new RegExp(pattern, 'u').test(key)) {
          declared = true;
          found.push({ schema: s, root });
        }
      }
    }
    const open = asSchema(schema.additionalProperties);
    if (open) {
      declared = true;
      found.push({ schema: open, root });
    }
  }
  return declared ? found : undefined;
}

/** `cardLast4` / `cardBin` beside a card token: added by the edge's tokenizer. */
function isTokenizerSibling(object: Record<string, unknown>, key: string): boolean {
  const m = /^(.+)(Bin|Last4)$/.exec(key);
  if (!m) return false;
  const original = object[m[1]!];
  return typeof original === 'string' && TOKEN_PATTERN.exec(original)?.[1] === 'pan';
}

/** Field paths `doc` carries that `schema` does not declare, in document order. */
export function unknownFieldPaths(doc: unknown, schema: JsonSchema, options: DriftOptions): UnknownPaths {
  const found = new Set<string>();
  let truncated = false;
  const add = (path: string): boolean => {
    if (found.has(path)) return true;
    if (found.size >= options.maxPaths) {
      truncated = true;
      return false;
    }
    found.add(path);
    return true;
  };

  const walkUnknown = (value: unknown, path: string, depth: number): void => {
    if (depth > MAX_DEPTH) return;
    if (Array.isArray(value)) for (const item of value) walkUnknown(item, `${path}[]`, depth + 1);
    else if (isJsonObject(value)) {
      for (const [key, child] of Object.entries(value)) {
        if (isTokenizerSibling(value, key)) continue;
        const p = joinPath(path, key);
        if (!add(p)) return;
        walkUnknown(child, p, depth + 1);
      }
    }
  };

  const walk = (value: unknown, candidates: Branch[], path: string, depth: number): void => {
    if (depth > MAX_DEPTH || (!Array.isArray(value) && !isJsonObject(value))) return;
    const branches = candidates.flatMap((b) => expandOnce(b, options));
    if (branches.length === 0 || branches.some((b) => isWildcard(b.schema))) return;
    if (Array.isArray(value)) {
      const items = branches
        .filter((b) => admits(b.schema, 'array'))
        .flatMap(({ schema, root }): Branch[] => {
          const tuple = Array.isArray(schema.prefixItems) ? schema.prefixItems.map(asSchema) : [];
          const rest = 'items' in schema ? asSchema(schema.items) : {};
          return [...tuple, rest].flatMap((s) => (s ? [{ schema: s, root }] : []));
        });
      for (const item of value) walk(item, items, `${path}[]`, depth + 1);
      return;
    }
    // A value of another type than declared is a validation problem (quarantine), not drift.
    const objects = branches.filter((b) => admits(b.schema, 'object'));
    if (objects.length === 0) return;
    for (const [key, child] of Object.entries(value)) {
      if (isTokenizerSibling(value, key)) continue;
      const p = joinPath(path, key);
      const declared = fieldSchemas(objects, key);
      if (declared) {
        walk(child, declared, p, depth + 1);
        continue;
      }
      if (!add(p)) return;
      walkUnknown(child, p, depth + 1);
    }
  };

  walk(doc, [{ schema, root: schema }], '', 0);
  return { paths: [...found], truncated };
}

/** The documents a raw message value holds for its schema: the value, or a CDC event's row images. */
export function documentsOf(location: DocumentLocation, value: unknown): unknown[] {
  if (location === 'value') return [value];
  // Debezium JsonConverter with schemas.enable=true wraps the event as {schema, payload}.
  const event = isJsonObject(value) && 'payload' in value && 'schema' in value ? value.payload : value;
  if (isJsonObject(event) && ('op' in event || 'after' in event || 'before' in event)) {
    return [event.after, event.before].filter(isJsonObject);
  }
  return isJsonObject(event) ? [event] : [];
}
