import { z } from 'zod';
import { FraudAlertSchema, StoreStatusSchema, ViewSchema, ViewsSnapshotSchema } from './snapshot-schema';

// OpenAPI 3.1 description of the fraud-views server, served at GET /api/openapi.json. Its schemas are
// generated from the zod schemas the server checks every snapshot with, so the two cannot drift apart.

const schema = (s: z.ZodType): object => {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(s, { io: 'output', unrepresentable: 'any' });
  return rest;
};
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (s: object) => ({ 'application/json': { schema: s } });
const error = { description: '', content: json(ref('Error')) };
const errorResponse = (description: string) => ({ ...error, description });

const storeNote =
  'The views are eventually consistent (AP): while the store cannot be read the last snapshot is served with `store.reachable=false`, `store.error` and each view’s as-of left where it was — never a 5xx.';

export const FRAUD_VIEWS_OPENAPI = {
  openapi: '3.1.0',
  info: {
    title: 'PayLink fraud and risk views',
    version: '1',
    description: `Windowed fraud and risk views computed by the fraud-views consumer, each with its age (event-time as-of, processing lag, consumer lag, whether its newest window is open), and the alerts its rules raised. ${storeNote} Every path answers GET and HEAD only (any other method is a 405 with an Allow header). Query parameters of /api paths are checked strictly: an unknown, repeated or malformed one is a 400 naming it.`,
  },
  paths: {
    '/api/views': {
      get: {
        summary: 'The whole snapshot: every view, the alerts and the store status',
        responses: {
          '200': { description: 'The last snapshot read from the store', content: json(ref('ViewsSnapshot')) },
          '400': errorResponse('A query parameter (this path takes none)'),
        },
      },
    },
    '/api/views/{name}': {
      get: {
        summary: 'One view, with the snapshot time and the store status',
        parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string' } }],
        responses: {
          '200': {
            description: 'The view as of the last snapshot',
            content: json({
              type: 'object',
              properties: { generatedAt: { type: 'string' }, store: ref('StoreStatus'), view: ref('View') },
              required: ['generatedAt', 'store', 'view'],
            }),
          },
          '400': errorResponse('The name is not valid percent-encoding, or a query parameter was given'),
          '404': errorResponse('No view of that name in the snapshot (the error lists the names there are)'),
        },
      },
    },
    '/api/alerts': {
      get: {
        summary: 'Alerts raised by the rules, newest first',
        parameters: [
          {
            name: 'rule',
            in: 'query',
            required: false,
            description: 'Only alerts of this rule (e.g. card-testing, decline-spike)',
            schema: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,100}$' },
          },
          {
            name: 'limit',
            in: 'query',
            required: false,
            description: 'At most this many alerts (default 100)',
            schema: { type: 'integer', minimum: 1, maximum: 500, default: 100 },
          },
        ],
        responses: {
          '200': {
            description: 'The alerts of the last snapshot',
            content: json({
              type: 'object',
              properties: {
                generatedAt: { type: 'string' },
                store: ref('StoreStatus'),
                alerts: { type: 'array', items: ref('FraudAlert') },
              },
              required: ['generatedAt', 'store', 'alerts'],
            }),
          },
          '400': errorResponse('`rule` or `limit` malformed, out of range or repeated, or an unknown parameter'),
        },
      },
    },
    '/api/openapi.json': {
      get: { summary: 'This document', responses: { '200': { description: 'OpenAPI 3.1', content: json({}) } } },
    },
    '/events': {
      get: {
        summary: 'Server-sent events: the snapshot on connect and whenever it changes',
        description:
          'Each `snapshot` event carries a whole ViewsSnapshot as JSON in its data. A comment line (`: heartbeat`) comes every 15 s so proxies keep the connection open. `retry: 2000` asks browsers to reconnect after 2 s. The number of connected clients is bounded.',
        responses: {
          '200': {
            description: 'An endless text/event-stream',
            content: { 'text/event-stream': { schema: { type: 'string' } } },
          },
          '429': errorResponse('Too many event-stream clients: retry later'),
        },
      },
    },
    '/': {
      get: {
        summary: 'The live page (HTML)',
        responses: { '200': { description: 'HTML', content: { 'text/html': { schema: { type: 'string' } } } } },
      },
    },
    '/assets/{file}': {
      get: {
        summary: 'The page’s script and styles, and the uPlot chart library',
        parameters: [{ name: 'file', in: 'path', required: true, schema: { type: 'string' } }],
        responses: {
          '200': { description: 'A static file', content: { '*/*': { schema: { type: 'string' } } } },
          '404': errorResponse('No such asset'),
        },
      },
    },
    '/healthz': {
      get: {
        summary: 'Process is up (the store may not be: see /api/views `store`)',
        responses: { '200': { description: 'ok', content: json({ type: 'object' }) } },
      },
    },
  },
  components: {
    schemas: {
      ViewsSnapshot: schema(ViewsSnapshotSchema),
      View: schema(ViewSchema),
      FraudAlert: schema(FraudAlertSchema),
      StoreStatus: schema(StoreStatusSchema),
      Error: { type: 'object', properties: { error: { type: 'string' } }, required: ['error'] },
    },
  },
} as const;
