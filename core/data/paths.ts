import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

import { DatasetError, describeError } from './errors';

export type PathKind = 'file' | 'directory';

/** Whether a dataset source is a file or a directory; a missing path is a DatasetError. */
export async function pathKind(path: string): Promise<PathKind> {
  try {
    const info = await stat(path);
    if (info.isDirectory()) return 'directory';
    if (info.isFile()) return 'file';
  } catch (err) {
    throw new DatasetError(path, describeError(err));
  }
  throw new DatasetError(path, 'not a regular file or directory');
}

export interface DirectoryListing {
  /** Names of regular files (symlinks followed), sorted by UTF-16 code units so order is locale-free. */
  files: string[];
  /** Names of subdirectories, sorted likewise. */
  directories: string[];
}

export async function listDirectory(dir: string): Promise<DirectoryListing> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    throw new DatasetError(dir, `cannot list directory: ${describeError(err)}`);
  }
  const files: string[] = [];
  const directories: string[] = [];
  for (const entry of entries) {
    let kind: PathKind | undefined;
    if (entry.isFile()) kind = 'file';
    else if (entry.isDirectory()) kind = 'directory';
    else if (entry.isSymbolicLink()) kind = await pathKind(join(dir, entry.name)).catch(() => undefined);
    if (kind === 'file') files.push(entry.name);
    if (kind === 'directory') directories.push(entry.name);
  }
  const byCodeUnits = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  return { files: files.sort(byCodeUnits), directories: directories.sort(byCodeUnits) };
}
