import { S3Client } from '@aws-sdk/client-s3';
import { DeadlineRetryStrategy } from './deadline-retry-strategy';

export interface S3ClientSettings {
  /** S3-compatible endpoint; default AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL, else AWS itself. */
  endpoint?: string;
  /** Default: AWS_REGION / AWS_DEFAULT_REGION / the shared config profile, else us-east-1. */
  region?: string;
  /** Default: the SDK's standard chain (env, shared files, SSO, web identity, container/instance roles). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Default: true when an endpoint is set (S3-compatible servers rarely do virtual-hosted buckets). */
  forcePathStyle?: boolean;
  /** How long one request keeps retrying transient failures. Default 60 s. */
  retryForMs?: number;
}

/**
 * An S3 client configured from the standard AWS environment and config chain. Credentials are never
 * read or logged here; the SDK resolves them lazily.
 */
export function createS3Client(settings: S3ClientSettings = {}): S3Client {
  const env = process.env;
  const endpoint = settings.endpoint ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  return new S3Client({
    endpoint,
    region: settings.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? regionFromProfileOrDefault,
    credentials: settings.credentials,
    forcePathStyle: settings.forcePathStyle ?? endpoint !== undefined,
    // Newer SDKs add CRC32 checksums to every request, which some S3-compatible servers reject.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    retryStrategy: new DeadlineRetryStrategy({ retryForMs: settings.retryForMs }),
    // Without timeouts a connection to a hung server waits forever and no retry ever happens.
    requestHandler: { connectionTimeout: 5_000, socketTimeout: 60_000 },
  });
}

let profileRegion: Promise<string> | undefined;

/** The SDK's own region chain (which also reads ~/.aws/config), with us-east-1 when it finds none. */
function regionFromProfileOrDefault(): Promise<string> {
  profileRegion ??= (async () => {
    const probe = new S3Client({});
    try {
      return await probe.config.region();
    } catch {
      return 'us-east-1';
    } finally {
      probe.destroy();
    }
  })();
  return profileRegion;
}
