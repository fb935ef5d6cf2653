import { gaussianStats, psdSqrt, type FeatureMatrix, type GaussianStats } from './frechet';

/**
 * Reference feature statistics of a dataset split, computed once and cached in the store under a prefix
 * that names the dataset (content fingerprint), the feature network and the split. float64 mean and
 * covariance, the covariance's square root (so each FID costs two products and one eigenvalue pass, not
 * a second eigendecomposition), and some of the features themselves for KID. `stats.json` is written last:
 * a folder without it is recomputed.
 */
export interface StatsObjects {
  readonly uri: string;
  put(key: string, body: Uint8Array | string): Promise<void>;
  get(key: string): Promise<Uint8Array>;
  tryGet(key: string): Promise<Uint8Array | null>;
}

export interface ReferenceStats {
  stats: GaussianStats;
  sqrtCov: Float64Array;
  /** Up to `keepFeatures` of the reference features (the first ones computed), for KID. */
  features: FeatureMatrix;
  /** What the statistics describe (split, image count), as recorded. */
  description: ReferenceDescription;
}

export interface ReferenceDescription {
  split: 'train' | 'test';
  images: number;
}

interface StatsManifest extends ReferenceDescription {
  format: 'ddpm-reference-stats';
  version: 1;
  dim: number;
  count: number;
  featureCount: number;
}

const bytesOf = (a: Float64Array | Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const f64 = (b: Uint8Array) => new Float64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
const f32 = (b: Uint8Array) => new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));

export async function cachedReferenceStats(
  store: StatsObjects,
  prefix: string,
  description: ReferenceDescription,
  computeFeatures: () => Promise<FeatureMatrix>,
  keepFeatures = 5000,
): Promise<ReferenceStats & { cached: boolean }> {
  const manifestBytes = await store.tryGet(`${prefix}stats.json`);
  if (manifestBytes) {
    const m = JSON.parse(Buffer.from(manifestBytes).toString('utf8')) as StatsManifest;
    if (m.format === 'ddpm-reference-stats' && m.version === 1) {
      const stats: GaussianStats = {
        dim: m.dim,
        count: m.count,
        mean: f64(await store.get(`${prefix}mean.f64`)),
        cov: f64(await store.get(`${prefix}cov.f64`)),
      };
      const values = f32(await store.get(`${prefix}features.f32`));
      if (
        stats.mean.length === m.dim &&
        stats.cov.length === m.dim * m.dim &&
        values.length === m.featureCount * m.dim
      ) {
        return {
          stats,
          sqrtCov: f64(await store.get(`${prefix}sqrt-cov.f64`)),
          features: { count: m.featureCount, dim: m.dim, values },
          description: { split: m.split, images: m.images },
          cached: true,
        };
      }
    }
  }
  const all = await computeFeatures();
  const stats = await gaussianStats(all);
  const sqrtCov = await psdSqrt(stats.cov, stats.dim);
  const featureCount = Math.min(keepFeatures, all.count);
  const features: FeatureMatrix = {
    count: featureCount,
    dim: all.dim,
    values: all.values.slice(0, featureCount * all.dim),
  };
  await store.put(`${prefix}mean.f64`, bytesOf(stats.mean));
  await store.put(`${prefix}cov.f64`, bytesOf(stats.cov));
  await store.put(`${prefix}sqrt-cov.f64`, bytesOf(sqrtCov));
  await store.put(`${prefix}features.f32`, bytesOf(features.values));
  const manifest: StatsManifest = {
    format: 'ddpm-reference-stats',
    version: 1,
    dim: stats.dim,
    count: stats.count,
    featureCount,
    ...description,
  };
  await store.put(`${prefix}stats.json`, JSON.stringify(manifest, null, 2));
  return { stats, sqrtCov, features, description, cached: false };
}
