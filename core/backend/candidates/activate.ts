import * as tf from '@tensorflow/tfjs-core';

/**
 * tf.setBackend for a backend whose package has registered it. TF.js reports a failed initialisation
 * only as `false` plus a console warning, so this turns it into an error with a reason.
 */
export async function activate(name: string): Promise<void> {
  if (tf.findBackendFactory(name) === null) {
    throw new Error(`TF.js has no '${name}' backend registered (its package did not register it)`);
  }
  if (!(await tf.setBackend(name))) {
    throw new Error(`TF.js could not initialise the '${name}' backend (see the warning above)`);
  }
  await tf.ready();
}
