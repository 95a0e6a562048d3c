// OpenAPI 3.1 description of the webhook receiver, served at GET /openapi.json.
const error = { type: 'object', properties: { error: { type: 'string' } }, required: ['error'] } as const;
const json = (schema: object) => ({ 'application/json': { schema } });

export const WEBHOOK_OPENAPI = {
  openapi: '3.1.0',
  info: {
    title: 'PayLink webhook receiver',
    version: '1',
    description:
      'Partner webhooks enter PayLink here. A 2xx means the event is durable (acknowledged by Kafka with acks=all, or fsynced to the local spool while Kafka is unreachable). Card numbers and PII are tokenized before the event leaves the edge.',
  },
  paths: {
    '/webhooks/{partnerId}': {
      post: {
        summary: 'Receive one partner webhook',
        parameters: [{ name: 'partnerId', in: 'path', required: true, schema: { type: 'string' } }],
        requestBody: {
          required: true,
          description:
            'Stripe-style partners: {id, type: "payment.<fact>", created, data: {object}} signed in the Stripe-Signature header (t=<unix>,v1=<hex HMAC-SHA256 of "t.body">). Adyen-style partners: {notificationItems: [{NotificationRequestItem}]} with additionalData.hmacSignature per item.',
          content: json({ type: 'object' }),
        },
        responses: {
          '200': {
            description:
              'Accepted and acknowledged by Kafka; or, Adyen-style, every item already accepted within the replay window (`replayed`), nothing produced again',
            content: json({ type: 'object' }),
          },
          '202': {
            description: 'Accepted and durable: spooled (Kafka unreachable) or quarantined (authentic but invalid)',
            content: json({ type: 'object' }),
          },
          '400': {
            description:
              'Malformed JSON, nested more than 32 arrays/objects deep, not the partner scheme’s envelope, or a path that is not valid percent-encoding',
            content: json(error),
          },
          '401': { description: 'Unsigned, forged, stale, future-dated or replayed', content: json(error) },
          '404': { description: 'Unknown partner', content: json(error) },
          '413': {
            description: 'Body over the size limit, or holding more than 1000 PII values',
            content: json(error),
          },
          '415': { description: 'Content-Type other than application/json (UTF-8)', content: json(error) },
          '503': {
            description: 'Event spool (Kafka unreachable) or vault journal (Postgres unreachable) full: retry later',
            content: json(error),
          },
        },
      },
    },
    '/healthz': {
      get: { summary: 'Process is up', responses: { '200': { description: 'ok', content: json({ type: 'object' }) } } },
    },
    '/readyz': {
      get: {
        summary:
          'Ready, or "degraded: kafka (spooling)" while Kafka is unreachable, or "degraded: postgres (vault journal N)" while the vault (Postgres) is; also `spooled` and `vaultJournal` counts, `spoolDrainErrors` and `lastSpoolDrainError`',
        responses: { '200': { description: 'ready or degraded', content: json({ type: 'object' }) } },
      },
    },
  },
} as const;
