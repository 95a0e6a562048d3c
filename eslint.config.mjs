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
    files: ['src/workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: forbiddenInWorkflows.filter((m) => !m.includes('*')),
          patterns: [
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
);
