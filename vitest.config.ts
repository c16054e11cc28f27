import { defineConfig } from 'vitest/config'

// Tests run on TypeScript sources: the `@omnibus/source` export condition points every entry
// of every workspace package (`@omnibus/core/backend` too) at its `src/…ts`, so no build is needed.
const conditions = ['@omnibus/source', 'node', 'import', 'default']

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: ['@omnibus/source'] } },
  test: {
    // The second reporter closes the run with how many integration blocks each missing broker skipped.
    reporters: ['default', './test-integration/setup/skip-summary.ts'],
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['packages/*/test/**/*.test.ts'],
          testTimeout: 30_000,
          hookTimeout: 30_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test-integration/**/*.test.ts'],
          globalSetup: ['test-integration/setup/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
    ],
  },
})
