/**
 * What both Tencent providers share: credentials, the endpoint check, and one HTTP exchange with
 * a per-attempt timeout, a total deadline, retries with exponential backoff and full jitter for the
 * retryable classes only (each attempt signed afresh), no redirects, and a capped response body.
 * Secrets, signatures and plaintext keys never reach an error message.
 */
import { processEnv } from '../core/runtime.ts';
import type KyInstance from 'ky';
import { abortable, anySignal, delay, throwIfAborted } from '../core/abort.ts';
import { base64, wipe } from '../core/bytes.ts';
import { KmsError, type KmsErrorKind } from '../core/errors.ts';
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

const MAX_RESPONSE_BYTES = 64 * 1024;

/**
 * Refusals that mean "this pair no longer works" (an expired or revoked temporary credential): with
 * a refreshing source (tencent-credentials.ts) the call fetches a new pair once and re-signs.
 * `4100` is the legacy API's authentication class.
 */
const STALE_CREDENTIALS = new Set(['AuthFailure.TokenFailure', 'AuthFailure.SecretIdNotFound', 'AuthFailure.InvalidSecretId', '4100']);

/** A source that can be told a pair was refused (tencent-credentials.ts), without importing it. */
function invalidator(source: CredentialSource | undefined): ((refused: TencentCredentials) => void) | undefined {
  const invalidate = (source as { invalidate?: unknown } | undefined)?.invalidate;
  return typeof source === 'function' && typeof invalidate === 'function' ? (refused) => (invalidate as (r: TencentCredentials) => void).call(source, refused) : undefined;
}


async function resolveCredentials(source: CredentialSource | undefined): Promise<TencentCredentials> {
  let creds: TencentCredentials | undefined;
  if (typeof source === 'function') {
    try {
      creds = await source();
    } catch (error) {
      throw new KmsError('the credential function failed', { kind: 'auth', cause: error });
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
    throw new KmsError('no Tencent Cloud credentials: set TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY, or pass credentials', { kind: 'auth' });
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

/** The reason the call's own deadline aborts its waits with (never seen outside call()). */
class Overdue extends Error {}

/** A retryable failure's message without its `Action: ` prefix, to quote in the deadline's message. */
function reasonOf(error: KmsError, action: string): string {
  return error.message.startsWith(`${action}: `) ? error.message.slice(action.length + 2) : error.message;
}

const attempts = (n: number): string => `${n} attempt${n === 1 ? '' : 's'}`;

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

  /**
   * One KMS call: attempts, retries and backoff within the deadline, which counts from here and so
   * includes the waits for credentials and for the client-side rate limiter. `signal` cancels it:
   * the attempt in flight and any wait end at once, rejecting with the signal's reason.
   */
  async call<T>(call: KmsCall<T>, signal?: AbortSignal, options?: { retries?: number }): Promise<T> {
    throwIfAborted(signal);
    const deadlineMs = this.#deadlineMs;
    const timeoutMs = this.#timeoutMs;
    const limit = options?.retries ?? this.#limit;
    const deadline = Date.now() + deadlineMs;
    const overdue = new Overdue();
    const expiry = new AbortController();
    const timer = setTimeout(() => expiry.abort(overdue), deadlineMs);
    const linked = anySignal(signal, expiry.signal);
    const waits = linked.signal!;
    let made = 0;
    let timedOut = 0;
    let inLimiter = false;
    let lastError: KmsError | undefined;
    const exceeded = (): KmsError => {
      const detail = inLimiter
        ? 'waiting for the client-side rate limit'
        : made > 0 && timedOut === made
          ? `each timed out at ${timeoutMs} ms`
          : lastError
            ? `last: ${reasonOf(lastError, call.action)}`
            : 'waiting for credentials';
      return new KmsError(`${call.action}: deadline ${deadlineMs} ms exceeded after ${attempts(made)} (${detail})`, {
        kind: inLimiter ? 'throttled' : 'timeout',
        cause: lastError,
        kmsCode: lastError?.kmsCode,
        requestId: lastError?.requestId,
      });
    };
    try {
      let resigned = false;
      let refreshed = false;
      for (let attempt = 0; ; attempt++) {
        if (Date.now() >= deadline) throw exceeded();
        const credentials = await abortable(resolveCredentials(this.#credentials), waits);
        inLimiter = true;
        const slot = await this.#limiter?.acquire(call.action, waits);
        inLimiter = false;
        if (slot && slot.waitedMs > 0) this.#emit({ type: 'throttle-wait', action: call.action, waitMs: slot.waitedMs });
        let verdict: Verdict<T>;
        try {
          made++;
          verdict = await this.#attempt(call, credentials, Math.max(1, Math.min(timeoutMs, deadline - Date.now())), waits);
        } catch (error) {
          if (error === overdue) timedOut++; // the attempt in flight was cut by the deadline
          throw error;
        } finally {
          slot?.release();
        }
        // The limiter adapts: a throttle from the KMS halves the action's rate, a success raises it.
        const answered = 'ok' in verdict ? undefined : 'fail' in verdict ? verdict.fail : 'retry' in verdict ? verdict.retry : undefined;
        if (answered instanceof KmsError && answered.kind === 'throttled') this.#limiter?.throttled(call.action);
        else if ('ok' in verdict) this.#limiter?.succeeded(call.action);
        // An outage seen on this attempt is news for the fleet now, not after the retries.
        else if ('retry' in verdict) this.#limiter?.failing(call.action);
        if ('ok' in verdict) return verdict.ok;
        if ('fail' in verdict) {
          const failure = verdict.fail;
          const invalidate = invalidator(this.#credentials);
          if (!refreshed && invalidate && failure instanceof KmsError && failure.kind === 'auth' && STALE_CREDENTIALS.has(failure.kmsCode ?? '')) {
            // The pair was refused (expired early, revoked): one fresh pair, shared with every call refused with this one.
            refreshed = true;
            invalidate(credentials);
            lastError = failure;
            attempt--;
            continue;
          }
          throw failure;
        }
        if ('resign' in verdict) {
          // A stale timestamp (clock skew): one immediate re-sign, then give up.
          if (resigned) throw verdict.resign;
          resigned = true;
          lastError = verdict.resign;
          attempt--;
          continue;
        }
        lastError = verdict.retry;
        if (lastError.kind === 'timeout') timedOut++;
        if (attempt >= limit) {
          if (timedOut === made) throw new KmsError(`${call.action}: no answer after ${attempts(made)} (each timed out at ${timeoutMs} ms)`, { kind: 'timeout', cause: lastError });
          throw lastError;
        }
        const ceiling = Math.min(this.#maxDelayMs, this.#baseDelayMs * 2 ** attempt);
        const wait = Math.random() * ceiling;
        // No room for another attempt: the deadline is what ends the call.
        if (Date.now() + wait >= deadline) throw exceeded();
        this.#emit({ type: 'retry', action: call.action, attempt: attempt + 1, delayMs: wait, ...(lastError.kmsCode ? { errorCode: lastError.kmsCode } : {}) });
        await delay(wait, waits);
      }
    } catch (error) {
      if (error === overdue) throw exceeded();
      throw error;
    } finally {
      clearTimeout(timer);
      linked.dispose();
    }
  }

  async #attempt<T>(call: KmsCall<T>, credentials: TencentCredentials, timeout: number, cancel: AbortSignal): Promise<Verdict<T>> {
    const request = await call.sign(credentials);
    // One deadline bounds the whole attempt, the body read included (ky's own timeout stops at the
    // headers). The abort signal alone is not enough: ky wraps it in a Request, and Node 20's fetch
    // loses a Request's link to its signal after a garbage collection (nodejs/undici#4068,
    // nodejs/node#55428), so an abort can fail to end the fetch (an attempt then waits for the
    // server's late answer, past its deadline). The attempt also races a timer and the call's
    // signal (the caller's cancellation, the call's deadline) and moves on; the request is aborted
    // anyway and its outcome ignored.
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => {
        controller.abort();
        resolve(undefined);
      }, timeout);
    });
    let onCancel: () => void = () => {};
    const cancelled = new Promise<never>((_resolve, reject) => {
      onCancel = () => {
        controller.abort(cancel.reason);
        reject(cancel.reason);
      };
    });
    cancelled.catch(() => {});
    if (cancel.aborted) onCancel();
    else cancel.addEventListener('abort', onCancel, { once: true });
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
        return { fail: new KmsError(`${call.action}: the endpoint answered with a redirect (HTTP ${response.status}), which is not followed`, { kind: 'bad-response' }) };
      }
      return { status: response.status, text: await readCapped(response, MAX_RESPONSE_BYTES) };
    })();
    exchange.catch(() => {}); // an abandoned exchange may still fail later: nobody waits for it
    let outcome: Awaited<typeof exchange> | undefined;
    try {
      outcome = await Promise.race([exchange, timedOut, cancelled]);
    } catch (error) {
      if (cancel.aborted) throw cancel.reason; // the caller's reason, or the call's deadline
      if (error instanceof KmsError) return { fail: error };
      if (controller.signal.aborted) return { retry: new KmsError(`${call.action}: attempt timed out after ${Math.round(timeout)} ms`, { kind: 'timeout' }) };
      return { retry: new KmsError(`${call.action}: network error (${describeNetworkError(error)})`, { kind: 'unreachable', cause: error }) };
    } finally {
      clearTimeout(timer);
      cancel.removeEventListener('abort', onCancel);
    }
    if (outcome === undefined) return { retry: new KmsError(`${call.action}: attempt timed out after ${Math.round(timeout)} ms`, { kind: 'timeout' }) };
    if ('fail' in outcome) return outcome;
    const { status, text } = outcome;
    const httpError = (kind: KmsErrorKind): KmsError => new KmsError(`${call.action}: HTTP ${status} from the KMS`, { kind, kmsCode: `HTTP${status}` });
    if (status >= 500) return { retry: httpError('service') };
    if (status === 401 || status === 403) return { fail: httpError('auth') };
    if (status === 429) return { retry: httpError('throttled') };
    if (status !== 200) return { fail: httpError(status >= 400 ? 'bad-request' : 'bad-response') };
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return { fail: new KmsError(`${call.action}: the KMS answered with a body that is not JSON`, { kind: 'bad-response' }) };
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
      throw new KmsError(`the KMS response exceeds ${cap} bytes`, { kind: 'bad-response' });
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
    throw new KmsError(`GenerateDataKey: the KMS response has no ${names.blob}`, { kind: 'bad-response' });
  }
  return { keyId: stringField(response, names.keyId) ?? requestedKeyId, plaintextKey, ciphertextBlob };
}

/**
 * Decodes the base64 plaintext data key straight into a Uint8Array and checks its length against
 * what was asked for (Tencent's own example returns 16 bytes for AES_256).
 */
export function decodeDataKey(text: unknown, expectedLength: number, action: string): Uint8Array {
  const key = typeof text === 'string' ? base64.decode(text) : undefined;
  if (!key) throw new KmsError(`${action}: the KMS returned a plaintext key that is not base64`, { kind: 'bad-response' });
  if (key.length !== expectedLength) {
    const length = key.length;
    wipe(key);
    throw new KmsError(`${action}: the KMS returned a ${length}-byte data key where ${expectedLength} bytes were asked for`, { kind: 'bad-response' });
  }
  return key;
}
