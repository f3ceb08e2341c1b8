/**
 * A local Tencent Cloud KMS emulator for development, demos and tests (never for production data).
 * It speaks both wire protocols: the legacy API at /v2/index.php (GET query or POST form, HmacSHA1 /
 * HmacSHA256) and API 3.0 at / (POST JSON with TC3-HMAC-SHA256, and v1-signed form posts), and it
 * verifies every signature as Tencent does (auth.ts). Data keys are wrapped under per-CMK master
 * keys (kms.ts). Faults (latency, throttling, 5xx, dropped connections, malformed bodies, a QPS
 * limit) can be injected by option or through the control endpoint, for tests (faults.ts).
 */
import { DEFAULT_HOST_ALIASES, generatedCredentials, Verifier } from './auth.ts';
import { Faults } from './faults.ts';
import { listen } from './http.ts';
import { KeyStore } from './kms.ts';
import { loadState, saveState } from './state.ts';
import { Stats } from './stats.ts';
import { TemporaryCredentials } from './sts.ts';
import type { EmulatorOptions, RunningEmulator } from './types.ts';

export type { EmulatorCredentials, EmulatorOptions, EmulatorStats, FaultKind, FaultOptions, RunningEmulator } from './types.ts';

export async function startEmulator(options: EmulatorOptions = {}): Promise<RunningEmulator> {
  const now = options.now ?? (() => Math.floor(Date.now() / 1000));
  const statePath = options.statePath;
  const saved = statePath ? loadState(statePath) : { keys: [] };
  // Generated credentials go into the state file, and stay there while given ones are used, so
  // that a restart answers the clients that were handed them.
  const generated = saved.credentials ?? (options.credentials?.length ? undefined : [generatedCredentials()]);
  // A copy the emulator owns: temporary credentials it issues are added to it.
  const credentials = options.credentials?.length ? options.credentials.map((c) => ({ ...c })) : [...generated!];
  const store: KeyStore = new KeyStore(now, () => {
    if (statePath) saveState(statePath, { credentials: generated, keys: store.keys.values() });
  });
  for (const cmk of saved.keys) store.keys.set(cmk.keyId, cmk);
  if (statePath && generated && !saved.credentials) saveState(statePath, { credentials: generated, keys: saved.keys });
  const faults = new Faults(options.faults);
  const stats = new Stats();
  const verifier = new Verifier(credentials, options.hostAliases ?? DEFAULT_HOST_ALIASES, now);
  const host = options.host ?? '127.0.0.1';
  const temporary = new TemporaryCredentials(credentials, now);
  const services = { verifier, store, faults, stats, controlKey: credentials[0]!.secretKey, cors: options.cors, temporary, instanceRole: options.instanceRole };
  const server = await listen(services, host, options.port ?? 0);
  const urlHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${urlHost}:${server.port}`,
    host,
    port: server.port,
    credentials,
    setFaults: (next) => faults.set(next),
    stats: () => stats.snapshot(),
    resetStats: () => stats.reset(),
    createKey: (alias) => ((alias && store.byAlias(alias)) || store.create(alias ?? '')).keyId,
    expireTemporaryCredentials: () => temporary.expireAll(),
    close: () => server.close(),
  };
}
