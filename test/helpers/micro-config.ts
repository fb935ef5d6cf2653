import type { RunConfig, TrainConfig } from '../../core/presets';
import { PRESETS } from '../../core/presets';

/**
 * A U-Net with every block kind (res blocks with dropout, attention, down/upsampling) on 8x8 RGB images,
 * small enough for the cpu backend: the model of the tests that train.
 */
export function microConfig(train: Partial<TrainConfig>): RunConfig {
  return {
    preset: 'test-micro',
    model: {
      imageSize: 8,
      inChannels: 3,
      ch: 8,
      chMult: [1, 2],
      numResBlocks: 1,
      attnResolutions: [4],
      dropout: 0.1,
      groups: 4,
    },
    diffusion: { ...PRESETS.tiny.diffusion, timesteps: 100 },
    train: { ...PRESETS.tiny.train, ...train },
  };
}
