import { accessSync, constants } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * The installers' shared cache, as infra/install-lib.sh computes it: $XDG_CACHE_HOME/ddpm-temporal or
 * ~/.cache/ddpm-temporal (every clone of this user shares it), the clone's .cache without a home.
 */
export function defaultCacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.XDG_CACHE_HOME) return path.join(env.XDG_CACHE_HOME, 'ddpm-temporal');
  const home = env.HOME || os.homedir();
  return home ? path.join(home, '.cache', 'ddpm-temporal') : path.resolve(__dirname, '..', '..', '.cache');
}

/** Where infra/install-tools.sh puts its builds: $DDPM_TOOLS_CACHE/bin (default <cache root>/tools/bin). */
export function toolsBinDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env.DDPM_TOOLS_CACHE || path.join(defaultCacheRoot(env), 'tools'), 'bin');
}

export const TOOLS_BIN_DIR = toolsBinDir();

export type ToolName = 'temporal' | 'versitygw';

export class MissingToolError extends Error {
  constructor(
    readonly tool: ToolName,
    binDir: string = TOOLS_BIN_DIR,
  ) {
    super(`${tool} not found on PATH or in ${binDir}: run infra/install-tools.sh ${tool} (needs Go >= 1.25)`);
    this.name = 'MissingToolError';
  }
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** A tool's executable on PATH (a user's own install, e.g. brew's temporal), if there is one. */
export function findOnPath(tool: ToolName, searchPath: string = process.env.PATH ?? ''): string | undefined {
  return searchPath
    .split(path.delimiter)
    .filter(Boolean)
    .map((dir) => path.join(dir, tool))
    .find(isExecutable);
}

/**
 * Finds a tool's executable: PATH first, then the installer's cache. Throws MissingToolError with the
 * fix when neither has it.
 */
export function resolveTool(
  tool: ToolName,
  searchPath: string = process.env.PATH ?? '',
  binDir: string = TOOLS_BIN_DIR,
): string {
  const found = findOnPath(tool, searchPath) ?? [path.join(binDir, tool)].find(isExecutable);
  if (!found) throw new MissingToolError(tool, binDir);
  return found;
}
