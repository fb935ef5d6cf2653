export { initBackend } from './select';
export type { BackendInfo, BackendName } from './select';
export { PREFERENCE_ORDER } from './candidate';
export { registerWasmTrainingKernels } from './wasm-kernels/register';
