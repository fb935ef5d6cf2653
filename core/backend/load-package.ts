/**
 * Loads a package only when it is asked for, so that an optional backend that is not installed (or whose
 * native part does not load here) costs nothing at startup and turns into a reason instead of a crash.
 */

export type Loaded<T> = { ok: true; module: T } | { ok: false; reason: string };

export function loadPackage<T>(name: string): Loaded<T> {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- lazy by design: see above
    return { ok: true, module: require(name) as T };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const missing = e.code === 'MODULE_NOT_FOUND' && e.message.includes(`'${name}'`);
    return {
      ok: false,
      reason: missing ? `${name} is not installed` : `${name} failed to load: ${firstLine(e)}`,
    };
  }
}

export function firstLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0].trim();
}
