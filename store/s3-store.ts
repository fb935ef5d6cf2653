import { createReadStream } from 'node:fs';
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  paginateListObjectsV2,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { sortKeys } from './key-order';
import {
  InvalidKeyError,
  ObjectNotFoundError,
  validateKey,
  validatePrefix,
  type ObjectStore,
} from './object-store';

export interface S3StoreOptions {
  /** Multipart part size for putFile (S3's minimum is 5 MiB). Default 8 MiB. */
  partSizeBytes?: number;
  /** Parts uploaded in parallel by putFile. Default 4. */
  uploadConcurrency?: number;
}

/** DeleteObjects takes at most this many keys per request. */
const DELETE_BATCH = 1000;

/**
 * An ObjectStore on an S3 bucket (AWS or S3-compatible), with every key under an optional prefix.
 * S3 itself makes each PUT (single or multipart) visible all at once; retries of transient failures
 * are the client's retry strategy (see createS3Client).
 */
export class S3Store implements ObjectStore {
  readonly uri: string;
  private readonly keyPrefix: string;

  constructor(
    private readonly client: S3Client,
    readonly bucket: string,
    prefix = '',
    private readonly options: S3StoreOptions = {},
  ) {
    const trimmed = prefix.replace(/^\/+|\/+$/g, '');
    if (trimmed) validateKey(trimmed);
    this.keyPrefix = trimmed ? `${trimmed}/` : '';
    this.uri = `s3://${bucket}${trimmed ? `/${trimmed}` : ''}`;
  }

  async put(key: string, body: Uint8Array | string): Promise<void> {
    // A Buffer/Uint8Array (never a stream) is what lets the SDK resend the body on a retry.
    const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    await this.client.send(
      new PutObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key), Body: bytes }),
    );
  }

  async putFile(key: string, localPath: string): Promise<void> {
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: this.objectKey(key), Body: createReadStream(localPath) },
      partSize: this.options.partSizeBytes ?? 8 * 1024 * 1024,
      queueSize: this.options.uploadConcurrency ?? 4,
      // A failed upload must not leave parts behind that the bucket keeps billing for.
      leavePartsOnError: false,
    });
    await upload.done();
  }

  async get(key: string): Promise<Uint8Array> {
    const data = await this.tryGet(key);
    if (data === null) throw new ObjectNotFoundError(this.keyUri(key));
    return data;
  }

  async getText(key: string): Promise<string> {
    return new TextDecoder().decode(await this.get(key));
  }

  async tryGet(key: string): Promise<Uint8Array | null> {
    try {
      const response = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }),
      );
      if (!response.Body) return new Uint8Array(0);
      return await response.Body.transformToByteArray();
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async exists(key: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  async list(prefix: string): Promise<string[]> {
    validatePrefix(prefix);
    const keys: string[] = [];
    const pages = paginateListObjectsV2(
      { client: this.client },
      { Bucket: this.bucket, Prefix: this.keyPrefix + prefix },
    );
    for await (const page of pages) {
      for (const object of page.Contents ?? []) {
        if (object.Key?.startsWith(this.keyPrefix)) keys.push(object.Key.slice(this.keyPrefix.length));
      }
    }
    return sortKeys(keys);
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
  }

  async deletePrefix(prefix: string): Promise<void> {
    if (validatePrefix(prefix) === '')
      throw new InvalidKeyError(prefix, 'refusing to delete every object in the store');
    const keys = await this.list(prefix);
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const batch = keys.slice(i, i + DELETE_BATCH);
      const result = await this.client.send(
        new DeleteObjectsCommand({
          Bucket: this.bucket,
          Delete: { Objects: batch.map((key) => ({ Key: this.objectKey(key) })), Quiet: true },
        }),
      );
      const failed = result.Errors ?? [];
      if (failed.length > 0) {
        const first = failed[0];
        throw new Error(
          `could not delete ${failed.length} objects under ${this.keyUri(prefix)} (first: ${first.Key}: ${first.Code} ${first.Message}); retry deletePrefix`,
        );
      }
    }
  }

  private objectKey(key: string): string {
    return this.keyPrefix + validateKey(key);
  }

  private keyUri(key: string): string {
    return `s3://${this.bucket}/${this.keyPrefix}${key}`;
  }
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } } | undefined;
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
}
