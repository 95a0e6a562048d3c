import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { type SchemaRef, parseSchemaHeader } from '../contracts/envelope';
import { GatewayEvent } from '../contracts/gateway-event';
import { AdyenNotificationRequestItem, StripeStyleEvent } from '../contracts/partner-webhooks';
import { PartnerSettlementRecord } from '../contracts/partner-api';
import { PaymentEvent } from '../contracts/payment-event';
import { errorMessage } from '../logger';
import { OltpLedgerEntryRow, OltpPaymentRow } from './oltp-rows';

// The schema registry: the zod contracts stay the code's source of truth; each version of a
// registered schema is frozen as JSON Schema in schemas/<name>/v<N>.json, which is what drift
// detection and the compatibility check read (old versions live on only as frozen files).

/** A JSON Schema document or subschema, as zod emits it and as frozen in schemas/. */
export type JsonSchema = { [keyword: string]: unknown };

export const SCHEMAS_DIR = join(__dirname, '..', '..', 'schemas');

/** Set on an open map whose keys are checked for drift against another registered schema's fields. */
export const FIELDS_OF_KEYWORD = 'x-paylink-fields-of';

/** Where a schema's documents sit inside a raw message value. */
export type DocumentLocation = 'value' | 'debezium-rows';

export interface RegisteredSchema extends SchemaRef {
  /** `schema` header name, e.g. stripe-style-event (the header is `<name>@<version>`, see schemaHeader). */
  name: string;
  /** The version `contract` is now; it must be frozen as schemas/<name>/v<version>.json. */
  version: number;
  contract: z.ZodType;
  /** Open maps (dotted path) whose keys are compared with another schema's fields ("name@version"). */
  fieldsOf?: Readonly<Record<string, string>>;
  documents?: DocumentLocation;
}

// Registering a schema is one line here, then `npm run schemas:check -- --write <name>`.
const REGISTERED = [
  {
    name: 'stripe-style-event',
    version: 1,
    contract: StripeStyleEvent,
    // data.object is spread into the payment fact, so a field the fact does not know is drift.
    fieldsOf: { 'data.object': 'payment-fact@1' },
  },
  { name: 'adyen-notification-item', version: 1, contract: AdyenNotificationRequestItem },
  // v2: the optional traceId the edge sets.
  { name: 'payment-fact', version: 2, contract: PaymentEvent },
  // v2: the nullable description column.
  { name: 'debezium-oltp-payments', version: 2, contract: OltpPaymentRow, documents: 'debezium-rows' },
  { name: 'debezium-oltp-ledger-entries', version: 1, contract: OltpLedgerEntryRow, documents: 'debezium-rows' },
  { name: 'gateway-event', version: 1, contract: GatewayEvent },
  { name: 'partner-settlement', version: 1, contract: PartnerSettlementRecord },
] as const satisfies readonly RegisteredSchema[];

export const REGISTERED_SCHEMAS: readonly RegisteredSchema[] = REGISTERED;
export type RegisteredSchemaName = (typeof REGISTERED)[number]['name'];

/** Every registered schema at its current version: what producers put in the `schema` header. */
export const CURRENT_SCHEMAS = Object.fromEntries(
  REGISTERED.map((e) => [e.name, { name: e.name, version: e.version }]),
) as Record<RegisteredSchemaName, SchemaRef>;

/** The JSON Schema the contract accepts now (zod input side: defaults make a field optional). */
export function contractJsonSchema(entry: RegisteredSchema): JsonSchema {
  const schema = z.toJSONSchema(entry.contract, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  for (const [path, ref] of Object.entries(entry.fieldsOf ?? {})) {
    if (!parseSchemaHeader(ref)) throw new Error(`${entry.name}: fieldsOf ${path}: "${ref}" is not <name>@<version>`);
    let at: JsonSchema = schema;
    for (const key of path.split('.')) {
      const next = (at.properties as Record<string, JsonSchema> | undefined)?.[key];
      if (!next) throw new Error(`${entry.name}: fieldsOf path "${path}" is not a declared property`);
      at = next;
    }
    at[FIELDS_OF_KEYWORD] = ref;
  }
  return schema;
}

export function frozenSchemaFile(dir: string, name: string, version: number): string {
  return join(dir, name, `v${version}.json`);
}

/** Every frozen version under `dir`: name → version → JSON Schema. */
export function loadFrozenSchemas(dir = SCHEMAS_DIR): Map<string, Map<number, JsonSchema>> {
  const all = new Map<string, Map<number, JsonSchema>>();
  if (!existsSync(dir)) return all;
  for (const name of readdirSync(dir).sort()) {
    if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) continue;
    const versions = new Map<number, JsonSchema>();
    for (const file of readdirSync(join(dir, name))) {
      const m = /^v([1-9][0-9]*)\.json$/.exec(file);
      if (!m) throw new Error(`${join(dir, name, file)}: schema files are named v<N>.json`);
      const path = join(dir, name, file);
      let parsed: unknown;
      try {
        parsed = JSON.parse(readFileSync(path, 'utf8'));
      } catch (err) {
        throw new Error(`${path}: not JSON: ${errorMessage(err)}`);
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        throw new Error(`${path}: a JSON Schema must be an object`);
      }
      versions.set(Number(m[1]), parsed as JsonSchema);
    }
    all.set(name, new Map([...versions].sort(([a], [b]) => a - b)));
  }
  return all;
}

export type SchemaLookup =
  | { ok: true; name: string; version: number; schema: JsonSchema; documents: DocumentLocation }
  | { ok: false; reason: string };

export interface SchemaRegistry {
  /** Resolves a `schema` header value (`<name>@<version>`) to its frozen JSON Schema. */
  lookup: (ref: string | undefined) => SchemaLookup;
  /** The frozen schema of `<name>@<version>` (x-paylink-fields-of references), if any. */
  resolve: (ref: string) => JsonSchema | undefined;
}

export function createSchemaRegistry(
  frozen = loadFrozenSchemas(),
  entries: readonly RegisteredSchema[] = REGISTERED_SCHEMAS,
): SchemaRegistry {
  const documents = new Map(entries.map((e) => [e.name, e.documents ?? 'value']));
  return {
    resolve: (ref) => {
      const parsed = parseSchemaHeader(ref);
      return parsed ? frozen.get(parsed.name)?.get(parsed.version) : undefined;
    },
    lookup: (ref) => {
      if (ref === undefined || ref.trim() === '') return { ok: false, reason: 'no schema header' };
      const parsed = parseSchemaHeader(ref);
      if (!parsed) return { ok: false, reason: `schema header "${ref.slice(0, 120)}" is not <name>@<version>` };
      const schema = frozen.get(parsed.name)?.get(parsed.version);
      if (!schema) return { ok: false, reason: `${parsed.name}@${parsed.version} is not frozen in schemas/` };
      return { ok: true, ...parsed, schema, documents: documents.get(parsed.name) ?? 'value' };
    },
  };
}
