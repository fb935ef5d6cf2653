import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { VersityGw } from '../infra/local';
import {
  InvalidKeyError,
  LocalDirStore,
  ObjectNotFoundError,
  openStore,
  parseS3Uri,
  S3Store,
  type ObjectStore,
} from '../store';

/**
 * One contract, two implementations: every behaviour callers rely on is checked against a local
 * directory and against S3 (a real versitygw), so code written against one works on the other.
 */

const BUCKET = 'ddpm-test';
const scratch = mkdtempSync(path.join(os.tmpdir(), 'ddpm-store-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let storeCount = 0;
const uniqueName = () => `store-${++storeCount}-${randomBytes(3).toString('hex')}`;

async function putMany(store: ObjectStore, keys: string[], concurrency = 32): Promise<void> {
  for (let i = 0; i < keys.length; i += concurrency) {
    await Promise.all(keys.slice(i, i + concurrency).map((key) => store.put(key, key)));
  }
}

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

function describeObjectStoreContract(name: string, newStore: () => ObjectStore): void {
  describe(`${name}: ObjectStore contract`, () => {
    let store: ObjectStore;
    beforeEach(() => {
      store = newStore();
    });

    test('string put round-trips through get, getText and tryGet', async () => {
      await store.put('run-1/metrics.jsonl', '{"step":1,"loss":0.5}\n{"step":2,"loss":0.25}\n');
      expect(await store.getText('run-1/metrics.jsonl')).toBe(
        '{"step":1,"loss":0.5}\n{"step":2,"loss":0.25}\n',
      );
      expect(new TextDecoder().decode(await store.get('run-1/metrics.jsonl'))).toContain('"step":2');
      expect(await store.tryGet('run-1/metrics.jsonl')).toBeInstanceOf(Uint8Array);
    });

    test('binary put round-trips every byte value, and UTF-8 text survives', async () => {
      const bytes = new Uint8Array(256 * 4 + 7);
      for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 151 + 7) % 256;
      await store.put('blob.bin', bytes);
      expect(Array.from(await store.get('blob.bin'))).toEqual(Array.from(bytes));
      await store.put('empty.bin', new Uint8Array(0));
      expect((await store.get('empty.bin')).length).toBe(0);
      await store.put('unicode.txt', 'ε-prediction ✓ 🙂');
      expect(await store.getText('unicode.txt')).toBe('ε-prediction ✓ 🙂');
    });

    test('put replaces an existing object whole', async () => {
      await store.put('latest', 'checkpoint 100 with a long body');
      await store.put('latest', '200');
      expect(await store.getText('latest')).toBe('200');
    });

    test('a missing key: get throws a one-line ObjectNotFoundError naming the URI; tryGet is null', async () => {
      const error = await store.get('run-1/nope.json').catch((err: unknown) => err);
      expect(error).toBeInstanceOf(ObjectNotFoundError);
      const message = (error as Error).message;
      expect(message).toContain(`${store.uri}/run-1/nope.json`);
      expect(message).not.toContain('\n');
      await expect(store.getText('run-1/nope.json')).rejects.toBeInstanceOf(ObjectNotFoundError);
      expect(await store.tryGet('run-1/nope.json')).toBeNull();
      expect(await store.exists('run-1/nope.json')).toBe(false);
    });

    test('a prefix is not an object', async () => {
      await store.put('run-1/checkpoints/100/model.safetensors', 'w');
      expect(await store.exists('run-1/checkpoints')).toBe(false);
      expect(await store.tryGet('run-1/checkpoints/100')).toBeNull();
    });

    test('exists follows put and delete; deleting a missing key is a no-op', async () => {
      expect(await store.exists('a/b/c.txt')).toBe(false);
      await store.put('a/b/c.txt', 'x');
      expect(await store.exists('a/b/c.txt')).toBe(true);
      await store.delete('a/b/c.txt');
      expect(await store.exists('a/b/c.txt')).toBe(false);
      await store.delete('a/b/c.txt');
      await store.delete('never/written');
      expect(await store.list('')).toEqual([]);
    });

    test('list is a sorted plain-string prefix match over all keys', async () => {
      const keys = ['b/2', 'a/1/x', 'a/10/x', 'ab', 'a/2', 'a.txt', 'c', 'a/1/nested/deep.bin'];
      await putMany(store, keys);
      expect(await store.list('')).toEqual([...keys].sort());
      expect(await store.list('a/')).toEqual(['a/1/nested/deep.bin', 'a/1/x', 'a/10/x', 'a/2']);
      expect(await store.list('a')).toEqual(['a.txt', 'a/1/nested/deep.bin', 'a/1/x', 'a/10/x', 'a/2', 'ab']);
      expect(await store.list('a/1')).toEqual(['a/1/nested/deep.bin', 'a/1/x', 'a/10/x']);
      expect(await store.list('a/1/')).toEqual(['a/1/nested/deep.bin', 'a/1/x']);
      expect(await store.list('zzz/')).toEqual([]);
    });

    test('list returns more than one page (1100 keys) and deletePrefix removes them all', async () => {
      const keys = Array.from({ length: 1100 }, (_, i) => `run-1/samples/${String(i).padStart(5, '0')}.txt`);
      await putMany(store, keys);
      await store.put('run-1/latest', '1');
      const listed = await store.list('run-1/samples/');
      expect(listed).toHaveLength(1100);
      expect(listed).toEqual(keys);
      await store.deletePrefix('run-1/samples/');
      expect(await store.list('run-1/samples/')).toEqual([]);
      expect(await store.list('')).toEqual(['run-1/latest']);
    }, 60_000);

    test('deletePrefix removes only what matches and refuses an empty prefix', async () => {
      await putMany(store, ['run-1/a', 'run-1/b/c', 'run-10/a', 'run-2/a']);
      await store.deletePrefix('run-1/');
      expect(await store.list('')).toEqual(['run-10/a', 'run-2/a']);
      await store.deletePrefix('nothing-here/');
      await expect(store.deletePrefix('')).rejects.toBeInstanceOf(InvalidKeyError);
      expect(await store.list('')).toEqual(['run-10/a', 'run-2/a']);
    });

    test('invalid keys are refused before any I/O', async () => {
      for (const bad of ['', '/abs', 'a/../b', '..', '../escape', 'a//b', 'a/', './a', 'a\\b']) {
        await expect(store.put(bad, 'x')).rejects.toBeInstanceOf(InvalidKeyError);
        await expect(store.get(bad)).rejects.toBeInstanceOf(InvalidKeyError);
      }
      await expect(store.list('../')).rejects.toBeInstanceOf(InvalidKeyError);
      await expect(store.deletePrefix('/')).rejects.toBeInstanceOf(InvalidKeyError);
    });

    test('putFile uploads a 12 MB file intact', async () => {
      const file = path.join(scratch, `${uniqueName()}.bin`);
      const data = randomBytes(12 * 1024 * 1024 + 123);
      writeFileSync(file, data);
      await store.putFile('run-1/checkpoints/100/model.safetensors', file);
      const back = await store.get('run-1/checkpoints/100/model.safetensors');
      expect(back.length).toBe(data.length);
      expect(sha256(back)).toBe(sha256(data));
      expect(await store.list('run-1/')).toEqual(['run-1/checkpoints/100/model.safetensors']);
    }, 60_000);
  });
}

describe('LocalDirStore', () => {
  describeObjectStoreContract('LocalDirStore', () => openStore(path.join(scratch, uniqueName())));

  test('openStore maps plain paths and file:// URIs to a LocalDirStore with a file:// uri', () => {
    const dir = path.join(scratch, 'plain');
    const plain = openStore(dir);
    expect(plain).toBeInstanceOf(LocalDirStore);
    expect(plain.uri).toBe(`file://${dir}`);
    expect(openStore(plain.uri).uri).toBe(plain.uri);
  });

  test('unsupported URIs fail with what to use instead', () => {
    expect(() => openStore('gs://bucket/x')).toThrow(/unsupported store URI gs:\/\/bucket\/x: use s3:\/\//);
    expect(() => openStore('s3:///prefix')).toThrow(/expected s3:\/\/bucket/);
  });

  test('parseS3Uri is the one s3:// parser: bucket, key without trailing slashes, one-line errors', () => {
    expect(parseS3Uri('s3://b')).toEqual({ bucket: 'b', key: '' });
    expect(parseS3Uri('s3://b/')).toEqual({ bucket: 'b', key: '' });
    expect(parseS3Uri('s3://b/data/digits//')).toEqual({ bucket: 'b', key: 'data/digits' });
    expect(parseS3Uri('s3://b/data/train.tar')).toEqual({ bucket: 'b', key: 'data/train.tar' });
    expect(() => parseS3Uri('s3:///x')).toThrow(/expected s3:\/\/bucket/);
    expect(() => parseS3Uri('/tmp/x')).toThrow(/not an S3 URI/);
  });

  test('a reader sees the old or the new object, never part of one', async () => {
    const store = openStore(path.join(scratch, uniqueName()));
    const versions = [Buffer.alloc(4 * 1024 * 1024, 1), Buffer.alloc(4 * 1024 * 1024, 2)];
    await store.put('model', versions[0]);
    let writing = true;
    const writer = (async () => {
      for (let i = 1; i <= 10; i++) await store.put('model', versions[i % 2]);
      writing = false;
    })();
    let reads = 0;
    while (writing) {
      const data = await store.get('model');
      expect(data.length).toBe(versions[0].length);
      expect(data[0] === data[data.length - 1] && (data[0] === 1 || data[0] === 2)).toBe(true);
      reads++;
    }
    await writer;
    expect(reads).toBeGreaterThan(0);
    expect(await store.list('')).toEqual(['model']); // no temp files leak into listings
  });

  test('the directory for writes in progress is reserved', async () => {
    const store = openStore(path.join(scratch, uniqueName()));
    await expect(store.put('.partial/x', 'y')).rejects.toThrow(/reserved/);
  });
});

describe('S3Store on versitygw', () => {
  let gateway: VersityGw;
  let savedEnv: NodeJS.ProcessEnv;

  beforeAll(async () => {
    gateway = await VersityGw.start({ buckets: [BUCKET] });
    // Point the SDK's standard environment chain at the gateway: the stores below are opened exactly
    // as production opens them, from a URI and the environment.
    savedEnv = { ...process.env };
    delete process.env.AWS_ENDPOINT_URL;
    delete process.env.AWS_PROFILE;
    Object.assign(process.env, gateway.s3Env());
  });

  afterAll(async () => {
    process.env = savedEnv;
    await gateway?.dispose();
  });

  describeObjectStoreContract('S3Store', () => openStore(`s3://${BUCKET}/${uniqueName()}`));

  test('openStore maps s3:// URIs to an S3Store under the prefix', async () => {
    const store = openStore(`s3://${BUCKET}/runs/exp-1/`);
    expect(store).toBeInstanceOf(S3Store);
    expect(store.uri).toBe(`s3://${BUCKET}/runs/exp-1`);
    await store.put('latest', '7');
    const root = openStore(`s3://${BUCKET}`);
    expect(root.uri).toBe(`s3://${BUCKET}`);
    expect(await root.getText('runs/exp-1/latest')).toBe('7');
  });

  test('explicit settings work without any AWS environment', async () => {
    const store = openStore(`s3://${BUCKET}/explicit`, {
      s3: { endpoint: gateway.endpoint, region: gateway.region, credentials: gateway.credentials },
    });
    const env = { ...process.env };
    for (const name of Object.keys(gateway.s3Env())) delete process.env[name];
    try {
      await store.put('k', 'v');
      expect(await store.getText('k')).toBe('v');
    } finally {
      Object.assign(process.env, env);
    }
  });

  test('putFile of a large file goes multipart', async () => {
    const store = openStore(`s3://${BUCKET}/multipart`, { s3: { partSizeBytes: 5 * 1024 * 1024 } });
    const file = path.join(scratch, 'multipart.bin');
    writeFileSync(file, randomBytes(12 * 1024 * 1024));
    await store.putFile('big.bin', file);
    const client = new S3Client({ forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED' });
    try {
      const head = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'multipart/big.bin' }));
      // A multipart object's ETag is "<md5 of part md5s>-<part count>".
      expect(head.ETag).toMatch(/-3"?$/);
      expect(head.ContentLength).toBe(12 * 1024 * 1024);
    } finally {
      client.destroy();
    }
  }, 60_000);

  test('client errors fail at once instead of being retried', async () => {
    const store = openStore('s3://no-such-bucket-here/x');
    const started = Date.now();
    await expect(store.put('k', 'v')).rejects.toThrow(/bucket/i);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  test('a put started while S3 is down succeeds once it is back', async () => {
    const store = openStore(`s3://${BUCKET}/outage`);
    await store.put('before', 'ok'); // warm connection, so the outage also breaks a kept-alive socket
    await gateway.stop();
    const started = Date.now();
    const put = store.put('during', 'survived');
    const OUTAGE_MS = 5_000;
    await new Promise((resolve) => setTimeout(resolve, OUTAGE_MS));
    await gateway.start();
    await put;
    expect(Date.now() - started).toBeGreaterThanOrEqual(OUTAGE_MS);
    expect(await store.getText('during')).toBe('survived');
    expect(await store.getText('before')).toBe('ok'); // same data dir after the restart
  }, 60_000);
});
