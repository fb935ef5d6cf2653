/**
 * Picks and starts the TF.js backend: the fastest one that works here ('auto'), or the one asked for.
 * Every backend package is loaded only when it is tried, so a missing optional one never breaks startup.
 */
import type { BackendChoice } from './names';
import {
  AUTO_ORDER,
  isBackendName,
  PREFERENCE_ORDER,
  type BackendInfo,
  type BackendName,
  type Candidate,
  type Probe,
} from './candidate';
import { cpuCandidate } from './candidates/cpu';
import { tensorflowCandidate } from './candidates/tensorflow';
import { wasmCandidate } from './candidates/wasm';
import { webgpuCandidate } from './candidates/webgpu';
import { firstLine } from './load-package';
import { registerGradients } from '../tf-gradients';

export type { BackendInfo, BackendName } from './candidate';

// Training needs every op's gradient; tfjs-core's CommonJS build registers none.
registerGradients();

export type Candidates = Record<BackendName, Candidate>;

const CANDIDATES: Candidates = {
  tensorflow: tensorflowCandidate,
  webgpu: webgpuCandidate,
  wasm: wasmCandidate,
  cpu: cpuCandidate,
};

/**
 * Starts `requested` ('auto': the first rung of AUTO_ORDER that starts: tensorflow on a GPU, webgpu,
 * tensorflow on the CPU, wasm, cpu) and makes it TF.js's active backend. `log` gets one line for the
 * choice and one for each faster option that was skipped, saying why. Safe to call again, also with
 * another backend.
 */
export async function initBackend(
  requested: BackendChoice = 'auto',
  log: (line: string) => void = () => {},
): Promise<BackendInfo> {
  if (requested === 'auto') return startFastest(log);
  if (!isBackendName(requested)) {
    const available = await availableBackends();
    throw new Error(
      `unknown backend '${String(requested)}': use auto or one of ${PREFERENCE_ORDER.join(', ')} ` +
        `(available here: ${available.join(', ') || 'none'})`,
    );
  }
  const outcome = await tryStart(CANDIDATES[requested], true);
  if ('info' in outcome) {
    log(`backend: ${outcome.info.name} (${outcome.info.detail}), as requested`);
    return outcome.info;
  }
  const available = await availableBackends(requested);
  throw new Error(
    `backend '${requested}' cannot start: ${outcome.reason}; available here: ${available.join(', ') || 'none'}`,
  );
}

/**
 * 'auto': walks AUTO_ORDER, probing each backend once (`candidates` lets a test stand in for hardware this
 * machine lacks). A backend that fails to start is not tried again on a later rung.
 */
export async function startFastest(
  log: (line: string) => void,
  candidates: Candidates = CANDIDATES,
): Promise<BackendInfo> {
  const probes = new Map<BackendName, Probe>();
  for (const rung of AUTO_ORDER) {
    const known = probes.get(rung.name);
    const probe = known ?? (await candidates[rung.name].probe(false));
    probes.set(rung.name, probe);
    if (!probe.ok) {
      if (!known) log(`backend: skipped ${rung.name}: ${probe.reason}`);
      continue;
    }
    if (rung.device === 'gpu' && !probe.onGpu) {
      log(`backend: skipped ${rung.name} on GPU: ${probe.cpuOnlyBecause ?? 'it runs on the CPU here'}`);
      continue;
    }
    if (rung.device === 'cpu' && probe.onGpu) continue;
    try {
      const info = await candidates[rung.name].start();
      log(`backend: ${info.name} (${info.detail})`);
      return info;
    } catch (err) {
      probes.set(rung.name, { ok: false, reason: firstLine(err) });
      log(`backend: skipped ${rung.name}: ${firstLine(err)}`);
    }
  }
  throw new Error('no TF.js backend could start: check that @tensorflow/tfjs-backend-cpu is installed');
}

async function tryStart(
  candidate: Candidate,
  explicit: boolean,
): Promise<{ info: BackendInfo } | { reason: string }> {
  const probe = await candidate.probe(explicit);
  if (!probe.ok) return { reason: probe.reason };
  try {
    return { info: await candidate.start() };
  } catch (err) {
    return { reason: firstLine(err) };
  }
}

/** Backends whose probe succeeds here (without switching to them), in preference order. */
async function availableBackends(except?: BackendName): Promise<BackendName[]> {
  const names: BackendName[] = [];
  for (const name of PREFERENCE_ORDER) {
    if (name !== except && (await CANDIDATES[name].probe(true)).ok) names.push(name);
  }
  return names;
}
