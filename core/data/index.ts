/** Image datasets for training (CIFAR-10, MNIST, PNG folders) and PNG grids for looking at samples. */
export { DatasetError } from './errors';
export { EMBEDDED_DIGITS, isEmbeddedSource } from './embedded-digits';
export { loadImageDataset, type LoadImageDatasetOptions } from './load';
export { loadHeldOutSplit } from './held-out';
export { prepareSplits, type PreparedSplits } from './prepare-splits';
export { peekImageShape, type ImageShape } from './image-shape';
export { encodePngGrid, writePngGrid, type PngGridOptions } from './png-grid';
export { toFloatRange, toUint8Range } from './pixel-range';
export type { DatasetFormat, DatasetSplit, ImageDataset } from './types';
export {
  SHARD_FORMAT,
  datasetFingerprint,
  joinShards,
  parseShardManifest,
  readShardedSplit,
  writeShardedSplit,
  type ShardObjects,
  splitIntoShards,
  type ShardManifest,
  type ShardedImages,
} from './shards';
