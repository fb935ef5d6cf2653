import type { RunConfig } from '../presets';
import { runKeys, stepName } from '../store-layout';
import type { TrainState } from '../train/optimizer';
import {
  CheckpointError,
  LoadedCheckpoint,
  MANIFEST_NAME,
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
  ): Promise<string> {
    const encoded = encodeCheckpoint(state, config);
    const dir = this.keyFor(state.step);
    for (const [name, bytes] of encoded.objects) {
      await this.objects.put(`${dir}/${name}`, bytes);
      onObjectWritten?.(`${dir}/${name}`);
    }
    await this.objects.put(`${dir}/${MANIFEST_NAME}`, encoded.manifestBytes);
    await this.objects.put(this.latestKey(), dir);
    if (Number.isFinite(keep)) await this.prune(keep);
    return dir;
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

  async load(step: number, expected?: RunConfig): Promise<LoadedCheckpoint> {
    const dir = this.keyFor(step);
    const where = `${this.objects.uri.replace(/\/$/, '')}/${dir}`;
    const manifest = await this.objects.tryGet(`${dir}/${MANIFEST_NAME}`);
    if (!manifest) throw new CheckpointError(`${where}: no manifest (incomplete checkpoint)`);
    return decodeCheckpoint(manifest, (name) => this.objects.get(`${dir}/${name}`), where, expected);
  }

  /**
   * The newest checkpoint that verifies, with the reasons newer ones were passed over; null when the run
   * has none. A config mismatch is not skipped over: resuming a different model silently would be wrong.
   */
  async newestValid(expected?: RunConfig): Promise<ResumePoint | null> {
    const skipped: SkippedCheckpoint[] = [];
    for (const step of await this.listSteps()) {
      try {
        const checkpoint = await this.load(step, expected);
        return { checkpoint, key: this.keyFor(step), skipped };
      } catch (e) {
        if (!(e instanceof CheckpointError) || /does not match this run/.test(e.message)) throw e;
        skipped.push({ step, reason: e.message });
      }
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
