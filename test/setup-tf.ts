import * as tf from '@tensorflow/tfjs-core';

// Silences TF.js's "install the node backend" banner in test output; it changes no computation. (IS_TEST
// silences it too, but also makes every kernel call count the backend's buffers, and custom gradients
// that save tensors for the backward pass, such as tf.fused.conv2d's, fail that count on wasm, whose
// clones are copies. The wasm tests count buffers themselves.)
tf.env().set('PROD', true);
