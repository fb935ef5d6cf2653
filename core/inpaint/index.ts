/** Image restoration with the unconditional model: RePaint inpainting and its PNG inputs. */
export { inpaintImages, repaintSamplerFor, type InpaintOptions, type InpaintResult } from './inpaint';
export { MASK_KEEP_THRESHOLD, decodeKeepMask, decodeModelImage, type ModelImageShape } from './png-input';
