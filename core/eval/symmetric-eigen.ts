/**
 * Dense float64 linear algebra for the Fréchet distance: square row-major matrices in Float64Arrays, the
 * symmetric eigendecomposition (Householder tridiagonalisation + implicit QL, as in EISPACK's tred2/tql2
 * and JAMA), and the products built on it. Written here rather than taken from a matrix package because
 * feature covariances are up to 2048 x 2048 and the generic packages (number[][] rows, column-strided
 * rotations) take minutes there; these loops walk rows contiguously.
 */

import { breathe } from './breathe';

export interface SymmetricEigen {
  /** Ascending. */
  values: Float64Array;
  /** Row k is the unit eigenvector of values[k] (row-major n x n); absent when not asked for. */
  vectors?: Float64Array;
}

/** C = A B for n x n row-major matrices (i-k-j order: every inner loop runs along a row). */
export async function matmul(a: Float64Array, b: Float64Array, n: number): Promise<Float64Array> {
  const c = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    await breathe();
    const ci = i * n;
    for (let k = 0; k < n; k++) {
      const aik = a[ci + k];
      if (aik === 0) continue;
      const bk = k * n;
      for (let j = 0; j < n; j++) c[ci + j] += aik * b[bk + j];
    }
  }
  return c;
}

/**
 * Eigenvalues (and optionally eigenvectors) of a symmetric n x n matrix; only its values are read, the
 * input is left untouched. Eigenvalues only skips the accumulation of the Householder transforms and the
 * vector rotations: about a third of the work.
 */
export async function symmetricEigen(
  matrix: Float64Array,
  n: number,
  wantVectors = true,
): Promise<SymmetricEigen> {
  if (matrix.length !== n * n) throw new RangeError(`expected ${n}x${n} values, got ${matrix.length}`);
  const v = Float64Array.from(matrix);
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  if (n === 0) return { values: d, ...(wantVectors && { vectors: v }) };
  await tridiagonalize(v, d, e, n, wantVectors);
  await diagonalize(d, e, wantVectors ? v : null, n);
  return { values: d, ...(wantVectors && { vectors: v }) };
}

/**
 * Householder reduction to tridiagonal form (EISPACK tred2 / JAMA), run on the transpose U = V^T of
 * JAMA's transform (the input is symmetric, so it starts equal): every inner loop then walks a row. On
 * return d is the diagonal, e the sub-diagonal, and U's rows the accumulated transform.
 */
async function tridiagonalize(
  U: Float64Array,
  d: Float64Array,
  e: Float64Array,
  n: number,
  accumulate: boolean,
): Promise<void> {
  for (let j = 0; j < n; j++) d[j] = U[j * n + n - 1];
  for (let i = n - 1; i > 0; i--) {
    await breathe();
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]);
    if (scale === 0) {
      e[i] = d[i - 1];
      for (let j = 0; j < i; j++) {
        d[j] = U[j * n + i - 1];
        U[j * n + i] = 0;
        U[i * n + j] = 0;
      }
    } else {
      for (let k = 0; k < i; k++) {
        d[k] /= scale;
        h += d[k] * d[k];
      }
      let f = d[i - 1];
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      for (let j = 0; j < i; j++) {
        const row = j * n;
        f = d[j];
        U[i * n + j] = f;
        g = e[j] + U[row + j] * f;
        for (let k = j + 1; k <= i - 1; k++) {
          g += U[row + k] * d[k];
          e[k] += U[row + k] * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] /= h;
        f += e[j] * d[j];
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] -= hh * d[j];
      for (let j = 0; j < i; j++) {
        const row = j * n;
        f = d[j];
        g = e[j];
        for (let k = j; k <= i - 1; k++) U[row + k] -= f * e[k] + g * d[k];
        d[j] = U[row + i - 1];
        U[row + i] = 0;
      }
    }
    d[i] = h;
  }
  if (!accumulate) {
    for (let j = 0; j < n; j++) d[j] = U[j * n + j];
    e[0] = 0;
    return;
  }
  for (let i = 0; i < n - 1; i++) {
    await breathe();
    const next = (i + 1) * n;
    U[i * n + n - 1] = U[i * n + i];
    U[i * n + i] = 1;
    const h = d[i + 1];
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = U[next + k] / h;
      for (let j = 0; j <= i; j++) {
        const row = j * n;
        let g = 0;
        for (let k = 0; k <= i; k++) g += U[next + k] * U[row + k];
        for (let k = 0; k <= i; k++) U[row + k] -= g * d[k];
      }
    }
    for (let k = 0; k <= i; k++) U[next + k] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = U[j * n + n - 1];
    U[j * n + n - 1] = 0;
  }
  U[(n - 1) * n + n - 1] = 1;
  e[0] = 0;
}

function hypot(a: number, b: number): number {
  const x = Math.abs(a);
  const y = Math.abs(b);
  if (x > y) {
    const r = y / x;
    return x * Math.sqrt(1 + r * r);
  }
  if (y === 0) return 0;
  const r = x / y;
  return y * Math.sqrt(1 + r * r);
}

/** Implicit QL on the tridiagonal form (EISPACK tql2); W's rows (the transform) are rotated along. */
async function diagonalize(
  d: Float64Array,
  e: Float64Array,
  W: Float64Array | null,
  n: number,
): Promise<void> {
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;
  let f = 0;
  let tst1 = 0;
  const eps = Number.EPSILON;
  for (let l = 0; l < n; l++) {
    await breathe();
    tst1 = Math.max(tst1, Math.abs(d[l]) + Math.abs(e[l]));
    let m = l;
    while (m < n && Math.abs(e[m]) > eps * tst1) m++;
    if (m === n) m = n - 1;
    if (m > l) {
      let iterations = 0;
      do {
        if (++iterations > 60) throw new Error('symmetric eigendecomposition did not converge');
        let g = d[l];
        let p = (d[l + 1] - g) / (2 * e[l]);
        let r = hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        const dl1 = d[l + 1];
        let h = g - d[l];
        for (let i = l + 2; i < n; i++) d[i] -= h;
        f += h;
        p = d[m];
        let c = 1;
        let c2 = c;
        let c3 = c;
        const el1 = e[l + 1];
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          if (W) {
            const a = i * n;
            const b = (i + 1) * n;
            for (let k = 0; k < n; k++) {
              const t = W[b + k];
              W[b + k] = s * W[a + k] + c * t;
              W[a + k] = c * W[a + k] - s * t;
            }
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]) > eps * tst1);
    }
    d[l] += f;
    e[l] = 0;
  }
  // Selection sort into ascending order, carrying the vectors along.
  for (let i = 0; i < n - 1; i++) {
    let k = i;
    let p = d[i];
    for (let j = i + 1; j < n; j++) {
      if (d[j] < p) {
        k = j;
        p = d[j];
      }
    }
    if (k !== i) {
      d[k] = d[i];
      d[i] = p;
      if (W) {
        for (let j = 0; j < n; j++) {
          const t = W[i * n + j];
          W[i * n + j] = W[k * n + j];
          W[k * n + j] = t;
        }
      }
    }
  }
}
