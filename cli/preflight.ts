/**
 * What start-run checks before a run starts, so that input which can never work fails in the terminal
 * with one line instead of as a run on a worker: a local dataset's format and image size against the
 * preset, and that s3:// datasets and stores answer to the AWS credentials this machine has. What can
 * only fail later (an S3 dataset's contents, a worker's own credentials) fails the run, with the cause
 * shown by `status`.
 */
import { isEmbeddedSource, peekImageShape } from '../core/data';
import type { RunConfig } from '../core/presets';
import { isS3Uri, openStore, parseS3Uri } from '../store';
import { UsageError, oneLine } from '../common/errors';

/** How long an S3 check keeps retrying an endpoint that does not answer. */
const S3_CHECK_RETRY_MS = 5_000;

/** A local or embedded dataset must hold images of the preset's size. */
export async function checkDatasetFits(dataset: string, config: RunConfig): Promise<void> {
  if (isS3Uri(dataset)) return;
  let shape;
  try {
    shape = await peekImageShape(dataset);
  } catch (err) {
    throw new UsageError(`dataset ${oneLine(err)}`);
  }
  const { imageSize, inChannels } = config.model;
  const channelsFit = shape.channels === null || shape.channels === inChannels;
  if (shape.height !== imageSize || shape.width !== imageSize || !channelsFit) {
    const held = `${shape.height}x${shape.width}${shape.channels === null ? '' : `x${shape.channels}`}`;
    throw new UsageError(
      `dataset ${isEmbeddedSource(dataset) ? dataset : `at ${dataset}`} holds ${held} images but preset ` +
        `'${config.preset}' expects ${imageSize}x${imageSize}x${inChannels}`,
    );
  }
}

async function reachS3<T>(what: string, uri: string, probe: () => Promise<T>): Promise<T> {
  try {
    return await probe();
  } catch (err) {
    throw new UsageError(`${what} ${uri}: not reachable with this machine's AWS settings (${oneLine(err)})`);
  }
}

/** An s3:// dataset must exist (an object, or objects under the prefix) and be readable from here. */
export async function checkS3Dataset(uri: string): Promise<void> {
  const { bucket, key } = parseS3Uri(uri);
  const store = openStore(`s3://${bucket}`, { s3: { retryForMs: S3_CHECK_RETRY_MS } });
  const found = await reachS3('dataset', uri, async () =>
    key && (await store.exists(key)) ? 1 : (await store.list(key ? `${key}/` : '')).length,
  );
  if (found === 0) throw new UsageError(`dataset ${uri}: no objects there`);
}

/** An s3:// store must answer a listing of the run's own keys. */
export async function checkS3Store(uri: string, runId: string): Promise<void> {
  const store = openStore(uri, { s3: { retryForMs: S3_CHECK_RETRY_MS } });
  await reachS3('store', uri, () => store.list(`${runId}/latest`));
}
