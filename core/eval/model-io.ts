import * as tf from '@tensorflow/tfjs-core';

/**
 * TF.js model files (a `model.json` plus the weight files its manifest names) read from and written to
 * anywhere that can hand out bytes by name: a local folder, an S3 prefix, the run store. The same files
 * tfjs-converter's `tensorflowjs_converter` writes and `tf.loadGraphModel` / `tf.loadLayersModel` read.
 */
export type ReadFile = (name: string) => Promise<Uint8Array>;
export type WriteFile = (name: string, bytes: Uint8Array | string) => Promise<void>;

const toArrayBuffer = (b: Uint8Array): ArrayBuffer =>
  b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;

/** A load handler for `modelJson` and its weight files, all read through `read`; `where` names it in errors. */
export function modelReader(read: ReadFile, where: string, modelJson = 'model.json'): tf.io.IOHandler {
  return {
    load: async () => {
      let json: tf.io.ModelJSON;
      try {
        json = JSON.parse(Buffer.from(await read(modelJson)).toString('utf8')) as tf.io.ModelJSON;
      } catch (err) {
        throw new Error(`${where}/${modelJson}: not a readable TF.js model.json (${oneLine(err)})`);
      }
      if (!json || typeof json !== 'object' || !('modelTopology' in json)) {
        throw new Error(`${where}/${modelJson}: not a TF.js model.json (no modelTopology)`);
      }
      return tf.io.getModelArtifactsForJSON(json, async (manifest) => {
        const specs: tf.io.WeightsManifestEntry[] = [];
        const buffers: ArrayBuffer[] = [];
        for (const group of manifest) {
          specs.push(...group.weights);
          for (const path of group.paths) {
            try {
              buffers.push(toArrayBuffer(await read(path)));
            } catch (err) {
              throw new Error(`${where}/${path}: weight file listed in ${modelJson} (${oneLine(err)})`);
            }
          }
        }
        return [specs, tf.io.CompositeArrayBuffer.join(buffers)];
      });
    },
  };
}

/** A save handler writing `model.json` and one `weights.bin` through `write`. */
export function modelWriter(write: WriteFile): tf.io.IOHandler {
  return tf.io.withSaveHandler(async (artifacts) => {
    const weights = new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData ?? []));
    const json = {
      modelTopology: artifacts.modelTopology,
      format: artifacts.format,
      generatedBy: artifacts.generatedBy,
      convertedBy: artifacts.convertedBy,
      weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs ?? [] }],
    };
    await write('weights.bin', weights);
    await write('model.json', JSON.stringify(json));
    return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
  });
}

function oneLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0];
}
