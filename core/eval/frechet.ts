import { breathe } from './breathe';
import { matmul, symmetricEigen } from './symmetric-eigen';

/** Mean and covariance of a set of feature vectors, in float64 (what FID compares). */
export interface GaussianStats {
  dim: number;
  /** How many vectors the statistics were estimated from. */
  count: number;
  mean: Float64Array;
  /** dim x dim, row-major, unbiased (divided by count - 1), as numpy.cov. */
  cov: Float64Array;
}

/** Feature vectors as one row-major count x dim matrix (what extractors produce). */
export interface FeatureMatrix {
  count: number;
  dim: number;
  values: Float32Array;
}

/**
 * Mean and unbiased covariance in float64. Rows are centred first (two passes), so the covariance does not
 * suffer the cancellation of the one-pass sum-of-products formula; only the upper triangle is computed.
 */
export async function gaussianStats(f: FeatureMatrix): Promise<GaussianStats> {
  const { count: n, dim: d, values } = f;
  if (n < 2) throw new RangeError(`a covariance needs at least 2 feature vectors, got ${n}`);
  if (values.length !== n * d) throw new RangeError(`expected ${n}x${d} values, got ${values.length}`);
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] += values[i * d + j];
  for (let j = 0; j < d; j++) mean[j] /= n;
  const cov = new Float64Array(d * d);
  const row = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    await breathe();
    for (let j = 0; j < d; j++) row[j] = values[i * d + j] - mean[j];
    for (let a = 0; a < d; a++) {
      const ra = row[a];
      if (ra === 0) continue;
      const base = a * d;
      for (let b = a; b < d; b++) cov[base + b] += ra * row[b];
    }
  }
  for (let a = 0; a < d; a++) {
    for (let b = a; b < d; b++) {
      const v = cov[a * d + b] / (n - 1);
      cov[a * d + b] = v;
      cov[b * d + a] = v;
    }
  }
  return { dim: d, count: n, mean, cov };
}

/**
 * Square roots of a PSD matrix's eigenvalues, with those below its numerical rank (|l| <= n eps l_max, the
 * size of the rounding noise of the decomposition) set to 0: for a singular covariance the noise on its
 * zero eigenvalues is ~1e-15, but its square root ~3e-8 each would add up in a trace.
 */
function sqrtEigenvalues(values: Float64Array, n: number): Float64Array {
  const largest = values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const floor = n * Number.EPSILON * largest;
  return values.map((v) => (v > floor ? Math.sqrt(v) : 0));
}

/** The symmetric positive semi-definite square root, via the eigendecomposition. */
export async function psdSqrt(matrix: Float64Array, n: number): Promise<Float64Array> {
  const { values, vectors } = await symmetricEigen(matrix, n, true);
  const roots = sqrtEigenvalues(values, n);
  const w = vectors!;
  // sqrt(S) = W^T diag(sqrt(lambda)) W, W's rows the eigenvectors.
  const scaled = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const s = roots[k];
    for (let j = 0; j < n; j++) scaled[k * n + j] = s * w[k * n + j];
  }
  const out = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    await breathe();
    for (let i = 0; i < n; i++) {
      const wki = w[k * n + i];
      if (wki === 0) continue;
      for (let j = 0; j < n; j++) out[i * n + j] += wki * scaled[k * n + j];
    }
  }
  return out;
}

export interface FrechetResult {
  /** ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)). */
  distance: number;
  meanTerm: number;
  /** tr((S1 S2)^(1/2)). */
  traceSqrtProduct: number;
}

/**
 * Fréchet distance between two Gaussians (Dowson & Landau 1982), as FID defines it. tr((S1 S2)^(1/2)) is
 * computed as the sum of square roots of the eigenvalues of the symmetric PSD matrix R S2 R, R = S1^(1/2):
 * it has the same eigenvalues as S1 S2 but, unlike scipy's general sqrtm of the non-symmetric product,
 * never produces complex rounding residue, and stays exact for singular covariances (fewer samples than
 * dimensions). Pass `sqrtCov1` (psdSqrt of a's covariance) to reuse it across comparisons with one reference.
 */
export async function frechetDistance(
  a: GaussianStats,
  b: GaussianStats,
  sqrtCov1?: Float64Array,
): Promise<FrechetResult> {
  if (a.dim !== b.dim) throw new RangeError(`feature dimensions differ: ${a.dim} vs ${b.dim}`);
  const n = a.dim;
  let meanTerm = 0;
  for (let i = 0; i < n; i++) meanTerm += (a.mean[i] - b.mean[i]) ** 2;
  let traces = 0;
  for (let i = 0; i < n; i++) traces += a.cov[i * n + i] + b.cov[i * n + i];
  const r = sqrtCov1 ?? (await psdSqrt(a.cov, n));
  const product = await matmul(await matmul(r, b.cov, n), r, n);
  // Symmetrise away the rounding asymmetry of the two products.
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const v = 0.5 * (product[i * n + j] + product[j * n + i]);
      product[i * n + j] = v;
      product[j * n + i] = v;
    }
  }
  const roots = sqrtEigenvalues((await symmetricEigen(product, n, false)).values, n);
  const traceSqrtProduct = roots.reduce((a, v) => a + v, 0);
  return { distance: meanTerm + traces - 2 * traceSqrtProduct, meanTerm, traceSqrtProduct };
}
