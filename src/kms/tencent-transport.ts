/**
 * What both Tencent providers share: credentials, the endpoint check, and one HTTP exchange with
 * a per-attempt timeout, a total deadline, retries with exponential backoff and full jitter for the
 * retryable classes only (each attempt signed afresh), no redirects, and a capped response body.
 * Secrets, signatures and plaintext keys never reach an error message.
 */
import { processEnv } from '../core/runtime.ts';
import type KyInstance from 'ky';
import { base64, wipe } from '../core/bytes.ts';
import { KmsError } from '../core/errors.ts';
import { type EventListener, emitter } from '../economy/events.ts';
import { type BucketOptions, RateLimiter, type RateLimitOptions } from '../economy/rate-limit.ts';

export interface TencentCredentials {
  readonly secretId: string;
  readonly secretKey: string;
  /** STS session token for temporary credentials. */
  readonly token?: string | undefined;
}

/** Fixed credentials, or a function called before each attempt (for rotation). */
export type CredentialSource = TencentCredentials | (() => TencentCredentials | Promise<TencentCredentials>);

export interface RetryOptions {
  /** Retries after the first attempt; default 3. */
  limit?: number;
  /** First backoff ceiling in ms (doubles each retry, full jitter); default 100, as Tencent advises. */
  baseDelayMs?: number;
  /** Largest backoff ceiling; default 3000. */
  maxDelayMs?: number;
}

export interface TransportOptions {
  /** Timeout of one attempt in ms; default 5000. */
  timeoutMs?: number;
  /** Deadline of the whole call, retries and backoff included, in ms; default 20000. */
  deadlineMs?: number;
  retry?: RetryOptions;
  /** A fetch to use instead of the global one (tests, proxies, custom agents). */
  fetch?: typeof fetch;
  /** Credentials; default from TENCENTCLOUD_SECRET_ID / _SECRET_KEY / _SESSION_TOKEN. */
  credentials?: CredentialSource;
  /**
   * Client-side rate limit and concurrency cap, so a burst queues instead of drawing throttling
   * errors; `false` turns it off. Defaults follow the KMS's published per-action limits.
   */
  rateLimit?: RateLimitOptions | false;
  /** Retry and throttle-wait events, for metrics. */
  onEvent?: EventListener;
}

/** Per-action defaults: qps + burst stays within the published limit per second. */
export interface RateDefaults {
  actions: Record<string, BucketOptions>;
  fallback: BucketOptions;
}

export const MAX_RESPONSE_BYTES = 64 * 1024;


export async function resolveCredentials(source: CredentialSource | undefined): Promise<TencentCredentials> {
  let creds: TencentCredentials | undefined;
  if (typeof source === 'function') {
    try {
      creds = await source();
    } catch (error) {
      throw new KmsError('the credential function failed', { cause: error });
    }
  } else if (source) {
    creds = source;
  } else {
    const e = processEnv();
    if (e.TENCENTCLOUD_SECRET_ID && e.TENCENTCLOUD_SECRET_KEY) {
      creds = { secretId: e.TENCENTCLOUD_SECRET_ID, secretKey: e.TENCENTCLOUD_SECRET_KEY, token: e.TENCENTCLOUD_SESSION_TOKEN || undefined };
    }
  }
  if (!creds || typeof creds.secretId !== 'string' || typeof creds.secretKey !== 'string' || !creds.secretId || !creds.secretKey) {
    throw new KmsError('no Tencent Cloud credentials: set TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY, or pass credentials');
  }
  return creds;
}

const LOOPBACK = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\])$/i;

/** HTTPS, or plain HTTP to a loopback address only (the emulator). */
export function checkEndpoint(endpoint: string): URL {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new TypeError(`"endpoint" is not a URL: ${JSON.stringify(endpoint)}`);
  }
  if (url.protocol === 'https:') return url;
  if (url.protocol === 'http:' && LOOPBACK.test(url.hostname)) return url;
  throw new TypeError(`"endpoint" must use https (plain http is allowed only for loopback addresses), got ${url.origin}`);
}

export interface HttpRequest {
  method: 'GET' | 'POST';
  url: string;
  headers: Record<string, string>;
  body?: string;
}

/** What the caller makes of a response: done, retry, re-sign once, or fail. */
export type Verdict<T> =
  | { ok: T }
  | { retry: KmsError }
  | { resign: KmsError }
  | { fail: Error };

export interface KmsCall<T> {
  action: string;
  /** Builds and signs the request for one attempt (fresh timestamp and nonce each time). */
  sign: (credentials: TencentCredentials) => HttpRequest | Promise<HttpRequest>;
  /** Judges a parsed response body with its HTTP status. */
  judge: (status: number, body: unknown) => Verdict<T>;
}

// ky is loaded on the first KMS call, so code that never talks to Tencent does not pay for it.
let kyLoading: Promise<typeof KyInstance> | undefined;
const loadKy = (): Promise<typeof KyInstance> => (kyLoading ??= import('ky').then((m) => m.default));

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export class TencentTransport {
  readonly #timeoutMs: number;
  readonly #deadlineMs: number;
  readonly #limit: number;
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #fetch: typeof fetch | undefined;
  readonly #credentials: CredentialSource | undefined;
  readonly #limiter: RateLimiter | undefined;
  readonly #emit: ReturnType<typeof emitter>;

  constructor(options: TransportOptions = {}, rateDefaults?: RateDefaults) {
    this.#timeoutMs = positive(options.timeoutMs ?? 5000, 'timeoutMs');
    this.#deadlineMs = positive(options.deadlineMs ?? 20000, 'deadlineMs');
    this.#limit = Math.floor(nonNegative(options.retry?.limit ?? 3, 'retry.limit'));
    this.#baseDelayMs = nonNegative(options.retry?.baseDelayMs ?? 100, 'retry.baseDelayMs');
    this.#maxDelayMs = nonNegative(options.retry?.maxDelayMs ?? 3000, 'retry.maxDelayMs');
    this.#fetch = options.fetch;
    this.#credentials = options.credentials;
    this.#limiter = options.rateLimit === false || !rateDefaults ? undefined : new RateLimiter(options.rateLimit ?? {}, rateDefaults);
    this.#emit = emitter(options.onEvent);
  }

  async call<T>(call: KmsCall<T>): Promise<T> {
    const deadline = Date.now() + this.#deadlineMs;
    let resigned = false;
    let lastError: KmsError | undefined;
    for (let attempt = 0; ; attempt++) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new KmsError(`${call.action}: deadline of ${this.#deadlineMs} ms exceeded after ${attempt} attempt(s)`, {
          cause: lastError,
          kmsCode: lastError?.kmsCode,
          requestId: lastError?.requestId,
        });
      }
      const credentials = await resolveCredentials(this.#credentials);
      const slot = await this.#limiter?.acquire(call.action);
      if (slot && slot.waitedMs > 0) this.#emit({ type: 'throttle-wait', action: call.action, waitMs: slot.waitedMs });
      let verdict: Verdict<T>;
      try {
        verdict = await this.#attempt(call, credentials, Math.max(1, Math.min(this.#timeoutMs, deadline - Date.now())));
      } finally {
        slot?.release();
      }
      if ('ok' in verdict) return verdict.ok;
      if ('fail' in verdict) throw verdict.fail;
      if ('resign' in verdict) {
        // A stale timestamp (clock skew): one immediate re-sign, then give up.
        if (resigned) throw verdict.resign;
        resigned = true;
        lastError = verdict.resign;
        attempt--;
        continue;
      }
      lastError = verdict.retry;
      if (attempt >= this.#limit) throw lastError;
      const ceiling = Math.min(this.#maxDelayMs, this.#baseDelayMs * 2 ** attempt);
      const delay = Math.random() * ceiling;
      if (Date.now() + delay >= deadline) throw lastError;
      this.#emit({ type: 'retry', action: call.action, attempt: attempt + 1, delayMs: delay, ...(lastError.kmsCode ? { errorCode: lastError.kmsCode } : {}) });
      await sleep(delay);
    }
  }

  async #attempt<T>(call: KmsCall<T>, credentials: TencentCredentials, timeout: number): Promise<Verdict<T>> {
    const request = await call.sign(credentials);
    // One deadline bounds the whole attempt, the body read included (ky's own timeout stops at the
    // headers). The abort signal alone is not enough: ky wraps it in a Request, and Node 20's fetch
    // loses a Request's link to its signal after a garbage collection (nodejs/undici#4068,
    // nodejs/node#55428), so an abort can fail to end the fetch (an attempt then waits for the
    // server's late answer, past its deadline). The attempt also races a timer and moves on; the request is aborted
    // anyway and its outcome ignored.
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => {
        controller.abort();
        resolve(undefined);
      }, timeout);
    });
    const exchange = (async (): Promise<{ status: number; text: string } | { fail: KmsError }> => {
      const ky = await loadKy();
      const response = await ky(request.url, {
        method: request.method,
        headers: request.headers,
        ...(request.body === undefined ? {} : { body: request.body }),
        signal: controller.signal,
        timeout: false,
        retry: 0,
        throwHttpErrors: false,
        redirect: 'manual',
        ...(this.#fetch ? { fetch: this.#fetch } : {}),
      });
      if (response.status >= 300 && response.status < 400) {
        await response.body?.cancel();
        return { fail: new KmsError(`${call.action}: the endpoint answered with a redirect (HTTP ${response.status}), which is not followed`) };
      }
      return { status: response.status, text: await readCapped(response, MAX_RESPONSE_BYTES) };
    })();
    exchange.catch(() => {}); // an abandoned exchange may still fail later: nobody waits for it
    let outcome: Awaited<typeof exchange> | undefined;
    try {
      outcome = await Promise.race([exchange, timedOut]);
    } catch (error) {
      if (error instanceof KmsError) return { fail: error };
      if (controller.signal.aborted) return { retry: new KmsError(`${call.action}: attempt timed out after ${Math.round(timeout)} ms`) };
      return { retry: new KmsError(`${call.action}: network error (${describeNetworkError(error)})`, { cause: error }) };
    } finally {
      clearTimeout(timer);
    }
    if (outcome === undefined) return { retry: new KmsError(`${call.action}: attempt timed out after ${Math.round(timeout)} ms`) };
    if ('fail' in outcome) return outcome;
    const { status, text } = outcome;
    if (status >= 500) return { retry: new KmsError(`${call.action}: HTTP ${status} from the KMS`, { kmsCode: `HTTP${status}` }) };
    if (status !== 200) return { fail: new KmsError(`${call.action}: HTTP ${status} from the KMS`, { kmsCode: `HTTP${status}` }) };
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return { fail: new KmsError(`${call.action}: the KMS answered with a body that is not JSON`) };
    }
    return call.judge(status, body);
  }
}

function describeNetworkError(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown } } | undefined)?.cause;
  if (cause && typeof cause.code === 'string') return cause.code;
  return error instanceof Error ? error.name : 'unknown';
}

async function readCapped(response: Response, cap: number): Promise<string> {
  if (!response.body) return '';
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > cap) {
      await reader.cancel();
      throw new KmsError(`the KMS response exceeds ${cap} bytes`);
    }
    chunks.push(value);
  }
  const all = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) {
    all.set(c, o);
    o += c.length;
  }
  const text = new TextDecoder().decode(all);
  all.fill(0); // the body may hold a plaintext data key
  for (const c of chunks) c.fill(0);
  return text;
}

function positive(n: number, name: string): number {
  if (typeof n !== 'number' || !(n > 0) || !Number.isFinite(n)) throw new RangeError(`"${name}" must be a positive number, got ${n}`);
  return n;
}

function nonNegative(n: number, name: string): number {
  if (typeof n !== 'number' || !(n >= 0) || !Number.isFinite(n)) throw new RangeError(`"${name}" must be a non-negative number, got ${n}`);
  return n;
}

/** Random nonce for v1/v2 signing: a positive 31-bit integer. */
export function randomNonce(): number {
  const b = globalThis.crypto.getRandomValues(new Uint32Array(1));
  return (b[0]! & 0x7fffffff) || 1;
}

/** A string field of a response object, or undefined. */
export function stringField(obj: unknown, name: string): string | undefined {
  const v = (obj as Record<string, unknown> | null | undefined)?.[name];
  return typeof v === 'string' ? v : undefined;
}

/**
 * A GenerateDataKey response as a DataKey: the key decoded and length-checked, the blob present.
 * `names` are the response's field names (API 3.0 PascalCase, v2 lower camelCase).
 */
export function dataKeyFromResponse(
  response: Record<string, unknown>,
  names: { plaintext: string; blob: string; keyId: string },
  length: number,
  requestedKeyId: string,
): { keyId: string; plaintextKey: Uint8Array; ciphertextBlob: string } {
  const plaintextKey = decodeDataKey(response[names.plaintext], length, 'GenerateDataKey');
  const ciphertextBlob = stringField(response, names.blob);
  if (!ciphertextBlob) {
    wipe(plaintextKey);
    throw new KmsError(`GenerateDataKey: the KMS response has no ${names.blob}`);
  }
  return { keyId: stringField(response, names.keyId) ?? requestedKeyId, plaintextKey, ciphertextBlob };
}

/**
 * Decodes the base64 plaintext data key straight into a Uint8Array and checks its length against
 * what was asked for (Tencent's own example returns 16 bytes for AES_256).
 */
export function decodeDataKey(text: unknown, expectedLength: number, action: string): Uint8Array {
  const key = typeof text === 'string' ? base64.decode(text) : undefined;
  if (!key) throw new KmsError(`${action}: the KMS returned a plaintext key that is not base64`);
  if (key.length !== expectedLength) {
    const length = key.length;
    wipe(key);
    throw new KmsError(`${action}: the KMS returned a ${length}-byte data key where ${expectedLength} bytes were asked for`);
  }
  return key;
}
