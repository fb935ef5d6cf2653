import { accessSync, constants } from 'node:fs';
import path from 'node:path';

/** Where infra/install-tools.sh puts its builds: $DDPM_TOOLS_CACHE/bin, by default <repo>/.cache/bin. */
export const TOOLS_BIN_DIR = path.join(
  process.env.DDPM_TOOLS_CACHE ?? path.resolve(__dirname, '..', '..', '.cache'),
  'bin',
);

export type ToolName = 'temporal' | 'versitygw';

export class MissingToolError extends Error {
  constructor(
    readonly tool: ToolName,
    binDir: string = TOOLS_BIN_DIR,
  ) {
    super(`${tool} not found on PATH or in ${binDir}: run infra/install-tools.sh (needs Go >= 1.25)`);
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

/**
 * Finds a tool's executable: PATH first (a user's own install, e.g. brew's temporal, wins),
 * then the installer's cache. Throws MissingToolError with the fix when neither has it.
 */
export function resolveTool(
  tool: ToolName,
  searchPath: string = process.env.PATH ?? '',
  binDir: string = TOOLS_BIN_DIR,
): string {
  const candidates = [...searchPath.split(path.delimiter).filter(Boolean), binDir].map((dir) =>
    path.join(dir, tool),
  );
  const found = candidates.find(isExecutable);
  if (!found) throw new MissingToolError(tool, binDir);
  return found;
}
