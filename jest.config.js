/** Tests are TypeScript compiled by swc (no type checking here: `npm run typecheck` does that). */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['@swc/jest'] },
  // Numerical tests on a 2-core machine are slow; each file sets tighter limits where it can.
  testTimeout: 120000,
  // The pipeline tests time real processes (heartbeat timeouts, kills); on CI's 2 cores one file at a
  // time keeps a busy neighbour from starving a trainer's heartbeats.
  maxWorkers: process.env.CI ? 1 : 2,
  setupFiles: ['<rootDir>/test/setup-tf.ts'],
};
