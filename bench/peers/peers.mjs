// Peer libraries, loaded from bench/peers/node_modules (never dependencies of kms-envelope).
// Plain JavaScript so that Node resolves these imports from this folder.
import { randomBytes } from 'node:crypto';
import {
  AlgorithmSuiteIdentifier,
  buildClient,
  CommitmentPolicy,
  RawAesKeyringNode,
  RawAesWrappingSuiteIdentifier,
} from '@aws-crypto/client-node';
import { Decrypter, Encrypter, generateX25519Identity, identityToRecipient } from 'age-encryption';

/** @typedef {{ name: string, seal: (p: Uint8Array) => Promise<Uint8Array>, open: (s: Uint8Array) => Promise<Uint8Array> }} Peer */

/** @returns {Promise<Peer[]>} */
export async function loadPeers() {
  const { encrypt, decrypt } = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);
  const keyring = new RawAesKeyringNode({
    keyName: 'bench',
    keyNamespace: 'kms-envelope',
    unencryptedMasterKey: new Uint8Array(randomBytes(32)),
    wrappingSuite: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
  });
  const encryptionContext = { table: 'users', row: '42' };
  const aws = (name, suiteId) => ({
    name,
    seal: async (plaintext) => (await encrypt(keyring, plaintext, { encryptionContext, ...(suiteId ? { suiteId } : {}) })).result,
    open: async (sealed) => (await decrypt(keyring, sealed)).plaintext,
  });
  const identity = await generateX25519Identity();
  const recipient = await identityToRecipient(identity);
  const age = {
    name: 'age-encryption (X25519)',
    seal: async (plaintext) => {
      const e = new Encrypter();
      e.addRecipient(recipient);
      return e.encrypt(plaintext);
    },
    open: async (sealed) => {
      const d = new Decrypter();
      d.addIdentity(identity);
      return d.decrypt(sealed);
    },
  };
  return [
    aws('AWS ESDK, committing suite without signature', AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY),
    aws('AWS ESDK, default suite (ECDSA P-384 signature)', undefined),
    age,
  ];
}
