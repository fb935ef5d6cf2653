export { initBackend, startFastest } from './select';
export type { BackendInfo, BackendName, Candidates } from './select';
export { AUTO_ORDER, PREFERENCE_ORDER } from './candidate';
export { BACKEND_CHOICES, BACKEND_NAMES, type BackendChoice } from './names';
export { listNvidiaGpus, type NvidiaGpu } from './nvidia';
export { registerWasmTrainingKernels } from './wasm-kernels/register';
