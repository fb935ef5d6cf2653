/**
 * The TF.js backends by name, in one place. Pure TypeScript (no TF.js, no Node APIs): workflow payload
 * types, commander `.choices(...)` and zod enums all read it.
 */

/** The backends, fastest first (listings and error messages). */
export const BACKEND_NAMES = ['tensorflow', 'webgpu', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

/** What a command or a run may ask for: a backend, or 'auto' for the fastest one that works here. */
export const BACKEND_CHOICES = ['auto', ...BACKEND_NAMES] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];

export function isBackendName(name: string): name is BackendName {
  return (BACKEND_NAMES as readonly string[]).includes(name);
}
