import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', 'ecosystem.config.js', 'eslint.config.mjs', 'test/fixtures/*.cjs', '.dependency-cruiser.cjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
    },
  },
  {
    files: ['src/**/*.ts'],
    rules: {
      // a function a newcomer can read at once (the restructuring of issue 8 brought every one under this)
      'max-lines-per-function': ['error', { max: 80, skipBlankLines: true, skipComments: true }],
      // a file with one job a newcomer can name (issue 20)
      'max-lines': ['error', { max: 400, skipBlankLines: true, skipComments: true }],
    },
  },
  {
    // One child-process runner: every program (pg_dump, psql, zstd, age, pm2, …) starts through src/pg/program.ts,
    // which gives it no shell, a deadline, a kill on timeout and a redacted stderr tail.
    files: ['src/**/*.ts'],
    ignores: ['src/pg/program.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: ['node:child_process', 'child_process'].map((name) => ({
            name,
            allowTypeImports: true,
            message: 'Start programs through runProgram (src/pg/program.ts): no shell, a deadline, kill on timeout, stderr captured.',
          })),
        },
      ],
    },
  },
  {
    // Configuration is read in one place: src/config reads (and, for libraries, sets) the environment.
    files: ['src/**/*.ts'],
    ignores: ['src/config/**'],
    rules: {
      'no-restricted-properties': ['error', { object: 'process', property: 'env', message: 'Read configuration in src/config (Settings, childEnv, pm2Env).' }],
    },
  },
);
