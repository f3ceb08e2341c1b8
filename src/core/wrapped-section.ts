/**
 * Rewrapping at the byte level (FORMAT.md §10.5): a message's wrapped-key section is the only part
 * a rewrap changes. It lies after the authenticated header bytes (FORMAT.md §4), so the payload,
 * its commitment and the authenticated bytes stay as they are, byte for byte; the new wrapped keys
 * wrap the same data key.
 */
import { HeaderMalformedError } from './errors.ts';
import { encodeWrappedKey, encodeWrappedKeys, type ParsedHeader, VERSION, type WrappedKey } from './header.ts';

/**
 * The new header of a message: its authenticated bytes as received, then `wrapped` encoded as the
 * message's version encodes its wrapped-key section (version 1: exactly one; version 2: the count
 * and 1 to 8). The one place a rewrap touches the bytes: adding or removing wrapped keys extends
 * the list given here, nothing else.
 */
export function replaceWrappedKeys(header: ParsedHeader, wrapped: readonly WrappedKey[]): Uint8Array {
  if (header.keySource !== 'kms') {
    throw new HeaderMalformedError('a message sealed under a key hierarchy has no wrapped-key section to replace');
  }
  let section: Uint8Array;
  if (header.version === VERSION) {
    if (wrapped.length !== 1) throw new RangeError(`a version-1 message carries exactly one wrapped key, got ${wrapped.length}`);
    section = encodeWrappedKey(wrapped[0]!);
  } else {
    section = encodeWrappedKeys(wrapped);
  }
  const out = new Uint8Array(header.authenticated.length + section.length);
  out.set(header.authenticated);
  out.set(section, header.authenticated.length);
  return out;
}
