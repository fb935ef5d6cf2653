import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CheckpointError,
  encodeCheckpoint,
  loadCheckpointDir,
  saveCheckpointDir,
} from '../core/checkpoint/checkpoint';
import { CheckpointRepository } from '../core/checkpoint/repository';
import { CheckpointMismatchError, NoValidCheckpointError } from '../core/errors';
import { SafetensorsError, decodeSafetensors, encodeSafetensors } from '../core/checkpoint/safetensors';
import { ParamLayout } from '../core/model/params';
import { unetParamSpecs } from '../core/model/unet';
import type { RunConfig } from '../core/presets';
import { PRESETS } from '../core/presets';
import { TrainState, initialTrainState } from '../core/train/optimizer';
import { LocalDirStore } from '../store';

const config: RunConfig = {
  ...PRESETS.tiny,
  model: {
    imageSize: 8,
    inChannels: 1,
    ch: 8,
    chMult: [1, 2],
    numResBlocks: 1,
    attnResolutions: [],
    dropout: 0,
    groups: 4,
  },
};

function stateAt(step: number): TrainState {
  const layout = new ParamLayout(unetParamSpecs(config.model));
  const s = initialTrainState(layout.initialize(step));
  s.step = step;
  s.adamM.fill(step / 10);
  s.adamV.fill(step / 100);
  return s;
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ddpm-ckpt-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('safetensors', () => {
  test('writes the documented layout: u64 LE header length, JSON header, aligned LE f32 data', () => {
    const bytes = encodeSafetensors([{ name: 'w', shape: [2], data: Float32Array.from([1, -2]) }], {
      a: 'b',
    });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8'));
    expect(header).toEqual({
      __metadata__: { a: 'b' },
      w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
    });
    expect((8 + n) % 8).toBe(0);
    expect(bytes.length).toBe(8 + n + 8);
    const data = new DataView(bytes.buffer, 8 + n);
    expect(data.getFloat32(0, true)).toBe(1);
    expect(data.getFloat32(4, true)).toBe(-2);
  });

  test('round-trips tensors and metadata', () => {
    const t = [
      { name: 'a', shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) },
      { name: 'b', shape: [1], data: Float32Array.from([Math.PI]) },
    ];
    const back = decodeSafetensors(encodeSafetensors(t, { k: 'v' }), 'x');
    expect(back.metadata).toEqual({ k: 'v' });
    expect(back.tensors.get('a')?.data).toEqual(t[0].data);
    expect(back.tensors.get('b')?.shape).toEqual([1]);
  });

  test('rejects truncated and inconsistent files with a message naming the file', () => {
    const good = encodeSafetensors([{ name: 'w', shape: [4], data: new Float32Array(4) }]);
    expect(() => decodeSafetensors(good.subarray(0, good.length - 3), 'f.safetensors')).toThrow(
      /f\.safetensors: tensor w ends at byte 16 beyond the 13 data bytes/,
    );
    expect(() => decodeSafetensors(good.subarray(0, 5), 'f.safetensors')).toThrow(SafetensorsError);
    const extra = new Uint8Array(good.length + 4);
    extra.set(good);
    expect(() => decodeSafetensors(extra, 'g')).toThrow(/trailing bytes/);
  });
});

describe('checkpoints', () => {
  test('save and load round-trip every buffer exactly', async () => {
    const s = stateAt(7);
    await saveCheckpointDir(join(dir, 'c'), s, config);
    const back = await loadCheckpointDir(join(dir, 'c'), config);
    expect(back.state.step).toBe(7);
    for (const k of ['params', 'ema', 'adamM', 'adamV'] as const) expect(back.state[k]).toEqual(s[k]);
    expect(back.manifest.paramCount).toBe(s.params.length);
  });

  test('a flipped byte is caught by the checksum', async () => {
    await saveCheckpointDir(join(dir, 'c'), stateAt(3), config);
    const f = join(dir, 'c', 'ema.safetensors');
    const bytes = readFileSync(f);
    bytes[bytes.length - 5] ^= 0x01;
    writeFileSync(f, bytes);
    await expect(loadCheckpointDir(join(dir, 'c'), config)).rejects.toThrow(
      /ema\.safetensors: checksum mismatch/,
    );
  });

  test('a checkpoint of another model is refused, naming the differing fields', async () => {
    await saveCheckpointDir(join(dir, 'c'), stateAt(3), config);
    const other = { ...config, model: { ...config.model, ch: 16 } };
    await expect(loadCheckpointDir(join(dir, 'c'), other)).rejects.toThrow(
      /does not match this run \(model\.ch: 8 vs 16\)/,
    );
  });

  test('a directory without a manifest is not a checkpoint', async () => {
    await expect(loadCheckpointDir(join(dir, 'nothing'))).rejects.toThrow(CheckpointError);
  });

  test('the manifest lists sha256 and sizes of every object', () => {
    const enc = encodeCheckpoint(stateAt(1), config);
    expect(Object.keys(enc.manifest.files).sort()).toEqual([
      'ema.safetensors',
      'model.safetensors',
      'optimizer.safetensors',
    ]);
    for (const [name, bytes] of enc.objects) {
      expect(enc.manifest.files[name].bytes).toBe(bytes.length);
      expect(enc.manifest.files[name].sha256).toMatch(/^[0-9a-f]{64}$/);
    }
  });
});

describe('checkpoint repository', () => {
  test('resumes from the newest valid checkpoint and says why newer ones were skipped', async () => {
    const store = new LocalDirStore(dir);
    const repo = new CheckpointRepository(store, 'run1');
    await repo.save(stateAt(10), config);
    await repo.save(stateAt(20), config);
    await repo.save(stateAt(30), config);
    // 30: corrupted object; 40: objects written but the manifest never was (crash mid-checkpoint).
    const key = `${repo.keyFor(30)}/model.safetensors`;
    const bytes = await store.get(key);
    bytes[100] ^= 0xff;
    await store.put(key, bytes);
    const enc = encodeCheckpoint(stateAt(40), config);
    for (const [name, b] of enc.objects) await store.put(`${repo.keyFor(40)}/${name}`, b);

    const resume = await repo.newestValid(config);
    expect(resume?.checkpoint.state.step).toBe(20);
    expect(resume?.skipped.map((s) => s.step)).toEqual([30]);
    expect(resume?.skipped[0].reason).toMatch(/checksum mismatch/);
    expect(await repo.listSteps()).toEqual([30, 20, 10]);
  });

  test('retention keeps the newest N and the latest pointer target', async () => {
    const store = new LocalDirStore(dir);
    const repo = new CheckpointRepository(store, 'run2');
    for (const step of [1, 2, 3, 4]) await repo.save(stateAt(step), config, 2);
    expect(await repo.listSteps()).toEqual([4, 3]);
    expect(await store.getText(repo.latestKey())).toBe(repo.keyFor(4));
    expect(await store.list(`${repo.keyFor(1)}/`)).toEqual([]);
  });

  /** Replaces an object and re-signs it in the manifest, so only its shape is wrong, not its checksum. */
  async function replaceSigned(store: LocalDirStore, dir: string, name: string, bytes: Uint8Array) {
    await store.put(`${dir}/${name}`, bytes);
    const manifest = JSON.parse(await store.getText(`${dir}/manifest.json`));
    manifest.files[name] = { sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.length };
    await store.put(`${dir}/manifest.json`, JSON.stringify(manifest));
  }

  /** A safetensors file whose header is `header` (any JSON) followed by `dataBytes` zero bytes. */
  function safetensorsWithHeader(header: unknown, dataBytes = 16): Uint8Array {
    const json = Buffer.from(JSON.stringify(header));
    const out = Buffer.alloc(8 + json.length + dataBytes);
    out.writeBigUInt64LE(BigInt(json.length), 0);
    json.copy(out, 8);
    return out;
  }

  test('well-formed JSON of the wrong shape, with matching checksums, is skipped like any corruption', async () => {
    const store = new LocalDirStore(dir);
    const repo = new CheckpointRepository(store, 'shapes');
    for (const step of [10, 20, 30, 40, 50, 60, 70]) await repo.save(stateAt(step), config);
    // 70: the manifest is JSON null.
    await store.put(`${repo.keyFor(70)}/manifest.json`, 'null');
    // 60: a manifest file entry is null.
    const m60 = JSON.parse(await store.getText(`${repo.keyFor(60)}/manifest.json`));
    m60.files['ema.safetensors'] = null;
    await store.put(`${repo.keyFor(60)}/manifest.json`, JSON.stringify(m60));
    // 50: a tensor entry without data_offsets; 40: a header that is null.
    await replaceSigned(
      store,
      repo.keyFor(50),
      'model.safetensors',
      safetensorsWithHeader({ w: { dtype: 'F32', shape: [4] } }),
    );
    await replaceSigned(store, repo.keyFor(40), 'ema.safetensors', safetensorsWithHeader(null));
    // 30: a manifest that names another step than its folder.
    const m30 = JSON.parse(await store.getText(`${repo.keyFor(30)}/manifest.json`));
    m30.step = 10;
    await store.put(`${repo.keyFor(30)}/manifest.json`, JSON.stringify(m30));
    // 20: an object the manifest lists is gone.
    await store.delete(`${repo.keyFor(20)}/optimizer.safetensors`);

    const resume = await repo.newestValid(config);
    expect(resume?.checkpoint.state.step).toBe(10);
    expect(resume?.key).toBe(repo.keyFor(10));
    const reasons = Object.fromEntries((resume?.skipped ?? []).map((s) => [s.step, s.reason]));
    expect(
      Object.keys(reasons)
        .map(Number)
        .sort((a, b) => b - a),
    ).toEqual([70, 60, 50, 40, 30, 20]);
    expect(reasons[70]).toMatch(/0+70: not a ddpm-tfjs-checkpoint manifest/);
    expect(reasons[60]).toMatch(/0+60: manifest files\.ema\.safetensors: /);
    expect(reasons[50]).toMatch(/model\.safetensors: header field w\.data_offsets: /);
    expect(reasons[40]).toMatch(/ema\.safetensors: header: /);
    expect(reasons[30]).toMatch(/0+30: manifest says step 10, its folder is step 30/);
    expect(reasons[20]).toMatch(/0+20\/optimizer\.safetensors: missing/);
    for (const reason of Object.values(reasons)) expect(reason).not.toMatch(/Cannot read properties/);
  });

  test('when no checkpoint is valid the error says why each one was skipped', async () => {
    const store = new LocalDirStore(dir);
    const repo = new CheckpointRepository(store, 'all-bad');
    await repo.save(stateAt(5), config);
    await repo.save(stateAt(6), config);
    await store.put(`${repo.keyFor(6)}/manifest.json`, '{"format": "ddpm-tfjs-checkpoint", "version": 7}');
    await replaceSigned(store, repo.keyFor(5), 'model.safetensors', safetensorsWithHeader([1, 2]));
    const err = await repo.newestValid(config).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NoValidCheckpointError);
    const message = (err as Error).message;
    expect(message).toMatch(/run all-bad in .* has 2 checkpoint\(s\) and none is valid: /);
    expect(message).toMatch(/step 6: .*checkpoint format version 7, this build reads 1/);
    expect(message).toMatch(/step 5: .*model\.safetensors: header: /);
    expect(message).not.toMatch(/\n/);
  });

  test('a checkpoint of another model stops the resume instead of being skipped', async () => {
    const store = new LocalDirStore(dir);
    const repo = new CheckpointRepository(store, 'other-model');
    await repo.save(stateAt(5), config);
    const other = { ...config, model: { ...config.model, ch: 16 } };
    await expect(repo.newestValid(other)).rejects.toBeInstanceOf(CheckpointMismatchError);
  });

  test('an empty run has nothing to resume', async () => {
    expect(await new CheckpointRepository(new LocalDirStore(dir), 'none').newestValid(config)).toBeNull();
  });
});
