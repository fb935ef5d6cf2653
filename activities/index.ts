/** The activities a trainer worker registers. */
export { prepareDataset } from './prepare-dataset';
export { trainSegment } from './train-segment';
export { sampleGrid } from './sample-grid';
export { sampleChunk } from './sample-chunk';
export { finishSampleImages } from './sample-set';
export { inpaint } from './inpaint';
