/**
 * Where a run's checkpoints fall, in one place. Pure arithmetic (no TF.js, no Node APIs): the workflow
 * plans its segments with it and the trainers stop at the same steps.
 */

/** Default steps between checkpoints: a tenth of the run, at least 1 and at most 5000. */
export function defaultCheckpointEvery(totalSteps: number): number {
  return Math.max(1, Math.min(5000, Math.round(totalSteps / 10)));
}

/** The first checkpoint boundary after `step`: the next multiple of `every`, or the run's end. */
export function nextCheckpointStep(step: number, every: number, totalSteps: number): number {
  return Math.min(totalSteps, (Math.floor(step / every) + 1) * every);
}

/** Whether a trainer that just completed `step` saves there: on every boundary and at its target. */
export function isCheckpointStep(step: number, every: number, targetStep: number): boolean {
  return step % every === 0 || step === targetStep;
}
