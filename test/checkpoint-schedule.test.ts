/**
 * The one formula for where checkpoints fall: the CLI's default interval, the workflow's segment targets
 * and the trainers' save points all come from core/train/checkpoint-schedule.ts.
 */
import {
  defaultCheckpointEvery,
  isCheckpointStep,
  nextCheckpointStep,
} from '../core/train/checkpoint-schedule';

test('the default interval is a tenth of the run, at least 1 and at most 5000', () => {
  expect(defaultCheckpointEvery(3)).toBe(1);
  expect(defaultCheckpointEvery(40)).toBe(4);
  expect(defaultCheckpointEvery(45)).toBe(5);
  expect(defaultCheckpointEvery(800_000)).toBe(5000);
});

test('the next boundary is the next multiple of the interval, never past the end of the run', () => {
  expect(nextCheckpointStep(0, 4, 10)).toBe(4);
  expect(nextCheckpointStep(3, 4, 10)).toBe(4);
  expect(nextCheckpointStep(4, 4, 10)).toBe(8);
  expect(nextCheckpointStep(8, 4, 10)).toBe(10);
  expect(nextCheckpointStep(10, 4, 10)).toBe(10);
});

test('a trainer saves on every boundary and at its target, nowhere else', () => {
  const saves = [1, 2, 3, 4, 5, 6, 7].filter((s) => isCheckpointStep(s, 3, 7));
  expect(saves).toEqual([3, 6, 7]);
});
