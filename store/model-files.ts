import { openStore, type OpenStoreOptions } from './open-store';

/**
 * Where a TF.js model's files are: a `model.json` path or URI (local path, file://, s3://bucket/key), or
 * the folder / prefix that holds one. Its weight files are read beside it, from the same store.
 */
export function modelFilesAt(
  uri: string,
  opts: OpenStoreOptions = {},
): { where: string; modelJson: string; read: (name: string) => Promise<Uint8Array> } {
  const trimmed = uri.replace(/\/+$/, '');
  const isJson = /\.json$/i.test(trimmed);
  const slash = trimmed.lastIndexOf('/');
  if (isJson && slash < 0) {
    const store = openStore('.', opts);
    return { where: store.uri, modelJson: trimmed, read: (name) => store.get(name) };
  }
  const folder = isJson ? trimmed.slice(0, slash) : trimmed;
  const modelJson = isJson ? trimmed.slice(slash + 1) : 'model.json';
  const store = openStore(folder || '/', opts);
  return { where: store.uri, modelJson, read: (name) => store.get(name) };
}
