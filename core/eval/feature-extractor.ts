import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs-core';
import { loadGraphModel, type GraphModel } from '@tensorflow/tfjs-converter';
import { loadLayersModel, type LayersModel } from '@tensorflow/tfjs-layers';
import type { FeatureMatrix } from './frechet';
import { modelReader, type ReadFile } from './model-io';

/**
 * A user-supplied feature network for FID/KID (normally Inception-v3 up to its 2048-d pool layer, converted
 * with tensorflowjs_converter; see README "Evaluation"), as a TF.js graph or layers model. Images go in as
 * uint8 and are prepared the way pytorch-fid prepares them: scaled to [0, 1], grey replicated to RGB,
 * resized bilinearly (half-pixel centres, as torch's interpolate with align_corners=False) to the
 * network's input size, then mapped to the range the network expects. A 4-d output is average-pooled over
 * its spatial axes.
 */
export interface ExtractorOptions {
  /** Side of the square input (Inception-v3: 299). */
  inputSize: number;
  /** What the network expects: Keras/TF-slim Inception and pytorch-fid's network take [-1, 1]. */
  inputRange: '-1..1' | '0..1' | '0..255';
  /** Graph models with several outputs: the node to read (e.g. 'pool_3' or 'Identity'). */
  outputNode?: string;
}

export const EXTRACTOR_DEFAULTS: ExtractorOptions = { inputSize: 299, inputRange: '-1..1' };

export interface ImagesIn {
  pixels: Uint8Array;
  count: number;
  height: number;
  width: number;
  channels: number;
}

export class FeatureExtractor {
  private constructor(
    private readonly model: GraphModel | LayersModel,
    readonly kind: 'graph-model' | 'layers-model',
    readonly options: ExtractorOptions,
    /** Content hash of the model files plus the options: keys cached reference statistics. */
    readonly id: string,
    readonly where: string,
  ) {}

  static async load(read: ReadFile, where: string, options: ExtractorOptions, modelJson = 'model.json') {
    const hash = createHash('sha256');
    const hashing: ReadFile = async (name) => {
      const bytes = await read(name);
      hash.update(name).update(bytes);
      return bytes;
    };
    const artifacts = await modelReader(hashing, where, modelJson).load!();
    const kind = artifacts.format === 'graph-model' ? 'graph-model' : 'layers-model';
    let model: GraphModel | LayersModel;
    try {
      model =
        kind === 'graph-model'
          ? await loadGraphModel(tf.io.fromMemory(artifacts))
          : await loadLayersModel(tf.io.fromMemory(artifacts));
    } catch (err) {
      throw new Error(`${where}: cannot build a TF.js ${kind} from it: ${oneLine(err)}`);
    }
    hash.update(JSON.stringify(options));
    return new FeatureExtractor(model, kind, options, hash.digest('hex').slice(0, 16), where);
  }

  /** Channels the network takes (from its input signature; 3 when it does not say). */
  private inputChannels(): number {
    const shape = this.model.inputs[0]?.shape;
    const c = shape?.[shape.length - 1];
    return typeof c === 'number' && c > 0 ? c : 3;
  }

  private prepare(batch: ImagesIn): tf.Tensor4D {
    const { inputSize, inputRange } = this.options;
    const want = this.inputChannels();
    return tf.tidy(() => {
      let x = tf.div<tf.Tensor4D>(
        tf.tensor4d(Float32Array.from(batch.pixels), [
          batch.count,
          batch.height,
          batch.width,
          batch.channels,
        ]),
        255,
      );
      if (batch.channels === 1 && want === 3) x = tf.tile(x, [1, 1, 1, 3]);
      if (batch.height !== inputSize || batch.width !== inputSize) {
        x = tf.image.resizeBilinear(x, [inputSize, inputSize], false, true);
      }
      if (inputRange === '-1..1') return tf.sub<tf.Tensor4D>(tf.mul(x, 2), 1);
      if (inputRange === '0..255') return tf.mul<tf.Tensor4D>(x, 255);
      return x;
    });
  }

  private forward(x: tf.Tensor4D): tf.Tensor2D {
    const out =
      this.kind === 'graph-model'
        ? (this.model as GraphModel).execute(x, this.options.outputNode)
        : (this.model as LayersModel).predict(x);
    const outputs = Array.isArray(out) ? out : [out as tf.Tensor];
    const t = outputs[0];
    const features = tf.tidy(() => {
      const pooled = t.rank === 4 ? tf.mean(t, [1, 2]) : t;
      return tf.reshape(pooled, [x.shape[0], -1]) as tf.Tensor2D;
    });
    tf.dispose(outputs);
    return features;
  }

  async extract(
    images: ImagesIn,
    batchSize = 50,
    onProgress?: (done: number, total: number) => void | Promise<void>,
  ): Promise<FeatureMatrix> {
    const per = images.height * images.width * images.channels;
    let values: Float32Array | null = null;
    let dim = 0;
    for (let first = 0; first < images.count; first += batchSize) {
      const n = Math.min(batchSize, images.count - first);
      const x = this.prepare({
        ...images,
        count: n,
        pixels: images.pixels.subarray(first * per, (first + n) * per),
      });
      const f = this.forward(x);
      x.dispose();
      dim = f.shape[1];
      values ??= new Float32Array(images.count * dim);
      values.set(await f.data(), first * dim);
      tf.dispose(f);
      await onProgress?.(first + n, images.count);
    }
    return { count: images.count, dim, values: values ?? new Float32Array(0) };
  }

  dispose(): void {
    this.model.dispose();
  }
}

function oneLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0];
}
