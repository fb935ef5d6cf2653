/**
 * Stops the local stack's background processes (control and trainer workers, then the Temporal dev server). Runs stay in
 * its state dir: the next start-run brings the stack back and they carry on.
 *
 *   npm run stop-local -- [--timeout SECONDS]
 */
import { Command } from 'commander';
import { localStackSettings, stopLocalStack } from '../infra/local/local-stack';
import { runCli } from '../common/errors';
import { positiveInt } from '../common/options';

const program = new Command('stop-local')
  .description(
    'Stop the local Temporal dev server and workers that start-run left running (found by the pid files ' +
      'in DDPM_LOCAL_STACK_DIR, default .cache/local-stack). A training segment in progress checkpoints first; ' +
      'runs resume when the stack is started again.',
  )
  .option(
    '--timeout <seconds>',
    'how long each process may take to stop before it is killed',
    positiveInt,
    60,
  )
  .addHelpText('after', '\nExample:\n  npm run stop-local\n');

runCli(async () => {
  const o = program.parse().opts<{ timeout: number }>();
  const settings = localStackSettings();
  const stopped = await stopLocalStack(settings, o.timeout * 1000);
  if (stopped.length === 0) process.stdout.write(`nothing to stop in ${settings.stateDir}\n`);
  const names: Record<string, string> = {
    temporal: 'Temporal dev server',
    worker: 'trainer worker',
    'worker-control': 'control worker',
  };
  for (const s of stopped) {
    process.stdout.write(`${s.how} ${names[s.name] ?? s.name} (pid ${s.pid})\n`);
  }
});
