import { loadClientConnectConfig } from '@temporalio/envconfig';

export interface TemporalSettings {
  address: string;
  namespace: string;
  /** Connection options for @temporalio/client and @temporalio/worker (TLS, API key, ...). */
  connectionOptions: ReturnType<typeof loadClientConnectConfig>['connectionOptions'];
  /** Whether an address came from the environment or the Temporal config file (else: the local default). */
  configured: boolean;
}

export const LOCAL_TEMPORAL_ADDRESS = '127.0.0.1:7233';

/**
 * Temporal connection settings from the standard environment configuration (TEMPORAL_ADDRESS,
 * TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE and the temporal.toml config
 * file), falling back to the local dev server. Secrets stay inside connectionOptions and are never logged.
 */
export function temporalSettings(): TemporalSettings {
  const { connectionOptions, namespace } = loadClientConnectConfig();
  const configured = Boolean(connectionOptions.address);
  const address = connectionOptions.address ?? LOCAL_TEMPORAL_ADDRESS;
  return {
    address,
    namespace: namespace ?? 'default',
    connectionOptions: { ...connectionOptions, address },
    configured,
  };
}
