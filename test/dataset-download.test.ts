/**
 * Dataset downloads against a real HTTP server on 127.0.0.1 that this test starts (no network needed):
 * a generated CIFAR-10-format tarball and MNIST IDX .gz files, served whole, corrupted, cut short, not at
 * all (404), stalled, or from a closed port. In-process for the downloader's file states, and as child
 * processes for what a user sees from start-run and train.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { appendFile, mkdir, mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar';

import { ensureDownloaded, downloadableDatasetFor, MNIST_MD5S } from '../cli/dataset-download';
import { findDefaultDataset } from '../cli/default-dataset';
import { downloadFile } from '../cli/download-file';
import { loadImageDataset } from '../core/data';
import { getPreset } from '../core/presets';
import { findFreePort } from '../infra/local';

jest.setTimeout(60_000);

const REPO = path.resolve(__dirname, '..');
const TSX = path.join(REPO, 'node_modules', '.bin', 'tsx');
const md5 = (bytes: Buffer) => createHash('md5').update(bytes).digest('hex');

// ---- Fixtures: pseudo-random bytes (so the gzip stays large enough to cut in the middle) ----

function noise(length: number, seed: number): Buffer {
  const bytes = Buffer.alloc(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

const CIFAR_TRAIN = 40;
const CIFAR_TEST = 10;

/** CIFAR-10 binary records (label byte, then 1024 R, 1024 G, 1024 B) with labels i % 10. */
function cifarRecords(count: number, seed: number): Buffer {
  const bytes = noise(count * 3073, seed);
  for (let r = 0; r < count; r++) bytes[r * 3073] = r % 10;
  return bytes;
}

const MNIST_TRAIN = 12;
const MNIST_TEST = 3;

function idxImages(count: number, seed: number): Buffer {
  const header = Buffer.alloc(16);
  header.writeUInt32BE(0x00000803, 0);
  header.writeUInt32BE(count, 4);
  header.writeUInt32BE(28, 8);
  header.writeUInt32BE(28, 12);
  return Buffer.concat([header, noise(count * 784, seed)]);
}

function idxLabels(count: number): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt32BE(0x00000801, 0);
  header.writeUInt32BE(count, 4);
  return Buffer.concat([header, Buffer.from(Array.from({ length: count }, (_, i) => (i * 3) % 10))]);
}

const scratch = path.join(os.tmpdir(), `ddpm-download-${process.pid}`);
let cifarTrain: Buffer;
/** Served bytes by file name. */
const files = new Map<string, Buffer>();

async function makeFixtures(): Promise<void> {
  const src = path.join(scratch, 'src', 'cifar-10-batches-bin');
  await mkdir(src, { recursive: true });
  cifarTrain = cifarRecords(CIFAR_TRAIN, 7);
  await writeFile(path.join(src, 'data_batch_1.bin'), cifarTrain);
  await writeFile(path.join(src, 'test_batch.bin'), cifarRecords(CIFAR_TEST, 11));
  const archive = path.join(scratch, 'src', 'cifar-10-binary.tar.gz');
  await tar.create({ gzip: true, file: archive, cwd: path.dirname(src) }, ['cifar-10-batches-bin']);
  files.set('cifar-10-binary.tar.gz', await readFile(archive));
  files.set('train-images-idx3-ubyte.gz', gzipSync(idxImages(MNIST_TRAIN, 3)));
  files.set('train-labels-idx1-ubyte.gz', gzipSync(idxLabels(MNIST_TRAIN)));
  files.set('t10k-images-idx3-ubyte.gz', gzipSync(idxImages(MNIST_TEST, 5)));
  files.set('t10k-labels-idx1-ubyte.gz', gzipSync(idxLabels(MNIST_TEST)));
}

// ---- The server: /<mode>/<file>, where mode says how to misbehave ----

interface Request {
  path: string;
  range?: string;
}
const requests: Request[] = [];
const STALL_AFTER = 1000;
let server: http.Server;
let base: string;

function serve(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = req.url ?? '/';
  requests.push({ path: url, range: req.headers.range });
  const [, mode, ...rest] = url.split('/');
  const body = files.get(rest.join('/'));
  if (!body || !['good', 'bad', 'truncated', 'stall'].includes(mode)) {
    res.writeHead(404).end('not here');
    return;
  }
  if (mode === 'bad') {
    const corrupt = Buffer.from(body);
    corrupt[corrupt.length >> 1] ^= 0xff;
    res.writeHead(200, { 'content-length': corrupt.length }).end(corrupt);
    return;
  }
  if (mode === 'truncated') {
    // Promises the whole file, sends half, then drops the connection.
    res.writeHead(200, { 'content-length': body.length });
    res.write(body.subarray(0, body.length >> 1), () => res.socket?.destroy());
    return;
  }
  if (mode === 'stall') {
    res.writeHead(200, { 'content-length': body.length });
    res.write(body.subarray(0, STALL_AFTER));
    return;
  }
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  if (!range) {
    res.writeHead(200, { 'content-length': body.length, 'accept-ranges': 'bytes' }).end(body);
    return;
  }
  const start = Number(range[1]);
  if (start >= body.length) {
    res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
    return;
  }
  res
    .writeHead(206, {
      'content-length': body.length - start,
      'content-range': `bytes ${start}-${body.length - 1}/${body.length}`,
    })
    .end(body.subarray(start));
}

beforeAll(async () => {
  await rm(scratch, { recursive: true, force: true });
  await makeFixtures();
  server = http.createServer(serve);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await rm(scratch, { recursive: true, force: true });
});

let caseCount = 0;
/** A fresh directory per test. */
async function freshDir(): Promise<string> {
  const dir = path.join(scratch, `case-${++caseCount}`);
  await mkdir(dir, { recursive: true });
  return dir;
}

const CIFAR = 'cifar-10-binary.tar.gz';
const cifarMd5 = () => md5(files.get(CIFAR)!);

function download(url: string, dest: string, expected = cifarMd5(), stallMs?: number) {
  const lines: string[] = [];
  const done = downloadFile({ url, md5: expected, dest, stallMs, log: (l) => lines.push(l) });
  return { lines, done };
}

/** What a download left in its directory, without stamps. */
const leftovers = (dir: string) => readdirSync(dir).filter((n) => !n.startsWith('.'));

describe('downloadFile', () => {
  test('a good download is verified, renamed into place, loads, and is reused without a request', async () => {
    const dir = await freshDir();
    const dest = path.join(dir, CIFAR);
    const { lines, done } = download(`${base}/good/${CIFAR}`, dest);
    await expect(done).resolves.toBe(dest);
    expect(md5(await readFile(dest))).toBe(cifarMd5());
    expect(leftovers(dir)).toEqual([CIFAR]); // no .part, no .lock
    expect(lines.join('\n')).toMatch(
      /^downloading http:\/\/127\.0\.0\.1:\d+\/good\/cifar-10-binary\.tar\.gz/,
    );
    expect(lines.join('\n')).toContain(`verified ${dest} (md5 ${cifarMd5()})`);

    const data = await loadImageDataset(dest);
    expect([data.format, data.count, data.height, data.width, data.channels]).toEqual([
      'cifar10',
      CIFAR_TRAIN,
      32,
      32,
      3,
    ]);
    expect(Array.from(data.labels!.subarray(0, 12))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    // First pixel of record 0: its R, G and B planes' first bytes; last pixel of the last record likewise.
    expect(Array.from(data.pixels.subarray(0, 3))).toEqual([
      cifarTrain[1],
      cifarTrain[1025],
      cifarTrain[2049],
    ]);
    const last = (CIFAR_TRAIN - 1) * 3073;
    expect(Array.from(data.pixels.subarray(data.pixels.length - 3))).toEqual([
      cifarTrain[last + 1024],
      cifarTrain[last + 2048],
      cifarTrain[last + 3072],
    ]);

    const before = requests.length;
    await expect(download(`${base}/good/${CIFAR}`, dest).done).resolves.toBe(dest);
    // Touched but unchanged: the stamp no longer matches, so it is re-hashed, and still needs no request.
    const later = new Date(Date.now() + 5000);
    await utimes(dest, later, later);
    await expect(download(`${base}/good/${CIFAR}`, dest).done).resolves.toBe(dest);
    expect(requests.length).toBe(before);

    // Changed after it was verified: refused, and left for the user to look at.
    await appendFile(dest, 'x');
    await expect(download(`${base}/good/${CIFAR}`, dest).done).rejects.toThrow(
      new RegExp(`^${dest}.* has md5 [0-9a-f]{32}, not ${cifarMd5()} .*: delete it to download again`),
    );
    expect(existsSync(dest)).toBe(true);
    expect(requests.length).toBe(before);
  });

  test('a bad checksum names the URL, expected and actual md5, and removes the download', async () => {
    const dir = await freshDir();
    const corrupt = Buffer.from(files.get(CIFAR)!);
    corrupt[corrupt.length >> 1] ^= 0xff;
    const url = `${base}/bad/${CIFAR}`;
    await expect(download(url, path.join(dir, CIFAR)).done).rejects.toThrow(
      `checksum mismatch for ${url}: expected md5 ${cifarMd5()}, got ${md5(corrupt)} (the download was removed)`,
    );
    expect(leftovers(dir)).toEqual([]);
  });

  test('a truncated body keeps the partial file, and the next attempt resumes it with a Range request', async () => {
    const dir = await freshDir();
    const dest = path.join(dir, CIFAR);
    const size = files.get(CIFAR)!.length;
    const half = size >> 1;
    const cut = download(`${base}/truncated/${CIFAR}`, dest);
    await expect(cut.done).rejects.toThrow(
      new RegExp(
        `^download of ${base}/truncated/${CIFAR} stopped after ${half} of ${size} bytes .*run again to resume$`,
      ),
    );
    expect(leftovers(dir)).toEqual([`${CIFAR}.part`]);
    expect((await stat(`${dest}.part`)).size).toBe(half);

    const before = requests.length;
    const resumed = download(`${base}/good/${CIFAR}`, dest);
    await expect(resumed.done).resolves.toBe(dest);
    expect(requests.slice(before)).toEqual([{ path: `/good/${CIFAR}`, range: `bytes=${half}-` }]);
    expect(resumed.lines[0]).toMatch(/^resuming /);
    expect(md5(await readFile(dest))).toBe(cifarMd5());
    expect(leftovers(dir)).toEqual([CIFAR]);
  });

  test('a partial file that is not a prefix of the download is fetched again from the start', async () => {
    const dir = await freshDir();
    const dest = path.join(dir, CIFAR);
    await writeFile(`${dest}.part`, Buffer.alloc(1000, 0xaa));
    const before = requests.length;
    const { lines, done } = download(`${base}/good/${CIFAR}`, dest);
    await expect(done).resolves.toBe(dest);
    expect(requests.slice(before)).toEqual([
      { path: `/good/${CIFAR}`, range: 'bytes=1000-' },
      { path: `/good/${CIFAR}`, range: undefined },
    ]);
    expect(lines.join('\n')).toContain('downloading it again from the start');
    expect(md5(await readFile(dest))).toBe(cifarMd5());
  });

  test('404, a closed port and a stalled transfer each fail in one line naming the URL', async () => {
    const dir = await freshDir();
    const missing = `${base}/good/nothing.tar.gz`;
    await expect(download(missing, path.join(dir, 'a')).done).rejects.toThrow(
      `download of ${missing} failed: HTTP 404 Not Found`,
    );
    const closed = `http://127.0.0.1:${await findFreePort()}/${CIFAR}`;
    const refused = download(closed, path.join(dir, 'b')).done;
    await expect(refused).rejects.toThrow(new RegExp(`^cannot reach ${closed} \\(.*ECONNREFUSED.*\\)$`));
    expect(leftovers(dir)).toEqual([]);

    const stalled = `${base}/stall/${CIFAR}`;
    const size = files.get(CIFAR)!.length;
    await expect(download(stalled, path.join(dir, 'c'), cifarMd5(), 3000).done).rejects.toThrow(
      `download of ${stalled} stalled after ${STALL_AFTER} of ${size} bytes: run again to resume`,
    );
    expect(leftovers(dir)).toEqual(['c.part']);
  });

  test('a download locked by a live process is refused; a lock whose process is gone is taken over', async () => {
    const dir = await freshDir();
    const dest = path.join(dir, CIFAR);
    const holder: ChildProcess = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      await writeFile(`${dest}.lock`, String(holder.pid));
      await expect(download(`${base}/good/${CIFAR}`, dest).done).rejects.toThrow(
        `another process (pid ${holder.pid}) is downloading ${base}/good/${CIFAR} into ${dest}`,
      );
    } finally {
      holder.kill('SIGKILL');
      await new Promise((resolve) => holder.once('exit', resolve));
    }
    await expect(download(`${base}/good/${CIFAR}`, dest).done).resolves.toBe(dest);
    expect(leftovers(dir)).toEqual([CIFAR]);
  });
});

/** Environment that points the downloads at the test server with the generated files' md5s. */
function mirrorEnv(cache: string, mode = 'good'): NodeJS.ProcessEnv {
  return {
    DDPM_DATA_DIR: cache,
    DDPM_CIFAR10_URL: `${base}/${mode}/${CIFAR}`,
    DDPM_CIFAR10_MD5: cifarMd5(),
    DDPM_MNIST_BASE_URL: `${base}/${mode}`,
    DDPM_MNIST_MD5S: Object.keys(MNIST_MD5S)
      .map((name) => `${name}=${md5(files.get(name)!)}`)
      .join(','),
  };
}

describe('presets without a local copy', () => {
  test('the real URLs and checksums are the defaults', () => {
    const cifar = downloadableDatasetFor('cifar10', {})!;
    expect(cifar.files).toEqual([
      {
        url: 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz',
        md5: 'c32a1d4ab5d03f1284b67883e8d87530',
        name: CIFAR,
      },
    ]);
    const mnist = downloadableDatasetFor('mnist', {})!;
    expect(mnist.files.map((f) => [f.url, f.md5])).toEqual([
      [
        'https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz',
        'f68b3c2dcbeaaa9fbdd348bbdeb94873',
      ],
      [
        'https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz',
        'd53e105ee54ea40749a09fcbcd1e9432',
      ],
      [
        'https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz',
        '9fb629c4189551a2d022fa330f9573f3',
      ],
      [
        'https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz',
        'ec29112dd5afa0611ce80d1b7f02629c',
      ],
    ]);
    expect(downloadableDatasetFor('tiny', {})).toBeUndefined();
    expect(() => downloadableDatasetFor('cifar10', { DDPM_CIFAR10_MD5: 'abc' })).toThrow(
      "DDPM_CIFAR10_MD5: 'abc' is not an md5",
    );
  });

  test('MNIST: all four IDX files land in <cache>/mnist and load with their labels', async () => {
    const cache = await freshDir();
    const dataset = downloadableDatasetFor('mnist', mirrorEnv(cache))!;
    const dir = await ensureDownloaded(dataset, cache, () => undefined);
    expect(dir).toBe(path.join(cache, 'mnist'));
    expect(leftovers(dir).sort()).toEqual(Object.keys(MNIST_MD5S).sort());
    const train = await loadImageDataset(dir);
    expect([train.format, train.count, train.height, train.width, train.channels]).toEqual([
      'mnist',
      MNIST_TRAIN,
      28,
      28,
      1,
    ]);
    expect(Array.from(train.labels!.subarray(0, 4))).toEqual([0, 3, 6, 9]);
    expect((await loadImageDataset(dir, { split: 'test' })).count).toBe(MNIST_TEST);
  });

  test('a local copy wins over the download; an interrupted download in the cache is completed', async () => {
    const cwd = await freshDir();
    const cache = await freshDir();
    await mkdir(path.join(cwd, 'data', 'cifar-10-batches-bin'), { recursive: true });
    const before = requests.length;
    await expect(findDefaultDataset(getPreset('cifar10'), mirrorEnv(cache), cwd)).resolves.toBe(
      path.join(cwd, 'data', 'cifar-10-batches-bin'),
    );
    expect(requests.length).toBe(before);

    // Two of the four MNIST files made it before an interruption: the lookup must not train on a
    // half-filled directory, but fetch the other two (and re-check the first two by hashing them).
    await mkdir(path.join(cache, 'mnist'));
    for (const name of ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'])
      await writeFile(path.join(cache, 'mnist', name), files.get(name)!);
    await writeFile(path.join(cache, 'mnist', 't10k-images-idx3-ubyte.gz.part'), Buffer.alloc(0));
    await expect(findDefaultDataset(getPreset('mnist'), mirrorEnv(cache), cwd)).resolves.toBe(
      path.join(cache, 'mnist'),
    );
    expect(requests.slice(before).map((r) => r.path)).toEqual([
      '/good/t10k-images-idx3-ubyte.gz',
      '/good/t10k-labels-idx1-ubyte.gz',
    ]);
    expect((await loadImageDataset(path.join(cache, 'mnist'))).count).toBe(MNIST_TRAIN);
  });
});

describe('the CLI (child processes)', () => {
  interface Finished {
    code: number | null;
    stdout: string;
    stderr: string;
  }

  /** Process groups of commands still running (tsx and its node child), killed if a test times out. */
  const running = new Set<number>();
  afterAll(() => {
    for (const pgid of running) process.kill(-pgid, 'SIGKILL');
  });

  /** A command run as a user runs it, from a directory with no ./data or ../shared/data beside it. */
  async function cli(command: string, args: string[], extraEnv: NodeJS.ProcessEnv): Promise<Finished> {
    const cwd = await mkdtemp(path.join(os.tmpdir(), 'ddpm-download-cwd-'));
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ...extraEnv,
      DDPM_LOCAL_STACK_DIR: path.join(cwd, 'stack'),
    };
    for (const name of ['TEMPORAL_ADDRESS', 'TEMPORAL_NAMESPACE', 'TEMPORAL_PROFILE']) delete env[name];
    try {
      return await new Promise<Finished>((resolve) => {
        const child = spawn(TSX, [path.join(REPO, 'cli', `${command}.ts`), ...args], {
          cwd,
          env,
          detached: true,
        });
        running.add(child.pid!);
        const out: Finished = { code: null, stdout: '', stderr: '' };
        child.stdout.on('data', (b: Buffer) => (out.stdout += b.toString()));
        child.stderr.on('data', (b: Buffer) => (out.stderr += b.toString()));
        child.once('close', (code) => {
          running.delete(child.pid!);
          resolve({ ...out, code });
        });
      });
    } finally {
      await rm(cwd, { recursive: true, force: true });
    }
  }

  // start-run resolves the dataset before it validates the rest of the input; an out-of-range
  // --sample-steps then stops it before any service starts, so the download is all it does.
  const stopBeforeServices = ['--sample-steps', '5000'];

  test('start-run --preset cifar10 downloads with progress, then reuses the verified copy', async () => {
    const cache = await freshDir();
    const first = await cli('start-run', ['--preset', 'cifar10', ...stopBeforeServices], mirrorEnv(cache));
    expect(first.code).toBe(1);
    expect(first.stderr).toMatch(/^downloading http:\/\/127\.0\.0\.1:\d+\/good\/cifar-10-binary\.tar\.gz/m);
    expect(first.stderr).toMatch(
      /^cifar-10-binary\.tar\.gz kB [\d.]+\/[\d.]+ \| done 100\.0% \| rate [\d.]+ MB\/s/m,
    );
    expect(first.stderr).toContain(`verified ${path.join(cache, CIFAR)}`);
    expect(first.stderr.trim().split('\n').pop()).toMatch(/^error: invalid run input: schedule\.sampleSteps/);
    expect(md5(await readFile(path.join(cache, CIFAR)))).toBe(cifarMd5());

    const before = requests.length;
    const again = await cli('start-run', ['--preset', 'cifar10', ...stopBeforeServices], mirrorEnv(cache));
    expect(requests.length).toBe(before);
    expect(again.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^error: invalid run input: schedule\.sampleSteps/),
    ]);
  });

  test('with the mirror unreachable, start-run fails in one line naming the URL and --dataset', async () => {
    const cache = await freshDir();
    const closed = `http://127.0.0.1:${await findFreePort()}/${CIFAR}`;
    const r = await cli('start-run', ['--preset', 'cifar10'], {
      ...mirrorEnv(cache),
      DDPM_CIFAR10_URL: closed,
    });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(
        new RegExp(
          `^error: cannot reach ${closed} \\(.*ECONNREFUSED.*\\); pass --dataset PATH\\|s3://bucket/key to a ` +
            'copy of CIFAR-10 instead, or set DDPM_CIFAR10_URL to a mirror$',
        ),
      ),
    ]);
    expect(readdirSync(cache)).toEqual([]);
  });

  test('train --preset mnist with no --dataset downloads the IDX files and trains on them', async () => {
    const cache = await freshDir();
    const store = path.join(await freshDir(), 'runs');
    const r = await cli(
      'train',
      [
        '--preset',
        'mnist',
        '--steps',
        '1',
        '--batch',
        '2',
        '--micro-batch',
        '2',
        '--samples',
        '1',
        '--store',
        store,
      ],
      mirrorEnv(cache),
    );
    if (r.code !== 0) throw new Error(`exit status ${r.code}; stderr:\n${r.stderr.slice(-3000)}`);
    const mnistDir = path.join(cache, 'mnist');
    for (const name of Object.keys(MNIST_MD5S))
      expect(r.stderr).toContain(`verified ${path.join(mnistDir, name)}`);
    expect(r.stderr).toContain(`dataset: ${MNIST_TRAIN} images 28x28x1 from ${mnistDir}`);
    expect(r.stderr).toMatch(/^done: step 1, loss /m);
    // Loads TensorFlow, builds the mnist U-Net, trains a step and samples a grid: minutes when the machine is busy.
  }, 300_000);
});
