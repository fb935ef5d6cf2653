import { z } from 'zod';

/** Architecture of the DDPM U-Net (Ho et al. 2020, Appendix B). */
export const UNetConfigSchema = z
  .object({
    imageSize: z.number().int().positive(),
    inChannels: z.number().int().positive(),
    /** Base channel count; the timestep embedding has 4x this width. */
    ch: z.number().int().positive(),
    /** Channel multiplier per resolution level; each level after the first halves the resolution. */
    chMult: z.array(z.number().int().positive()).min(1),
    numResBlocks: z.number().int().positive(),
    /** Resolutions (in pixels) at which self-attention blocks are inserted. */
    attnResolutions: z.array(z.number().int().positive()),
    dropout: z.number().min(0).lt(1),
    /** GroupNorm groups; the paper uses 32. Every channel count must be divisible by it. */
    groups: z.number().int().positive(),
  })
  .strict()
  .superRefine((c, ctx) => {
    const levels = c.chMult.length;
    if (c.imageSize % 2 ** (levels - 1) !== 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['imageSize'],
        message: `imageSize ${c.imageSize} must be divisible by 2^${levels - 1} for ${levels} levels`,
      });
    }
    for (const m of c.chMult) {
      if ((c.ch * m) % c.groups !== 0) {
        ctx.addIssue({
          code: 'custom',
          path: ['groups'],
          message: `channel count ${c.ch * m} is not divisible by ${c.groups} groups`,
        });
      }
    }
  });

export type UNetConfig = z.infer<typeof UNetConfigSchema>;
