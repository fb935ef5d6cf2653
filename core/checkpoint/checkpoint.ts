import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { CheckpointError, CheckpointMismatchError } from '../errors';
import { ParamLayout } from '../model/params';
import { unetParamSpecs } from '../model/unet';
import { RunConfig, RunConfigSchema } from '../presets';
import type { TrainState } from '../train/optimizer';
import { NamedTensor, SafetensorsError, decodeSafetensors, encodeSafetensors } from './safetensors';

export { CheckpointError, CheckpointMismatchError } from '../errors';

/**
 * A checkpoint is a few safetensors objects (weights, EMA weights, Adam moments) and a manifest that
 * names them with their sha256. Writers store the objects first and the manifest last, so a checkpoint
 * without a valid manifest does not exist for readers. Tensors use TF.js layouts (conv kernels HWIO).
 *
 * Versioning rule: a run outlives the code that started it, so every build reads every format version
 * it has ever written. A change to what is written bumps CHECKPOINT_VERSION, adds the new version to
 * READABLE_VERSIONS with a reader (or a migration to the current shape), and checks in a fixture written
 * by the previous version (test/fixtures/checkpoints/) that the new build must still load.
 */
export const CHECKPOINT_FORMAT = 'ddpm-tfjs-checkpoint';
export const CHECKPOINT_VERSION = 1 as const;
export const READABLE_VERSIONS: readonly number[] = [1];
export const MANIFEST_NAME = 'manifest.json';

const FileEntrySchema = z.object({
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'expected a sha256 in hex'),
  bytes: z.number().int().min(0),
});

/** What every version of the manifest starts with: enough to decide how to read the rest. */
const ManifestHeadSchema = z.object({ format: z.literal(CHECKPOINT_FORMAT), version: z.number().int() });

const ManifestV1Schema = ManifestHeadSchema.extend({
  version: z.literal(1),
  step: z.number().int().min(0),
  paramCount: z.number().int().positive(),
  config: RunConfigSchema,
  createdAt: z.string(),
  files: z.record(z.string(), FileEntrySchema),
});

export type CheckpointManifest = z.infer<typeof ManifestV1Schema>;

export interface EncodedCheckpoint {
  /** Object name -> bytes, to be written before the manifest. */
  objects: Map<string, Uint8Array>;
  manifest: CheckpointManifest;
  manifestBytes: Uint8Array;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function named(layout: ParamLayout, flat: Float32Array, prefix = ''): NamedTensor[] {
  return layout.specs.map((s, i) => ({ name: prefix + s.name, shape: s.shape, data: layout.view(flat, i) }));
}

export function encodeCheckpoint(state: TrainState, config: RunConfig): EncodedCheckpoint {
  const layout = new ParamLayout(unetParamSpecs(config.model));
  const meta = {
    format: CHECKPOINT_FORMAT,
    step: String(state.step),
    layout: 'tfjs (conv HWIO, dense [in,out])',
  };
  const objects = new Map<string, Uint8Array>([
    ['model.safetensors', encodeSafetensors(named(layout, state.params), meta)],
    ['ema.safetensors', encodeSafetensors(named(layout, state.ema), meta)],
    [
      'optimizer.safetensors',
      encodeSafetensors(
        [...named(layout, state.adamM, 'adam_m.'), ...named(layout, state.adamV, 'adam_v.')],
        meta,
      ),
    ],
  ]);
  const manifest: CheckpointManifest = {
    format: CHECKPOINT_FORMAT,
    version: CHECKPOINT_VERSION,
    step: state.step,
    paramCount: layout.totalSize,
    config,
    createdAt: new Date().toISOString(),
    files: Object.fromEntries(
      [...objects].map(([name, bytes]) => [name, { sha256: sha256(bytes), bytes: bytes.length }]),
    ),
  };
  return { objects, manifest, manifestBytes: Buffer.from(JSON.stringify(manifest, null, 2)) };
}

/** Lists where two configs differ, as dotted paths; empty when they are the same. */
export function configDifferences(a: unknown, b: unknown, path = ''): string[] {
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) {
    return JSON.stringify(a) === JSON.stringify(b)
      ? []
      : [`${path || '(root)'}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`];
  }
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].flatMap((k) =>
    configDifferences(
      (a as Record<string, unknown>)[k],
      (b as Record<string, unknown>)[k],
      path ? `${path}.${k}` : k,
    ),
  );
}

/** Parses and validates a manifest; anything malformed is a CheckpointError naming the first problem. */
export function parseManifest(bytes: Uint8Array, where: string): CheckpointManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new CheckpointError(`${where}: manifest is not valid JSON (corrupted or partially written)`);
  }
  const head = ManifestHeadSchema.safeParse(raw);
  if (!head.success) throw new CheckpointError(`${where}: not a ${CHECKPOINT_FORMAT} manifest`);
  if (!READABLE_VERSIONS.includes(head.data.version)) {
    throw new CheckpointError(
      `${where}: checkpoint format version ${head.data.version}, this build reads ${READABLE_VERSIONS.join(', ')}`,
    );
  }
  const manifest = ManifestV1Schema.safeParse(raw);
  if (!manifest.success) throw new CheckpointError(`${where}: manifest ${firstIssue(manifest.error)}`);
  return manifest.data;
}

/** A zod error as "field: problem", the way a checkpoint's skip reason shows it. */
export function firstIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  return `${issue?.path.length ? `${issue.path.join('.')}: ` : ''}${issue?.message ?? 'is malformed'}`;
}

/**
 * A training state already in memory that may stand in for a checkpoint's objects: given the checkpoint's
 * validated manifest, it returns the state if that state is exactly what the objects hold.
 */
export type StateInMemory = (manifest: CheckpointManifest) => TrainState | undefined;

export interface LoadedCheckpoint {
  state: TrainState;
  config: RunConfig;
  manifest: CheckpointManifest;
}

/**
 * Reads and verifies a checkpoint through `readObject` (a directory, an object store, ...). With
 * `expected`, refuses a checkpoint whose model or diffusion settings differ from it; with `step`, one
 * whose manifest names another step than its place in the store. With `inMemory`, a state the caller
 * holds replaces reading the objects when the manifest describes exactly that state.
 */
export async function decodeCheckpoint(
  manifestBytes: Uint8Array,
  readObject: (name: string) => Promise<Uint8Array>,
  where: string,
  checks: { expected?: RunConfig; step?: number; inMemory?: StateInMemory } = {},
): Promise<LoadedCheckpoint> {
  const { expected, step, inMemory } = checks;
  const manifest = parseManifest(manifestBytes, where);
  const config = manifest.config;
  if (step !== undefined && manifest.step !== step) {
    throw new CheckpointError(`${where}: manifest says step ${manifest.step}, its folder is step ${step}`);
  }
  if (expected) {
    const diffs = [
      ...configDifferences(config.model, expected.model, 'model'),
      ...configDifferences(config.diffusion, expected.diffusion, 'diffusion'),
    ];
    if (diffs.length > 0)
      throw new CheckpointMismatchError(`${where}: checkpoint does not match this run (${diffs.join('; ')})`);
  }
  const layout = new ParamLayout(unetParamSpecs(config.model));
  if (manifest.paramCount !== layout.totalSize) {
    throw new CheckpointError(
      `${where}: manifest says ${manifest.paramCount} parameters, its config builds ${layout.totalSize}`,
    );
  }
  const known = inMemory?.(manifest);
  if (known) return { state: known, config, manifest };
  const load = async (name: string, tensorsPerParam: number) => {
    const entry = manifest.files[name];
    if (!entry) throw new CheckpointError(`${where}: manifest does not list ${name}`);
    const bytes = await readObject(name);
    if (bytes.length !== entry.bytes || sha256(bytes) !== entry.sha256) {
      throw new CheckpointError(`${where}/${name}: checksum mismatch (corrupted or incomplete object)`);
    }
    let tensors: Map<string, NamedTensor>;
    try {
      tensors = decodeSafetensors(bytes, `${where}/${name}`).tensors;
    } catch (e) {
      if (e instanceof SafetensorsError) throw new CheckpointError(e.message);
      throw e;
    }
    if (tensors.size !== layout.specs.length * tensorsPerParam) {
      const expectedCount = layout.specs.length * tensorsPerParam;
      throw new CheckpointError(
        `${where}/${name}: holds ${tensors.size} tensors, the model needs ${expectedCount}`,
      );
    }
    return tensors;
  };
  const flatten = (tensors: Map<string, NamedTensor>, prefix: string, file: string) => {
    const flat = new Float32Array(layout.totalSize);
    layout.specs.forEach((spec, i) => {
      const t = tensors.get(prefix + spec.name);
      if (!t) throw new CheckpointError(`${where}/${file}: missing tensor ${prefix + spec.name}`);
      if (configDifferences(t.shape, spec.shape).length > 0) {
        throw new CheckpointError(
          `${where}/${file}: ${t.name} has shape [${t.shape}], the model needs [${spec.shape}]`,
        );
      }
      layout.view(flat, i).set(t.data);
    });
    return flat;
  };
  const model = await load('model.safetensors', 1);
  const ema = await load('ema.safetensors', 1);
  const optimizer = await load('optimizer.safetensors', 2);
  const state: TrainState = {
    step: manifest.step,
    params: flatten(model, '', 'model.safetensors'),
    ema: flatten(ema, '', 'ema.safetensors'),
    adamM: flatten(optimizer, 'adam_m.', 'optimizer.safetensors'),
    adamV: flatten(optimizer, 'adam_v.', 'optimizer.safetensors'),
  };
  return { state, config, manifest };
}

/** Writes a checkpoint into a local directory: objects first, the manifest last (atomically). */
export async function saveCheckpointDir(
  dir: string,
  state: TrainState,
  config: RunConfig,
): Promise<CheckpointManifest> {
  const encoded = encodeCheckpoint(state, config);
  await mkdir(dir, { recursive: true });
  for (const [name, bytes] of encoded.objects) await writeFile(join(dir, name), bytes);
  const tmp = join(dir, `${MANIFEST_NAME}.tmp`);
  await writeFile(tmp, encoded.manifestBytes);
  await rename(tmp, join(dir, MANIFEST_NAME));
  return encoded.manifest;
}

export async function loadCheckpointDir(dir: string, expected?: RunConfig): Promise<LoadedCheckpoint> {
  let manifestBytes: Uint8Array;
  try {
    manifestBytes = await readFile(join(dir, MANIFEST_NAME));
  } catch {
    throw new CheckpointError(
      `${dir}: no ${MANIFEST_NAME} (not a checkpoint, or one that was never completed)`,
    );
  }
  return decodeCheckpoint(manifestBytes, (name) => readFile(join(dir, name)), dir, { expected });
}
