import { z } from 'zod';

/**
 * Runs a CLI entry point: a failure prints one `error:` line (the stack only with DEBUG=1) and exits 1,
 * so users see what went wrong, not a trace.
 */
export function runCli(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`error: ${oneLine(err)}\n`);
      if (process.env.DEBUG && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
      process.exit(1);
    },
  );
}

/** An error as one line: a schema failure names its first field instead of dumping every issue as JSON. */
export function oneLine(err: unknown): string {
  if (err instanceof z.ZodError) {
    const issue = err.issues[0];
    const where = issue?.path.length ? `${issue.path.join('.')}: ` : '';
    return `invalid input: ${where}${issue?.message ?? 'does not match its schema'}`;
  }
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/\s*[\r\n]+\s*/g, ' ');
}

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
