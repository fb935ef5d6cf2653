/**
 * The Temporal CLI for the local stack, installed on first use: a `temporal` on PATH as it is, else the
 * pinned build in the tools cache, built with Go by infra/install-tools.sh when it is not there yet
 * (minutes, once, with progress lines; instant afterwards). Without Go the error says how to get it.
 */
import { findOnPath, resolveTool, toolsBinDir } from '../local/binaries';
import { InstallError, runInstaller, type InstallerOptions } from './run-installer';

export async function ensureTemporalCli(
  log: (line: string) => void,
  options: InstallerOptions = {},
): Promise<string> {
  const env = options.env ?? process.env;
  const searchPath = env.PATH ?? '';
  const onPath = findOnPath('temporal', searchPath);
  if (onPath) return onPath;
  // The installer checks in milliseconds that the cached build is there and the pinned version.
  await runInstaller('infra/install-tools.sh', ['--quiet', 'temporal'], log, options);
  try {
    return resolveTool('temporal', searchPath, toolsBinDir(env));
  } catch (err) {
    throw new InstallError(`infra/install-tools.sh finished but ${(err as Error).message}`);
  }
}
