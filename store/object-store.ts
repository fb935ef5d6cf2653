/**
 * Where datasets, checkpoints, samples and metrics live. Keys are relative, '/'-separated paths
 * (e.g. `run-1/checkpoints/000100/manifest.json`); each implementation maps them under its root.
 * Commit ordering (objects, then manifest, then `latest`) is the callers' business, built on the
 * one guarantee given here: a reader sees either the whole new object or none of it.
 *
 * Portable layouts never use a key that is also a prefix of another key ("a/b" and "a/b/c"): a local
 * directory cannot hold both, and neither can S3 servers on a POSIX backend such as versitygw.
 */
export interface ObjectStore {
  /** Where the store's root is, e.g. file:///abs/dir or s3://bucket/prefix. */
  readonly uri: string;
  /** Whole-object write; readers never see a partial object. */
  put(key: string, body: Uint8Array | string): Promise<void>;
  /** Uploads a local file (multipart for large ones on S3), with the same all-or-nothing visibility. */
  putFile(key: string, localPath: string): Promise<void>;
  /** Throws ObjectNotFoundError when the key does not exist. */
  get(key: string): Promise<Uint8Array>;
  /** get(), decoded as UTF-8. */
  getText(key: string): Promise<string>;
  /** get(), or null when the key does not exist. */
  tryGet(key: string): Promise<Uint8Array | null>;
  exists(key: string): Promise<boolean>;
  /** All keys starting with `prefix` (a plain string prefix, as in S3; '' lists everything), sorted. */
  list(prefix: string): Promise<string[]>;
  /** Removes one object; removing a missing one is not an error. */
  delete(key: string): Promise<void>;
  /** Removes every object whose key starts with `prefix`; an empty prefix is refused. */
  deletePrefix(prefix: string): Promise<void>;
}

export class ObjectNotFoundError extends Error {
  constructor(readonly uri: string) {
    super(`object not found: ${uri} (check the key, or whether the run wrote it yet)`);
    this.name = 'ObjectNotFoundError';
  }
}

export class InvalidKeyError extends Error {
  constructor(key: string, why: string) {
    super(`invalid object key ${JSON.stringify(key)}: ${why}`);
    this.name = 'InvalidKeyError';
  }
}

/**
 * Keys are portable relative paths: the same key must mean the same object on a local disk and in S3,
 * and must never escape the store's root.
 */
export function validateKey(key: string): string {
  if (typeof key !== 'string' || key.length === 0)
    throw new InvalidKeyError(String(key), 'must be non-empty');
  if (key.endsWith('/'))
    throw new InvalidKeyError(key, 'must not end with "/" (that is a prefix, not an object)');
  validatePath(key);
  return key;
}

/** A list/delete prefix: '' or a key-like string, which may end with '/'. */
export function validatePrefix(prefix: string): string {
  if (typeof prefix !== 'string') throw new InvalidKeyError(String(prefix), 'must be a string');
  if (prefix === '') return prefix;
  validatePath(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
  return prefix;
}

function validatePath(key: string): void {
  if (key.startsWith('/')) throw new InvalidKeyError(key, 'must be relative (no leading "/")');
  if (key.includes('\\')) throw new InvalidKeyError(key, 'use "/" as the separator, not "\\"');
  if (key.includes('\0')) throw new InvalidKeyError(key, 'must not contain NUL');
  for (const segment of key.split('/')) {
    if (segment === '') throw new InvalidKeyError(key, 'must not contain empty segments ("//")');
    if (segment === '.' || segment === '..')
      throw new InvalidKeyError(key, 'must not contain "." or ".." segments');
  }
}
