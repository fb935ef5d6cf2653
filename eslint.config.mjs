import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** `no-restricted-imports` patterns: which folders a folder must not reach into (the layering). */
const folder = (name, why) => ({ group: [`**/${name}`, `**/${name}/**`], message: why });
const NOT_CLI = folder('cli', 'cli/ is the top layer: shared helpers live in common/ or core/.');
const NOT_TEST = folder('test', 'test/ helpers are for tests only.');
const NODE_BUILTINS = [
  'node:*',
  ...['assert', 'buffer', 'child_process', 'crypto', 'events', 'fs', 'fs/promises', 'http', 'https'],
  ...[
    'net',
    'os',
    'path',
    'perf_hooks',
    'process',
    'stream',
    'timers',
    'url',
    'util',
    'worker_threads',
    'zlib',
  ],
];

/** core/ (and common/, store/) is the bottom: it never reaches up into what uses it. */
const BELOW_EVERYTHING = [
  NOT_CLI,
  NOT_TEST,
  folder('workers', 'core/ must not depend on the Temporal worker.'),
  folder('activities', 'core/ must not depend on Temporal activities.'),
  folder('workflows', 'core/ must not depend on workflows (they depend on it).'),
];

const layer = (files, patterns) => ({
  files,
  rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns }] },
});

export default tseslint.config(
  { ignores: ['node_modules/', '.cache/', 'runs/', 'coverage/', '**/*.js', '**/*.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  // The backend list has one home (core/backend/names.ts): a union or array spelling it again is an error.
  {
    files: ['**/*.ts'],
    ignores: ['core/backend/names.ts', 'test/**'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: "TSUnionType > TSLiteralType > Literal[value='wasm']",
          message: 'Use BackendName / BackendChoice from core/backend/names.ts.',
        },
        {
          selector: "ArrayExpression:has(> Literal[value='wasm']):has(> Literal[value='cpu'])",
          message: 'Use BACKEND_NAMES / BACKEND_CHOICES from core/backend/names.ts.',
        },
      ],
    },
  },
  // Import layering (issue 10): lower layers never import upper ones, so each can be used and tested alone.
  layer(['core/**/*.ts', 'common/**/*.ts', 'store/**/*.ts'], BELOW_EVERYTHING),
  layer(
    ['workers/**/*.ts', 'coordinator/**/*.ts', 'activities/**/*.ts', 'infra/**/*.ts'],
    [NOT_CLI, NOT_TEST],
  ),
  layer(['bench/**/*.ts'], [NOT_CLI, NOT_TEST]),
  // Sampling loads weights and runs the model; it must not pull in the trainer. (A later block for the same
  // files replaces the rule, so it repeats the core patterns.)
  layer(
    ['core/sampling/**/*.ts'],
    [...BELOW_EVERYTHING, folder('train/trainer', 'core/sampling must not import the trainer.')],
  ),
  // Workflow code runs in Temporal's deterministic sandbox: no Node APIs, no TF.js (type-only imports are erased).
  {
    files: ['workflows/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: NODE_BUILTINS.filter((n) => !n.includes('*')).map((name) => ({
            name,
            message: 'workflows must not use Node APIs.',
            allowTypeImports: true,
          })),
          patterns: [
            { group: ['node:*'], message: 'workflows must not use Node APIs.', allowTypeImports: true },
            { group: ['@tensorflow/*'], message: 'workflows must not import TF.js.', allowTypeImports: true },
            { ...NOT_CLI, allowTypeImports: true },
            { ...NOT_TEST, allowTypeImports: true },
            {
              group: ['**/workers', '**/workers/**'],
              message: 'workflows must not import the worker.',
              allowTypeImports: true,
            },
          ],
        },
      ],
    },
  },
);
