/** An `s3://bucket[/key-or-prefix]` URI split into its bucket and its key (trailing slashes dropped). */
export interface S3Location {
  bucket: string;
  key: string;
}

const SCHEME = 's3://';

export function isS3Uri(uri: string): boolean {
  return uri.startsWith(SCHEME);
}

/** Splits an s3:// URI; throws a one-line error for anything else or a URI without a bucket. */
export function parseS3Uri(uri: string): S3Location {
  if (!isS3Uri(uri)) throw new Error(`not an S3 URI: ${uri} (expected s3://bucket or s3://bucket/prefix)`);
  const rest = uri.slice(SCHEME.length);
  const slash = rest.indexOf('/');
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  const key = slash < 0 ? '' : rest.slice(slash + 1).replace(/\/+$/, '');
  if (!bucket) throw new Error(`invalid S3 URI ${uri}: expected s3://bucket or s3://bucket/prefix`);
  return { bucket, key };
}
