import tseslint from 'typescript-eslint';
import { builtinModules } from 'node:module';

// Workflow code must be deterministic: no Node built-ins, no I/O packages, no clock/random/env.
const forbiddenInWorkflows = [
  ...builtinModules,
  ...builtinModules.map((m) => `node:${m}`),
  'pg',
  'kafkajs',
  'snowflake-sdk',
  '@aws-sdk/*',
  '@temporalio/client',
  '@temporalio/worker',
  '@temporalio/activity',
];

// Settings with public dev defaults (SECRET_SETTINGS in src/config.ts): read only through
// secretSetting(config, name), which refuses those defaults in production, so no call site can skip the check.
const secretSettings = [
  'DATABASE_URL',
  'MIGRATION_DATABASE_URL',
  'VAULT_DATABASE_URL',
  'OLTP_DATABASE_URL',
  'VAULT_ENCRYPTION_KEYS',
  'TOKENIZATION_KEYS',
  'WEBHOOK_PARTNERS',
  'PARTNER_APIS',
  'S3_SECRET_ACCESS_KEY',
  'SNOWFLAKE_PASSWORD',
];
const secretName = `/^(${secretSettings.join('|')})$/`;
const secretReadMessage =
  'Read this secret through secretSetting(config, name) from src/config.ts: production refuses its dev default.';
const secretReads = [
  { selector: `MemberExpression[property.name=${secretName}]`, message: secretReadMessage },
  { selector: `MemberExpression[property.value=${secretName}]`, message: secretReadMessage },
  { selector: `ObjectPattern > Property[key.name=${secretName}]`, message: secretReadMessage },
];

// Imports flow one way: runtime code (what runs in production) never reaches into the simulator, the
// local-stack installer, starters, ops tooling, benchmarks or tests; those may import runtime code.
const runtimeFiles = [
  'src/{contracts,ledger,stores,streams,ingest,quality,workflows,activities,workers}/**/*.ts',
  'src/{config,logger,pid}.ts',
];
const runtimeBoundary = {
  group: ['**/simulator/*', '**/stack/*', '**/starters/*', '**/ops/*', '**/bench/*', '**/test/*', '**/test/**/*'],
  message:
    'Runtime code never imports the simulator, the local-stack installer, starters, ops tooling, bench or tests (docs/architecture.md).',
};

export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', '.paylink/**', 'tools/**/*.py'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        // node:test's describe/it return promises the runner itself awaits.
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test'] }] },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      // Interfaces such as LocalService are async even where one implementation has nothing to await.
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', ignoreRestSiblings: true }],
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
    },
  },
  {
    // The local stack installer provisions the dev defaults themselves and never runs in production.
    files: ['src/**/*.ts', 'bench/**/*.ts'],
    ignores: ['src/config.ts', 'src/stack/**'],
    rules: { 'no-restricted-syntax': ['error', ...secretReads] },
  },
  {
    // kafkajs stays behind the one Kafka module so the client can be swapped (kafkajs#1603); the local-stack
    // installer provisions Kafka itself. Its own rule name, so a folder's no-restricted-imports cannot replace it.
    files: ['src/**/*.ts'],
    ignores: ['src/streams/kafka.ts', 'src/stack/**'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: [
            {
              name: 'kafkajs',
              message: 'Use the types and functions of src/streams/kafka.ts: kafkajs stays behind that module.',
            },
          ],
        },
      ],
    },
  },
  {
    files: runtimeFiles,
    rules: { 'no-restricted-imports': ['error', { patterns: [runtimeBoundary] }] },
  },
  {
    files: ['src/workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: forbiddenInWorkflows.filter((m) => !m.includes('*')),
          patterns: [
            runtimeBoundary, // this block's no-restricted-imports replaces the runtime one for workflow files
            { group: ['@aws-sdk/*'], message: 'No I/O in workflow code: call an activity.' },
            {
              group: ['**/activities/*', '**/stores/*', '**/streams/*'],
              allowTypeImports: true,
              message: 'Workflows see activities as types only.',
            },
          ],
        },
      ],
      'no-restricted-globals': [
        'error',
        { name: 'process', message: 'No env in workflow code: pass config in the workflow input.' },
        { name: 'setTimeout', message: 'Use sleep() from @temporalio/workflow.' },
        { name: 'setInterval', message: 'Use sleep() from @temporalio/workflow.' },
        { name: 'fetch', message: 'No I/O in workflow code: call an activity.' },
      ],
      'no-restricted-properties': [
        'error',
        { object: 'Math', property: 'random', message: 'No randomness in workflow code.' },
      ],
      // Date.now() and new Date() stay allowed: the Temporal sandbox makes them the workflow task's time.
      'no-restricted-syntax': ['error', ...secretReads], // replaces the block above's rule for workflow files
    },
  },
  {
    files: ['**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    // The fraud-views page's script runs in the browser as served, with no build step (no type information).
    files: ['src/streams/fraud-views/page/*.js'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: { ...tseslint.configs.disableTypeChecked.languageOptions, sourceType: 'script' },
  },
);
