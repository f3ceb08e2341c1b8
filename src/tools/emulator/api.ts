/**
 * What the two wire protocols share: the error every handler may throw (one code per API) and the
 * small helpers for headers and field names.
 */
import type { IncomingMessage } from 'node:http';

/** Legacy v2 at /v2/index.php, API 3.0 at /. */
export type Api = 'v2' | 'v3';

export type Params = Record<string, string>;

/** Thrown by handlers: becomes the API's own error shape. */
export class ApiError extends Error {
  readonly v3Code: string;
  readonly v2Code: number;
  constructor(v3Code: string, v2Code: number, message: string) {
    super(message);
    this.v3Code = v3Code;
    this.v2Code = v2Code;
  }
}

export const err = {
  missing: (name: string) => new ApiError('MissingParameter', 4000, `(10100) missing parameter ${name}`),
  // Tencent's gateway checks each field's JSON type against the API's model before the action runs.
  type: (name: string, expected: 'String' | 'Integer') => new ApiError('InvalidParameter', 4000, `(10000) the value type of parameter ${name} is invalid: expected ${expected}`),
  invalid: (name: string) => new ApiError('InvalidParameterValue', 4000, `(10110) invalid value of ${name}`),
  notFound: () => new ApiError('ResourceUnavailable.CmkNotFound', 4530, '(10630) key is not existed'),
  disabled: () => new ApiError('ResourceUnavailable.CmkDisabled', 4550, '(10650) key is disabled'),
  // The legacy error list (reference/tencent-kms.md §1.6) has no codes for these states: 4000 is its class for a refused parameter.
  shouldBeDisabled: () => new ApiError('ResourceUnavailable.CmkShouldBeDisabled', 4000, '(10650) key must be disabled before its deletion is scheduled'),
  notPendingDelete: () => new ApiError('ResourceUnavailable.CmkNotPendingDelete', 4000, '(10650) key is not pending deletion'),
  stateNotSupport: () => new ApiError('ResourceUnavailable.CmkStateNotSupport', 4000, '(10650) the operation is not supported in the key state'),
  pendingWindow: () => new ApiError('InvalidParameter.InvalidPendingWindowInDays', 4000, '(10110) PendingWindowInDays must be 7 to 30'),
  ciphertext: () => new ApiError('InvalidParameterValue.InvalidCiphertext', 4000, '(10400) ciphertext or encryption context is invalid'),
  action: (a: string) => new ApiError('InvalidAction', 4000, `(10010) unknown action ${a}`),
  signature: () => new ApiError('AuthFailure.SignatureFailure', 4100, '(10030) authentication failed'),
  expired: () => new ApiError('AuthFailure.SignatureExpire', 4100, '(10030) signature expired: timestamp too far from server time'),
  secretId: () => new ApiError('AuthFailure.SecretIdNotFound', 4100, '(10270) secretId does not exist'),
  token: () => new ApiError('AuthFailure.TokenFailure', 4100, '(10030) token invalid'),
  // The reference names no separate code for an expired temporary credential: TokenFailure, with its own message.
  tokenExpired: () => new ApiError('AuthFailure.TokenFailure', 4100, '(10030) token expired'),
  throttle: () => new ApiError('RequestLimitExceeded', 4420, '(10250) request limit exceeded'),
  internal: () => new ApiError('InternalError', 6000, '(10050) internal error'),
  version: () => new ApiError('NoSuchVersion', 4000, '(10010) unsupported version'),
  // The legacy error list has no duplicate-alias code; 4000 is its class for an invalid parameter value.
  aliasExists: () => new ApiError('InvalidParameterValue.AliasAlreadyExists', 4000, '(10110) alias already exists'),
  // The legacy error list has no size code; the reference's qcloudapi-sdk tests expect 4100 for an over-long request.
  tooLarge: () => new ApiError('RequestSizeLimitExceeded', 4100, '(10000) request body too large'),
  notJson: () => new ApiError('InvalidParameter', 4000, '(10000) request body is not a JSON object in UTF-8'),
  // Tencent's common codes: only GET and POST are served (UnsupportedProtocol); the legacy API's 4000 covers "unsupported method".
  method: (m: string) => new ApiError('UnsupportedProtocol', 4000, `(10000) unsupported method ${m}: only GET and POST`),
  authorization: () => new ApiError('AuthFailure.InvalidAuthorization', 4100, '(10030) the Authorization header is not a TC3-HMAC-SHA256 one'),
};

/** One header's value; repeated headers joined as Node would for most. */
export function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name.toLowerCase()];
  return Array.isArray(v) ? v.join(',') : v;
}

/** API 3.0 names fields in PascalCase, the legacy API the same in lower camelCase. */
export function lowerKeys(obj: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k[0]!.toLowerCase() + k.slice(1), v]));
}
