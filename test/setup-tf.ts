import * as tf from '@tensorflow/tfjs-core';

// Silences TF.js's "install the node backend" banner in test output; it changes no computation.
tf.env().set('IS_TEST', true);
