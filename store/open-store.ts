import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LocalDirStore } from './local-dir-store';
import type { ObjectStore } from './object-store';
import { createS3Client, type S3ClientSettings } from './s3-client';
import { S3Store, type S3StoreOptions } from './s3-store';
import { isS3Uri, parseS3Uri } from './s3-uri';

export interface OpenStoreOptions {
  /** How to reach S3 for s3:// URIs; defaults come from the standard AWS environment and config. */
  s3?: S3ClientSettings & S3StoreOptions;
}

/**
 * Opens the store a URI names: `s3://bucket[/prefix]` -> S3Store; `file:///abs/dir` or a plain path
 * (relative to the working directory) -> LocalDirStore.
 */
export function openStore(uri: string, opts: OpenStoreOptions = {}): ObjectStore {
  if (isS3Uri(uri)) {
    const { bucket, key: prefix } = parseS3Uri(uri);
    return new S3Store(createS3Client(opts.s3), bucket, prefix, opts.s3);
  }
  if (uri.startsWith('file://')) return new LocalDirStore(fileURLToPath(uri));
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(uri)) {
    throw new Error(
      `unsupported store URI ${uri}: use s3://bucket/prefix, file:///abs/dir or a directory path`,
    );
  }
  if (!uri) throw new Error('empty store URI: use s3://bucket/prefix, file:///abs/dir or a directory path');
  return new LocalDirStore(path.resolve(uri));
}
