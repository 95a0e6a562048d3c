import type { JsonSchema } from './schema-registry';

// Reading JSON Schema as zod emits it: shared by drift detection and the compatibility check.

export function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The `type` keyword as a list; undefined when the schema does not say. */
export function schemaTypes(s: JsonSchema): string[] | undefined {
  if (typeof s.type === 'string') return [s.type];
  return Array.isArray(s.type) ? (s.type as string[]) : undefined;
}

/** A local `$ref` (`#/$defs/…`, JSON Pointer escapes undone) inside `root`; `true` reads as `{}`. */
export function resolveLocalRef(root: JsonSchema, ref: string): JsonSchema | undefined {
  if (!ref.startsWith('#/')) return undefined;
  let at: unknown = root;
  for (const part of ref.slice(2).split('/')) {
    at = isJsonObject(at) ? at[part.replace(/~1/g, '/').replace(/~0/g, '~')] : undefined;
  }
  return at === true ? {} : isJsonObject(at) ? at : undefined;
}

/** Dotted field path: `data` + `object` → `data.object`. */
export const joinPath = (path: string, key: string): string => (path === '' ? key : `${path}.${key}`);
