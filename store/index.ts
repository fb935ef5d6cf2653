export { DeadlineRetryStrategy, type DeadlineRetryOptions } from './deadline-retry-strategy';
export { LocalDirStore } from './local-dir-store';
export {
  InvalidKeyError,
  ObjectNotFoundError,
  validateKey,
  validatePrefix,
  type ObjectStore,
} from './object-store';
export { openStore, type OpenStoreOptions } from './open-store';
export { createS3Client, type S3ClientSettings } from './s3-client';
export { S3Store, type S3StoreOptions } from './s3-store';
export { isS3Uri, parseS3Uri, type S3Location } from './s3-uri';
export { modelFilesAt } from './model-files';
