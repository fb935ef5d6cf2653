import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../common/errors';
import { progressLine } from './progress';

/** A download that did not produce a verified file; the message is one line that names the URL. */
export class DownloadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DownloadError';
  }
}

export interface DownloadOptions {
  url: string;
  /** Expected md5 of the whole file, lowercase hex. */
  md5: string;
  /** Final path: written only after the md5 matched, so a file there is always a verified one. */
  dest: string;
  /** Abort when no bytes arrive for this long (default 60 s), so a dead connection does not hang a start. */
  stallMs?: number;
  log?: (line: string) => void;
}

const MB = 1e6;
const round1 = (x: number) => Math.round(x * 10) / 10;

const partPath = (dest: string) => `${dest}.part`;
const lockPath = (dest: string) => `${dest}.lock`;
/** Remembers a verification, so a reused 170 MB file is not re-hashed at every start. */
const stampPath = (dest: string) => path.join(path.dirname(dest), `.${path.basename(dest)}.verified`);

interface Stamp {
  md5: string;
  size: number;
  mtimeMs: number;
}

async function hashFile(file: string, hash: Hash = createHash('md5')): Promise<Hash> {
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash;
}

async function writeStamp(dest: string, md5: string): Promise<void> {
  const info = await stat(dest);
  const stamp: Stamp = { md5, size: info.size, mtimeMs: info.mtimeMs };
  const tmp = `${stampPath(dest)}.tmp`;
  await writeFile(tmp, JSON.stringify(stamp));
  await rename(tmp, stampPath(dest));
}

/**
 * Whether the file at `dest` is the expected one: trusted without reading it when its stamp records this
 * md5 for the file's current size and modification time, otherwise re-hashed (and stamped when it
 * matches). Returns the md5 found when it does not match; the file is left alone, since it may be a copy
 * the user put there.
 */
export async function verifyExisting(
  dest: string,
  md5: string,
): Promise<{ ok: true } | { ok: false; got: string }> {
  const info = await stat(dest);
  try {
    const stamp = JSON.parse(await readFile(stampPath(dest), 'utf8')) as Stamp;
    if (stamp.md5 === md5 && stamp.size === info.size && stamp.mtimeMs === info.mtimeMs) return { ok: true };
  } catch {
    // No stamp, or an unreadable one: hash the file.
  }
  const got = (await hashFile(dest)).digest('hex');
  if (got !== md5) return { ok: false, got };
  await writeStamp(dest, md5);
  return { ok: true };
}

/**
 * True when `dest` holds the file `url` serves (see verifyExisting), false when there is no file. A file
 * there with another md5 is a UsageError: it may be the user's own copy, so it is neither deleted nor used.
 */
export async function isVerifiedCopy(dest: string, md5: string, url: string): Promise<boolean> {
  if (!(await stat(dest).catch(() => undefined))) return false;
  const check = await verifyExisting(dest, md5);
  if (check.ok) return true;
  throw new UsageError(
    `${dest} has md5 ${check.got}, not ${md5} as ${url} should: delete it to download again, or pass --dataset to use it as it is`,
  );
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * One downloader per destination: two starts at once must not append to the same partial file. A lock
 * left by a process that no longer exists is taken over.
 */
async function acquireLock(dest: string, url: string): Promise<() => Promise<void>> {
  const lock = lockPath(dest);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(lock, String(process.pid), { flag: 'wx' });
      return () => rm(lock, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number(await readFile(lock, 'utf8').catch(() => ''));
      if (Number.isInteger(owner) && owner > 0 && isAlive(owner)) {
        throw new DownloadError(
          `another process (pid ${owner}) is downloading ${url} into ${dest}: wait for it, or delete ${lock} if it is gone`,
        );
      }
      await rm(lock, { force: true });
    }
  }
  throw new DownloadError(`cannot lock ${lock} to download ${url}`);
}

/** The low-level reason behind a fetch failure ("getaddrinfo ENOTFOUND host", "ECONNREFUSED ..."). */
function describeCause(err: unknown): string {
  // Duck-typed: errors from node's internals come from another realm under jest, where instanceof fails.
  const cause = ((err as { cause?: unknown }).cause ?? err) as Partial<NodeJS.ErrnoException>;
  const message = typeof cause.message === 'string' ? cause.message : String(cause);
  const code = cause.code;
  const text = !code || message.includes(code) ? message : `${code}: ${message}`;
  return text.replace(/\s*[\r\n]+\s*/g, ' ');
}

type Resolved = Required<DownloadOptions>;

interface Attempt {
  /** Bytes of the partial file the server agreed to continue from (0: started over). */
  resumedFrom: number;
  md5: string;
}

/** Where a 206 answer starts ("bytes 100-999/1000"), or undefined when the header is missing or odd. */
function contentRangeStart(header: string | null): number | undefined {
  const match = header && /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(header.trim());
  return match ? Number(match[1]) : undefined;
}

/**
 * Fetches `url` into the partial file, continuing it with a Range request when `resume` allows and the
 * server agrees, and returns the md5 of the whole partial file. Throws a DownloadError, keeping the
 * partial file for the next attempt, when the transfer stops early.
 */
async function fetchOnce(o: Resolved, resume: boolean): Promise<Attempt | 'start-over'> {
  const part = partPath(o.dest);
  const have = resume
    ? await stat(part).then(
        (s) => s.size,
        () => 0,
      )
    : 0;
  const controller = new AbortController();
  let stalled = false;
  let timer: NodeJS.Timeout | undefined;
  const armStallTimer = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      stalled = true;
      controller.abort();
    }, o.stallMs);
  };
  armStallTimer();
  let received = 0;
  let expected: number | undefined;
  let from = 0;
  const whereStopped = () =>
    `after ${from + received}${expected !== undefined ? ` of ${from + expected}` : ''} bytes`;
  try {
    let response: Response;
    try {
      response = await fetch(o.url, {
        // Byte-exact transfer: a server must not re-encode the archive, or the md5 cannot match.
        headers: { 'accept-encoding': 'identity', ...(have > 0 ? { range: `bytes=${have}-` } : {}) },
        signal: controller.signal,
      });
    } catch (err) {
      if (stalled) throw new DownloadError(`no answer from ${o.url} within ${o.stallMs / 1000} s`);
      throw new DownloadError(`cannot reach ${o.url} (${describeCause(err)})`);
    }
    if (response.status === 416 && have > 0) {
      // The partial file is no prefix the server can continue: start over.
      await response.body?.cancel();
      return 'start-over';
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw new DownloadError(
        `download of ${o.url} failed: HTTP ${response.status} ${response.statusText}`.trim(),
      );
    }
    from = response.status === 206 ? (contentRangeStart(response.headers.get('content-range')) ?? -1) : 0;
    if (from !== 0 && from !== have) {
      // A range the client did not ask for: start over rather than stitch mismatched pieces.
      await response.body?.cancel();
      if (have === 0) throw new DownloadError(`download of ${o.url} failed: unasked-for partial content`);
      return 'start-over';
    }
    const length = response.headers.get('content-length');
    expected = length !== null && /^\d+$/.test(length) ? Number(length) : undefined;
    const hash = createHash('md5');
    if (from > 0) await hashFile(part, hash);
    const total = expected !== undefined ? from + expected : undefined;
    const name = path.basename(o.dest);
    o.log(
      from > 0
        ? `resuming ${o.url} at ${(from / MB).toFixed(1)} MB into ${o.dest}`
        : `downloading ${o.url}${total !== undefined ? ` (${(total / MB).toFixed(1)} MB)` : ''} to ${o.dest}`,
    );
    // MB for the archives, kB for MNIST's small label files (so they do not read "0/0").
    const [unit, unitBytes] = total !== undefined && total < MB ? ['kB', 1e3] : ['MB', MB];
    const progress =
      total !== undefined
        ? progressLine(`${name} ${unit}`, round1(total / unitBytes), round1(from / unitBytes))
        : undefined;
    const started = Date.now();
    const file = await open(part, from > 0 ? 'a' : 'w');
    try {
      if (!response.body) throw new DownloadError(`download of ${o.url} failed: empty response`);
      for await (const chunk of response.body) {
        armStallTimer();
        await file.write(chunk);
        hash.update(chunk);
        received += chunk.length;
        const seconds = Math.max((Date.now() - started) / 1000, 1e-3);
        // Not in the first second: a rate (and ETA) measured over a few chunks means nothing.
        if (progress && total && (seconds >= 1 || from + received === total)) {
          progress.update(round1((from + received) / unitBytes), {
            done: `${(((from + received) / total) * 100).toFixed(1)}%`,
            rate: `${(received / MB / seconds).toFixed(1)} MB/s`,
          });
        }
      }
      // The rename that follows must not publish a file whose bytes are still only in the page cache.
      await file.sync();
    } catch (err) {
      if (err instanceof DownloadError) throw err;
      if (stalled)
        throw new DownloadError(`download of ${o.url} stalled ${whereStopped()}: run again to resume`);
      throw new DownloadError(
        `download of ${o.url} stopped ${whereStopped()} (${describeCause(err)}): run again to resume`,
      );
    } finally {
      progress?.stop();
      await file.close();
    }
    if (expected !== undefined && received < expected) {
      throw new DownloadError(`download of ${o.url} stopped ${whereStopped()}: run again to resume`);
    }
    return { resumedFrom: from, md5: hash.digest('hex') };
  } finally {
    clearTimeout(timer);
  }
}

/** One transfer into the partial file; a continuation the server cannot give becomes a fresh start. */
async function fetchIntoPart(o: Resolved, resume: boolean): Promise<Attempt> {
  const first = await fetchOnce(o, resume);
  if (first !== 'start-over') return first;
  const again = await fetchOnce(o, false);
  if (again === 'start-over')
    throw new DownloadError(`download of ${o.url} failed: the server would not start over`);
  return again;
}

/**
 * Downloads `url` to `dest` through `dest.part`, checks its md5, then renames it into place, so `dest`
 * only ever holds a verified file. An interrupted transfer leaves the partial file, which the next call
 * continues with a Range request; a continued file whose md5 fails is fetched once more from the start
 * (the old prefix may have been the bad part). A final md5 mismatch removes the partial file.
 * Reuses `dest` when it is already there and verified (see verifyExisting).
 */
export async function downloadFile(options: DownloadOptions): Promise<string> {
  const o: Resolved = {
    ...options,
    stallMs: options.stallMs ?? 60_000,
    log: options.log ?? ((line: string) => process.stderr.write(`${line}\n`)),
  };
  if (await isVerifiedCopy(o.dest, o.md5, o.url)) return o.dest;
  await mkdir(path.dirname(o.dest), { recursive: true });
  const release = await acquireLock(o.dest, o.url);
  try {
    // Another process may have finished it between the check above and taking the lock.
    if (await isVerifiedCopy(o.dest, o.md5, o.url)) return o.dest;
    let attempt = await fetchIntoPart(o, true);
    if (attempt.md5 !== o.md5 && attempt.resumedFrom > 0) {
      o.log(
        `md5 of the continued ${path.basename(o.dest)} does not match: downloading it again from the start`,
      );
      attempt = await fetchIntoPart(o, false);
    }
    if (attempt.md5 !== o.md5) {
      await rm(partPath(o.dest), { force: true });
      throw new DownloadError(
        `checksum mismatch for ${o.url}: expected md5 ${o.md5}, got ${attempt.md5} (the download was removed)`,
      );
    }
    await rename(partPath(o.dest), o.dest);
    await writeStamp(o.dest, o.md5);
    o.log(`verified ${o.dest} (md5 ${o.md5})`);
    return o.dest;
  } finally {
    await release();
  }
}
