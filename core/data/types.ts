/** The dataset formats loadImageDataset understands. */
export type DatasetFormat = 'cifar10' | 'mnist' | 'png-dir' | 'embedded-digits';

/** Which part of a dataset with a train/test division to load; formats without one ignore it. */
export type DatasetSplit = 'train' | 'test' | 'all';

/** Images as one flat NHWC byte array, the layout TF.js tensors are built from. */
export interface ImageBatch {
  height: number;
  width: number;
  channels: number;
  count: number;
  /** NHWC, count*height*width*channels bytes, values 0..255. */
  pixels: Uint8Array;
  /** One per image, when the format has them. */
  labels?: Uint8Array;
}

export interface ImageDataset extends ImageBatch {
  /** What was read: a file, a directory or an archive. */
  source: string;
  format: DatasetFormat;
}
