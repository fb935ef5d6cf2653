import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { defaultCacheRoot } from '../cache-root';

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
