/** The emulator's public types, re-exported by index.ts (the package's `./emulator` entry). */

export interface EmulatorCredentials {
  secretId: string;
  secretKey: string;
  /**
   * Temporary credentials' session token: when set, every request must carry it, as X-TC-Token
   * with TC3-HMAC-SHA256 and as the signed `Token` parameter with the query signatures.
   */
  token?: string;
  /** Temporary credentials' expiry, Unix seconds: past it every request is refused (AuthFailure.TokenFailure). */
  expiresAt?: number;
}

export type FaultKind = 'throttle' | 'internal' | 'http503' | 'drop' | 'malformed' | 'none';

export interface FaultOptions {
  /** Added latency before each answer, ms. */
  latencyMs?: number;
  /** Fractions of requests (0..1) that get each fault. */
  throttleRate?: number;
  internalErrorRate?: number;
  http503Rate?: number;
  dropRate?: number;
  malformedRate?: number;
  /**
   * Requests per second before answering with the real throttling code: one limit for every
   * action, or per action (Tencent's account quotas: `{ GenerateDataKey: 100, Decrypt: 300, ReEncrypt: 100 }`;
   * actions not named are not limited).
   */
  qpsLimit?: number | Record<string, number>;
  /** Faults for the next requests, one each, before any rate applies. */
  script?: FaultKind[];
}

export interface EmulatorOptions {
  host?: string;
  /** 0 (default) picks a free port. */
  port?: number;
  /** Accepted credentials; default one generated pair (see `credentials` on the result). */
  credentials?: EmulatorCredentials[];
  /**
   * Persist keys, and the credentials when generated, to this file (written atomically, mode 0600)
   * so they survive a restart.
   */
  statePath?: string;
  faults?: FaultOptions;
  /**
   * Host names the emulator answers for, besides the one in the Host header: clients may sign for
   * the real service name while their socket goes to loopback. Default: Tencent's KMS host names.
   */
  hostAliases?: string[];
  /** Clock, Unix seconds (tests of signature expiry). */
  now?: () => number;
  /**
   * Let browser pages call both APIs: `true` for any origin, or the origins allowed. Preflights
   * are answered and answers carry Access-Control-Allow-Origin. Default: no CORS.
   */
  cors?: boolean | string[];
  /**
   * Serve a CVM instance role on the metadata endpoint (`/latest/meta-data/cam/security-credentials/`,
   * no authentication, as on a CVM): each read issues temporary credentials that last `ttlSeconds`
   * (default 7200). STS AssumeRole is served at `/` whatever this says.
   */
  instanceRole?: { name: string; ttlSeconds?: number };
}

export interface EmulatorStats {
  /** Requests per action that passed authentication (faulted and abandoned ones included). */
  calls: Record<string, number>;
  /** Of those, the ones answered (API errors and injected faults included, dropped connections not). */
  served: Record<string, number>;
  /**
   * Of those, the ones whose client went away before the answer (during injected latency, say):
   * their action did not run, and they gave back their place under the QPS limit.
   */
  abandoned: Record<string, number>;
  /** Requests answered with each injected fault. */
  faults: Record<string, number>;
  /** Requests rejected for their signature, credentials or timestamp. */
  authFailures: number;
}

export interface RunningEmulator {
  /** `http://HOST:PORT` (API 3.0 at `/`, legacy at `/v2/index.php`). */
  url: string;
  host: string;
  port: number;
  credentials: EmulatorCredentials[];
  setFaults(faults: FaultOptions): void;
  stats(): EmulatorStats;
  resetStats(): void;
  /**
   * Creates a CMK directly (no request); returns its key id. An alias that a key already has names
   * that key instead, so `emulator --key-alias` with `--state` finds the same key on every start.
   */
  createKey(alias?: string): string;
  /** Every temporary credential issued so far (STS, instance role) expires now. */
  expireTemporaryCredentials(): void;
  close(): Promise<void>;
}
