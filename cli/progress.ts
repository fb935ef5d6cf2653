import cliProgress from 'cli-progress';

export interface ProgressLine {
  update(done: number, fields: Record<string, string | number>): void;
  /** Prints a line of its own without garbling the live bar (it is redrawn on the next update). */
  log(line: string): void;
  stop(): void;
}

/**
 * A live progress line on a terminal (cli-progress), or one plain line every `everySeconds` otherwise
 * (logs, CI), so long work always shows it is alive.
 */
export function progressLine(label: string, total: number, start: number, everySeconds = 30): ProgressLine {
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format: `${label} {bar} {value}/{total} | {fields} | ETA {eta_formatted}`,
        stream: process.stderr,
        hideCursor: true,
        etaBuffer: 20,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, start, { fields: '' });
    return {
      update: (done, fields) => bar.update(done, { fields: formatFields(fields) }),
      log: (line) => process.stderr.write(`\r\x1b[K${line}\n`),
      stop: () => bar.stop(),
    };
  }
  let last = 0;
  const started = Date.now();
  return {
    update(done, fields) {
      const now = Date.now();
      if (now - last < everySeconds * 1000 && done !== total) return;
      last = now;
      const rate = (done - start) / Math.max((now - started) / 1000, 1e-9);
      const eta = rate > 0 ? formatSeconds((total - done) / rate) : '?';
      process.stderr.write(`${label} ${done}/${total} | ${formatFields(fields)} | ETA ${eta}\n`);
    },
    log: (line) => process.stderr.write(`${line}\n`),
    stop: () => undefined,
  };
}

function formatFields(fields: Record<string, string | number>): string {
  return Object.entries(fields)
    .map(([k, v]) => `${k} ${typeof v === 'number' ? Number(v.toPrecision(4)) : v}`)
    .join(' | ');
}

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(sec).padStart(2, '0')}s`;
}
