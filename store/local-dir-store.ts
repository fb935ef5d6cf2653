import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { sortKeys } from './key-order';
import {
  InvalidKeyError,
  ObjectNotFoundError,
  validateKey,
  validatePrefix,
  type ObjectStore,
} from './object-store';

/** Writes in progress live here (same filesystem as the objects, so the final rename is atomic). */
const PARTIAL_DIR = '.partial';
const DELETE_CONCURRENCY = 32;

/**
 * An ObjectStore on a local directory: one file per object, keys as relative paths. Writes go to a
 * temp file, are fsynced, then renamed over the target, so a reader (or a crash) never sees half an object.
 * Unlike S3, a key cannot also be a prefix of another key ("a" and "a/b"): a file cannot be a directory.
 */
export class LocalDirStore implements ObjectStore {
  readonly root: string;
  readonly uri: string;

  constructor(rootDir: string) {
    this.root = path.resolve(rootDir);
    this.uri = pathToFileURL(this.root).href;
  }

  async put(key: string, body: Uint8Array | string): Promise<void> {
    await this.writeAtomically(key, async (tempPath) => {
      const handle = await fs.open(tempPath, 'wx');
      try {
        await handle.writeFile(body);
        await handle.sync();
      } finally {
        await handle.close();
      }
    });
  }

  async putFile(key: string, localPath: string): Promise<void> {
    await this.writeAtomically(key, async (tempPath) => {
      await fs.copyFile(localPath, tempPath);
      const handle = await fs.open(tempPath, 'r+');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    });
  }

  async get(key: string): Promise<Uint8Array> {
    const data = await this.tryGet(key);
    if (data === null) throw new ObjectNotFoundError(this.keyUri(key));
    return data;
  }

  async getText(key: string): Promise<string> {
    return new TextDecoder().decode(await this.get(key));
  }

  async tryGet(key: string): Promise<Uint8Array | null> {
    try {
      const buffer = await fs.readFile(this.filePath(key));
      return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    } catch (err) {
      if (isMissing(err)) return null;
      throw err;
    }
  }

  async exists(key: string): Promise<boolean> {
    try {
      return (await fs.stat(this.filePath(key))).isFile();
    } catch (err) {
      if (isMissing(err)) return false;
      throw err;
    }
  }

  async list(prefix: string): Promise<string[]> {
    validatePrefix(prefix);
    // Only the directory the prefix points into needs walking: "a/b/ck" lists under a/b/.
    const slash = prefix.lastIndexOf('/');
    const startDir = slash < 0 ? '' : prefix.slice(0, slash);
    const keys: string[] = [];
    await this.walk(startDir, keys);
    return sortKeys(keys.filter((key) => key.startsWith(prefix)));
  }

  async delete(key: string): Promise<void> {
    const file = this.filePath(key);
    try {
      await fs.unlink(file);
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
    await this.pruneEmptyDirs(path.dirname(file));
  }

  async deletePrefix(prefix: string): Promise<void> {
    if (validatePrefix(prefix) === '')
      throw new InvalidKeyError(prefix, 'refusing to delete every object in the store');
    const keys = await this.list(prefix);
    for (let i = 0; i < keys.length; i += DELETE_CONCURRENCY) {
      await Promise.all(keys.slice(i, i + DELETE_CONCURRENCY).map((key) => this.delete(key)));
    }
  }

  private filePath(key: string): string {
    validateKey(key);
    if (key === PARTIAL_DIR || key.startsWith(`${PARTIAL_DIR}/`)) {
      throw new InvalidKeyError(key, `"${PARTIAL_DIR}/" is reserved for writes in progress`);
    }
    return path.join(this.root, ...key.split('/'));
  }

  private keyUri(key: string): string {
    return `${this.uri}/${key}`;
  }

  private async writeAtomically(key: string, write: (tempPath: string) => Promise<void>): Promise<void> {
    const target = this.filePath(key);
    const partialDir = path.join(this.root, PARTIAL_DIR);
    const tempPath = path.join(partialDir, `${randomBytes(12).toString('hex')}.tmp`);
    await fs.mkdir(partialDir, { recursive: true });
    try {
      await write(tempPath);
      await this.makeParentDir(key, target);
      await fs.rename(tempPath, target);
    } catch (err) {
      await fs.rm(tempPath, { force: true });
      if (isErrno(err, 'EISDIR')) {
        throw new Error(
          `cannot write ${this.keyUri(key)}: other keys use it as a prefix (a local store cannot hold both)`,
        );
      }
      throw err;
    }
  }

  private async makeParentDir(key: string, target: string): Promise<void> {
    try {
      await fs.mkdir(path.dirname(target), { recursive: true });
    } catch (err) {
      if (isErrno(err, 'ENOTDIR') || isErrno(err, 'EEXIST')) {
        throw new Error(
          `cannot write ${this.keyUri(key)}: a prefix of it is itself an object (a local store cannot hold both)`,
        );
      }
      throw err;
    }
  }

  private async walk(relativeDir: string, into: string[]): Promise<void> {
    let entries;
    try {
      entries = await fs.readdir(path.join(this.root, relativeDir), { withFileTypes: true });
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
    await Promise.all(
      entries.map(async (entry) => {
        const key = relativeDir ? `${relativeDir}/${entry.name}` : entry.name;
        if (key === PARTIAL_DIR) return;
        if (entry.isDirectory()) await this.walk(key, into);
        else if (entry.isFile()) into.push(key);
      }),
    );
  }

  /** Deleting the last object under a prefix removes the prefix's now-empty directories, as in S3. */
  private async pruneEmptyDirs(dir: string): Promise<void> {
    while (dir !== this.root && dir.startsWith(this.root + path.sep)) {
      try {
        await fs.rmdir(dir);
      } catch {
        return; // Not empty (or already gone, or someone else's): stop here.
      }
      dir = path.dirname(dir);
    }
  }
}

function isErrno(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === code;
}

/** ENOTDIR: a prefix of the key is a file, so the key cannot exist either. */
function isMissing(err: unknown): boolean {
  return isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR') || isErrno(err, 'EISDIR');
}
