import { CheckpointError, CheckpointMismatchError, NoValidCheckpointError } from '../errors';
import type { RunConfig } from '../presets';
import { runKeys, stepName } from '../store-layout';
import type { TrainState } from '../train/optimizer';
import {
  CheckpointManifest,
  LoadedCheckpoint,
  MANIFEST_NAME,
  StateInMemory,
  decodeCheckpoint,
  encodeCheckpoint,
} from './checkpoint';

/** The slice of an object store that checkpoints need (implemented by store/'s local and S3 stores). */
export interface CheckpointObjects {
  readonly uri: string;
  put(key: string, body: Uint8Array | string): Promise<void>;
  get(key: string): Promise<Uint8Array>;
  tryGet(key: string): Promise<Uint8Array | null>;
  list(prefix: string): Promise<string[]>;
  delete(key: string): Promise<void>;
  deletePrefix(prefix: string): Promise<void>;
}

export interface SkippedCheckpoint {
  step: number;
  reason: string;
}

export interface ResumePoint {
  checkpoint: LoadedCheckpoint;
  key: string;
  /** Newer checkpoints that could not be used, newest first, each with the reason. */
  skipped: SkippedCheckpoint[];
}

export interface SavedCheckpoint {
  /** The checkpoint's folder, `<runId>/checkpoints/<step>`. */
  key: string;
  /** The manifest written last: its file checksums identify the state's bytes. */
  manifest: CheckpointManifest;
}

export { stepName };

/**
 * Commit protocol for `<runId>/checkpoints/<step>/`: tensor objects first, then the manifest carrying
 * their sha256, then the `<runId>/latest` pointer. A directory without a valid manifest is not a
 * checkpoint; a crash at any point leaves the previous checkpoint intact and discoverable.
 */
export class CheckpointRepository {
  constructor(
    private readonly objects: CheckpointObjects,
    readonly runId: string,
  ) {}

  prefix(): string {
    return runKeys.checkpointsPrefix(this.runId);
  }

  keyFor(step: number): string {
    return runKeys.checkpoint(this.runId, step);
  }

  latestKey(): string {
    return runKeys.latest(this.runId);
  }

  /**
   * Saves, then prunes to the newest `keep` checkpoints (never the one `latest` names). `onObjectWritten`
   * runs after each tensor object lands, before the manifest (fault-injection tests crash there).
   */
  async save(
    state: TrainState,
    config: RunConfig,
    keep = Infinity,
    onObjectWritten?: (key: string) => void,
  ): Promise<SavedCheckpoint> {
    const encoded = encodeCheckpoint(state, config);
    const dir = this.keyFor(state.step);
    for (const [name, bytes] of encoded.objects) {
      await this.objects.put(`${dir}/${name}`, bytes);
      onObjectWritten?.(`${dir}/${name}`);
    }
    await this.objects.put(`${dir}/${MANIFEST_NAME}`, encoded.manifestBytes);
    await this.objects.put(this.latestKey(), dir);
    if (Number.isFinite(keep)) await this.prune(keep);
    return { key: dir, manifest: encoded.manifest };
  }

  /** Steps that have a manifest object (valid or not), newest first. */
  async listSteps(): Promise<number[]> {
    const keys = await this.objects.list(this.prefix());
    const steps = new Set<number>();
    for (const key of keys) {
      const m = /checkpoints\/(\d+)\/manifest\.json$/.exec(key);
      if (m) steps.add(Number(m[1]));
    }
    return [...steps].sort((a, b) => b - a);
  }

  /** `inMemory`: see decodeCheckpoint (a state the caller holds, used if this checkpoint is exactly it). */
  async load(step: number, expected?: RunConfig, inMemory?: StateInMemory): Promise<LoadedCheckpoint> {
    const dir = this.keyFor(step);
    const where = `${this.objects.uri.replace(/\/$/, '')}/${dir}`;
    const manifest = await this.objects.tryGet(`${dir}/${MANIFEST_NAME}`);
    if (!manifest) throw new CheckpointError(`${where}: no manifest (incomplete checkpoint)`);
    const readObject = async (name: string) => {
      const bytes = await this.objects.tryGet(`${dir}/${name}`);
      if (!bytes) throw new CheckpointError(`${where}/${name}: missing (deleted or never written)`);
      return bytes;
    };
    return decodeCheckpoint(manifest, readObject, where, { expected, step, inMemory });
  }

  /**
   * The newest checkpoint that verifies, with the reasons newer ones were passed over; null when the run
   * has none. A config mismatch is not skipped over: resuming a different model silently would be wrong.
   * Neither is a run whose every checkpoint fails: the error says why each one was skipped.
   */
  async newestValid(expected?: RunConfig, inMemory?: StateInMemory): Promise<ResumePoint | null> {
    const skipped: SkippedCheckpoint[] = [];
    for (const step of await this.listSteps()) {
      try {
        const checkpoint = await this.load(step, expected, inMemory);
        return { checkpoint, key: this.keyFor(step), skipped };
      } catch (e) {
        if (!(e instanceof CheckpointError) || e instanceof CheckpointMismatchError) throw e;
        skipped.push({ step, reason: e.message });
      }
    }
    if (skipped.length > 0) {
      throw new NoValidCheckpointError(`run ${this.runId} in ${this.objects.uri}`, skipped);
    }
    return null;
  }

  private async prune(keep: number): Promise<void> {
    const latest = Buffer.from((await this.objects.tryGet(this.latestKey())) ?? []).toString('utf8');
    const steps = await this.listSteps();
    for (const step of steps.slice(Math.max(keep, 1))) {
      const dir = this.keyFor(step);
      if (dir === latest) continue;
      // The manifest goes first so a half-pruned checkpoint is already invisible to readers.
      await this.objects.delete(`${dir}/${MANIFEST_NAME}`);
      await this.objects.deletePrefix(`${dir}/`);
    }
  }
}
