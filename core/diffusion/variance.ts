import type { NoiseSchedule } from './schedule';

/**
 * The fixed reverse-process variances sigma_t^2 of the paper (section 3.2): 'fixedlarge' is beta_t (optimal for
 * x_0 ~ N(0, I), the paper's choice for CIFAR-10), 'fixedsmall' is beta_tilde_t (optimal for a deterministic x_0).
 */
export type VarianceType = 'fixedlarge' | 'fixedsmall';

/**
 * log sigma_t^2 of p(x_{t-1} | x_t) for every timestep, in float64.
 *
 * At t = 0 'fixedlarge' uses log beta_tilde_1 instead of log beta_1, following the reference code
 * (`np.log(np.append(self.posterior_variance[1], self.betas[1:]))`, "to get a better decoder log likelihood").
 * The paper's text says sigma^2 = beta everywhere. The value at t = 0 only enters the decoder term L_0 of the
 * bound: sampling adds no noise at the last step.
 */
export function modelLogVariance(schedule: NoiseSchedule, type: VarianceType): Float64Array {
  switch (type) {
    case 'fixedlarge': {
      const out = new Float64Array(schedule.numTimesteps);
      out[0] = Math.log(schedule.posteriorVariance[1]);
      for (let t = 1; t < out.length; t++) out[t] = Math.log(schedule.betas[t]);
      return out;
    }
    case 'fixedsmall':
      return Float64Array.from(schedule.posteriorLogVarianceClipped);
    default: {
      const unknown: never = type;
      throw new Error(`unknown variance type ${JSON.stringify(unknown)}`);
    }
  }
}
