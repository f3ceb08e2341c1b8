/**
 * GenerateDataKey and Decrypt with `EncryptionPublicKey`: the emulator returns `Plaintext` as the
 * base64 of the data key encrypted under the caller's public key (reference/tencent-kms.md §2.5).
 * The RSA forms are implemented (PKCS#1 v1.5 too: encrypting with it is safe, only decrypting is
 * refused by Node); SM2 is not, and is answered with UnsupportedOperation.
 */
import { constants, createPublicKey, type KeyObject, publicEncrypt } from 'node:crypto';
import { ApiError, err } from './api.ts';

/** A request parameter by its API 3.0 name (kms.ts's Lookup). */
type Lookup = (name: string) => string | undefined;

const RSA = new Set(['RSAES_PKCS1_V1_5', 'RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256']);
const SM2 = new Set(['SM2', 'SM2_C1C3C2_ASN1']);

/** Tencent takes 2048-bit RSA or SM2 public keys (reference §2.5). */
function publicKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch {
    throw err.invalid('EncryptionPublicKey');
  }
  const type = key.asymmetricKeyType;
  if (type === 'rsa' && key.asymmetricKeyDetails?.modulusLength === 2048) return key;
  if ((type as string) === 'sm2' || (type === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'SM2')) return key;
  throw err.invalid('EncryptionPublicKey');
}

/**
 * The parameters checked before the action runs, so that a bad key or algorithm costs no data
 * key: undefined when no public key was sent.
 */
export function responseKeyOf(p: Lookup): { key: KeyObject; algorithm: string } | undefined {
  const pem = p('EncryptionPublicKey');
  const algorithm = p('EncryptionAlgorithm') || 'SM2';
  if (pem === undefined || pem === '') {
    if (p('EncryptionAlgorithm')) throw err.missing('EncryptionPublicKey');
    return undefined;
  }
  if (!RSA.has(algorithm) && !SM2.has(algorithm)) throw err.invalid('EncryptionAlgorithm');
  const key = publicKey(pem);
  const rsaKey = key.asymmetricKeyType === 'rsa';
  if (rsaKey !== RSA.has(algorithm)) throw err.invalid('EncryptionAlgorithm');
  if (SM2.has(algorithm)) throw new ApiError('UnsupportedOperation', 4000, '(10000) the emulator does not implement SM2 encryption of Plaintext');
  return { key, algorithm };
}

/** `Plaintext` for the answer: base64 of the data key, or of its encryption under the public key. */
export function plaintextField(plaintext: Buffer, responseKey: { key: KeyObject; algorithm: string } | undefined): string {
  if (!responseKey) return plaintext.toString('base64');
  const { key, algorithm } = responseKey;
  const padding = algorithm === 'RSAES_PKCS1_V1_5' ? constants.RSA_PKCS1_PADDING : constants.RSA_PKCS1_OAEP_PADDING;
  const oaepHash = algorithm === 'RSAES_OAEP_SHA_1' ? 'sha1' : 'sha256';
  return publicEncrypt({ key, padding, oaepHash }, plaintext).toString('base64');
}
