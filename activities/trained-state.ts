import { CheckpointManifest, StateInMemory, encodeCheckpoint } from '../core/checkpoint/checkpoint';
import type { TrainState } from '../core/train/optimizer';

/**
 * The state the last training segment in this process ended with, so that the next segment of the same
 * run need not read back the checkpoint it was saved to (hundreds of MB from S3 for the CIFAR-10 model).
 * It never decides what a segment resumes from: the store does, exactly as for a fresh process (the
 * newest checkpoint whose manifest is valid and matches the run). This state only stands in for that
 * checkpoint's objects when the manifest lists exactly the bytes it encodes to (each object's sha256),
 * and it is handed out once, so two trainers in one process never share, and both update, one state.
 */
interface Kept {
  storeUri: string;
  runId: string;
  state: TrainState;
  /** The checksums of the checkpoint this process wrote from the state; unset when another rank wrote it. */
  files?: CheckpointManifest['files'];
}

let kept: Kept | null = null;

/** Keeps a finished trainer's state (the trainer must not step again) in place of any kept before. */
export function keepTrainedState(entry: Kept): void {
  kept = entry;
}

/** Hands this run's kept state, if any, to one resume: a stand-in for the checkpoint it is exactly equal to. */
export function takeTrainedState(
  storeUri: string,
  runId: string,
): { state: TrainState; standIn: StateInMemory } | undefined {
  const k = kept;
  if (!k || k.storeUri !== storeUri || k.runId !== runId) return undefined;
  kept = null;
  const standIn: StateInMemory = (manifest) => {
    if (manifest.step !== k.state.step) return undefined;
    // Another rank wrote this checkpoint: compare with what this state encodes to (no reading back).
    const files = k.files ?? encodeCheckpoint(k.state, manifest.config).manifest.files;
    return sameFiles(files, manifest.files) ? k.state : undefined;
  };
  return { state: k.state, standIn };
}

function sameFiles(a: CheckpointManifest['files'], b: CheckpointManifest['files']): boolean {
  const names = Object.keys(a);
  return (
    names.length === Object.keys(b).length &&
    names.every((n) => b[n] !== undefined && b[n].sha256 === a[n].sha256 && b[n].bytes === a[n].bytes)
  );
}
