import os from 'node:os';
import path from 'node:path';

/**
 * The per-user cache every clone shares (tools, the native backend, datasets):
 * $XDG_CACHE_HOME/ddpm-temporal, else ~/.cache/ddpm-temporal. infra/install-lib.sh computes the same.
 */
export function defaultCacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.XDG_CACHE_HOME) return path.resolve(env.XDG_CACHE_HOME, 'ddpm-temporal');
  return path.resolve(env.HOME || os.homedir(), '.cache', 'ddpm-temporal');
}
