/**
 * The SM4 suite as a value (suite 03, FORMAT.md §13): SM4-GCM (RFC 8998) with HKDF-SM3, for
 * applications that must use the Chinese commercial algorithms. Passed to createEnvelope, it is
 * the only way its code enters a bundle.
 */
import { SM4_GCM_SM3, type Suite } from '../core/suites.ts';
import { smBackendOf } from './backend.ts';

export const sm4: Suite = Object.freeze({ ...SM4_GCM_SM3, primitives: smBackendOf, workerCipher: undefined });
