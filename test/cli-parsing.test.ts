/**
 * Command-line input is read whole or refused: numbers (commander hands each option's text to these
 * parsers) and schema failures, which reach the user as one line.
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { InvalidArgumentError } from 'commander';
import { z } from 'zod';
import { oneLine } from '../common/errors';
import { nonNegativeInt, positiveInt, positiveNumber } from '../common/options';

test('numbers are parsed strictly: trailing text, blanks, hex and non-finite values are refused', () => {
  expect(positiveNumber('1e-3')).toBe(0.001);
  expect(positiveNumber('2.5')).toBe(2.5);
  expect(positiveNumber('.5')).toBe(0.5);
  expect(positiveInt('8e5')).toBe(800_000);
  expect(nonNegativeInt('0')).toBe(0);
  for (const bad of ['1e-3junk', '', ' ', ' 5', '5 ', '0x10', 'Infinity', 'NaN', '1_000', '1,5', '--1']) {
    expect(() => positiveNumber(bad)).toThrow(InvalidArgumentError);
    expect(() => nonNegativeInt(bad)).toThrow(InvalidArgumentError);
  }
  expect(() => positiveInt('1.5')).toThrow(/expected a positive integer, got '1.5'/);
  expect(() => positiveInt('0')).toThrow(InvalidArgumentError);
  expect(() => nonNegativeInt('-1')).toThrow(InvalidArgumentError);
  expect(() => positiveNumber('0')).toThrow(InvalidArgumentError);
});

test('a schema failure becomes one line naming the field, not a JSON dump of issues', () => {
  const schema = z.object({ run: z.object({ id: z.string().regex(/^\w+$/, 'letters only') }) });
  const parsed = schema.safeParse({ run: { id: '../../etc' } });
  expect(parsed.success).toBe(false);
  const line = oneLine(parsed.error);
  expect(line).toBe('invalid input: run.id: letters only');
  expect(oneLine(new Error('first\n  second'))).toBe('first second');
});

test('the worker and coordinator entry points read their numbers whole too', () => {
  const run = (script: string, args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', script, ...args], {
      cwd: resolve(__dirname, '..'),
      encoding: 'utf8',
      env: { ...process.env, DDPM_COORDINATOR_KEY: 'k', TEMPORAL_ADDRESS: '127.0.0.1:1' },
    });
  const cases: [string, string[], RegExp][] = [
    [
      'workers/trainer-worker.ts',
      ['--shutdown-grace', '10s'],
      /--shutdown-grace: expected a number of seconds, got '10s'/,
    ],
    ['workers/trainer-worker.ts', ['--slot', ' 1'], /--slot: expected a whole number >= 0, got ' 1'/],
    ['coordinator/main.ts', ['--port', '0x10'], /--port .*'0x10' is invalid/],
  ];
  for (const [script, args, expected] of cases) {
    const r = run(script, args);
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toMatch(expected);
  }
});
