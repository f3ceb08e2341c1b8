/**
 * Temporary credentials, as Tencent hands them out: STS AssumeRole (API 3.0, service `sts`,
 * version 2018-08-13) and a CVM instance role through the metadata endpoint
 * (`/latest/meta-data/cam/security-credentials/`, unauthenticated, as on a CVM). Each issued pair
 * has a token and an expiry; the verifier refuses it once expired (auth.ts).
 */
import { randomBytes } from 'node:crypto';
import { err } from './api.ts';
import { generatedCredentials } from './auth.ts';
import type { EmulatorCredentials } from './types.ts';

export const STS_VERSION = '2018-08-13';
export const METADATA_PREFIX = '/latest/meta-data/cam/security-credentials/';
/** AssumeRole's DurationSeconds: default 7200, at most 43200 (Tencent's STS documentation). */
const DEFAULT_DURATION = 7200;
const MAX_DURATION = 43200;

interface Issued {
  TmpSecretId: string;
  TmpSecretKey: string;
  Token: string;
  ExpiredTime: number;
  Expiration: string;
}

export class TemporaryCredentials {
  /** The verifier's list: issued pairs are added to it, so they sign like any other. */
  readonly #accepted: EmulatorCredentials[];
  readonly #now: () => number;

  constructor(accepted: EmulatorCredentials[], now: () => number) {
    this.#accepted = accepted;
    this.#now = now;
  }

  issue(ttlSeconds: number): Issued {
    const { secretId, secretKey } = generatedCredentials();
    const token = randomBytes(48).toString('base64url');
    const expiresAt = this.#now() + ttlSeconds;
    // Pairs long expired are dropped, so a long run does not grow the list without end.
    const keepAfter = this.#now() - 3600;
    for (let i = this.#accepted.length - 1; i >= 0; i--) {
      const e = this.#accepted[i]!.expiresAt;
      if (e !== undefined && e < keepAfter) this.#accepted.splice(i, 1);
    }
    this.#accepted.push({ secretId, secretKey, token, expiresAt });
    return { TmpSecretId: secretId, TmpSecretKey: secretKey, Token: token, ExpiredTime: expiresAt, Expiration: new Date(expiresAt * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z') };
  }

  /** Every temporary pair issued so far expires now (tests of a credential that expires mid-run). */
  expireAll(): void {
    const now = this.#now();
    for (const c of this.#accepted) if (c.expiresAt !== undefined) c.expiresAt = Math.min(c.expiresAt, now);
  }

  /** STS AssumeRole: RoleArn and RoleSessionName required, DurationSeconds 1 to 43200. */
  assumeRole(p: (name: string) => string | undefined): Record<string, unknown> {
    const roleArn = p('RoleArn');
    const sessionName = p('RoleSessionName');
    if (!roleArn) throw err.missing('RoleArn');
    if (!/^qcs::cam::uin\/\d+:role(Name)?\/[\w+=,.@-]+$/.test(roleArn)) throw err.invalid('RoleArn');
    if (!sessionName) throw err.missing('RoleSessionName');
    if (!/^[\w+=,.@-]{2,128}$/.test(sessionName)) throw err.invalid('RoleSessionName');
    const given = p('DurationSeconds');
    const duration = given === undefined || given === '' ? DEFAULT_DURATION : Number(given);
    if (!Number.isInteger(duration) || duration < 1 || duration > MAX_DURATION) throw err.invalid('DurationSeconds');
    const { TmpSecretId, TmpSecretKey, Token, ExpiredTime, Expiration } = this.issue(duration);
    return { Credentials: { Token, TmpSecretId, TmpSecretKey }, ExpiredTime, Expiration };
  }
}

/** The metadata endpoint's answer for a path under METADATA_PREFIX: status and body. */
export function metadataAnswer(issuer: TemporaryCredentials, role: { name: string; ttlSeconds?: number } | undefined, rest: string): { status: number; body: string; type: string } {
  if (!role) return { status: 404, body: 'Not Found', type: 'text/plain' };
  if (rest === '') return { status: 200, body: role.name, type: 'text/plain' };
  if (rest !== role.name) return { status: 404, body: 'Not Found', type: 'text/plain' };
  const issued = issuer.issue(role.ttlSeconds ?? DEFAULT_DURATION);
  return { status: 200, body: JSON.stringify({ ...issued, Code: 'Success' }), type: 'application/json' };
}
