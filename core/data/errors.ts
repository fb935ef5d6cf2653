/** A dataset that cannot be read: one of the error types that decide retry (core/errors.ts). */
export { DatasetError } from '../errors';

/** Turns a filesystem or zlib error into the short phrase a DatasetError carries. */
export function describeError(err: unknown): string {
  // Duck-typed, not `instanceof Error`: errors from node's core modules come from another realm under
  // jest's sandbox (and vm contexts in general), where instanceof fails.
  if (typeof err !== 'object' || err === null || typeof (err as Error).message !== 'string')
    return String(err);
  const { code, message } = err as NodeJS.ErrnoException;
  if (code === 'ENOENT') return 'no such file or directory';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'is a directory, expected a file';
  if (code === 'ENOTDIR') return 'not a directory';
  return message;
}
