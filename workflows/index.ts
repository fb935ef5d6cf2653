/** Everything a worker bundles as workflow code. */
export { trainingRun } from './training-run';
export { sampleImages, inpaintImage } from './sampling';
