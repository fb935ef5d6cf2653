export { defaultCacheRoot } from '../cache-root';
export {
  findOnPath,
  MissingToolError,
  resolveTool,
  TOOLS_BIN_DIR,
  toolsBinDir,
  type ToolName,
} from './binaries';
export { ManagedProcess, type ManagedProcessOptions, type ProcessExit } from './managed-process';
export { findFreePort } from './ports';
export { DDPM_SEARCH_ATTRIBUTES, type SearchAttributeSpec } from './search-attributes';
export { TemporalDevServer, type TemporalDevServerOptions } from './temporal-dev-server';
export { VersityGw, type S3Credentials, type VersityGwOptions } from './versitygw';
