/** Known-answer tests: every signature vector of reference/tencent-kms.md §1.4 and §2.4. */
import { describe, expect, it } from 'vitest';
import { querySignature, queryStringToSign, tc3Authorization, tc3Signature, tc3StringToSign, utcDate } from '../../src/kms/tencent-sign.ts';

const ID = 'AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE';
const KEY = 'Gu5t9xGARNpq86cd98joQYCN3EXAMPLE';

describe('v1/v2 query signing (§1.4)', () => {
  const cvm = {
    Action: 'DescribeInstances',
    'InstanceIds.0': 'ins-09dx96dg',
    Limit: '20',
    Nonce: '11886',
    Offset: '0',
    Region: 'ap-guangzhou',
    SecretId: ID,
    Timestamp: '1465185768',
    Version: '2017-03-12',
  };
  const cvmString =
    'GETcvm.tencentcloudapi.com/?Action=DescribeInstances&InstanceIds.0=ins-09dx96dg&Limit=20&Nonce=11886&Offset=0&Region=ap-guangzhou&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE&Timestamp=1465185768&Version=2017-03-12';

  it('V1-DOC: string to sign and HmacSHA1/HmacSHA256', () => {
    expect(queryStringToSign('GET', 'cvm.tencentcloudapi.com', '/', cvm)).toBe(cvmString);
    expect(querySignature(KEY, cvmString, 'HmacSHA1')).toBe('EliP9YW3pW28FpsEdkXt/+WcGeI=');
    expect(querySignature(KEY, cvmString, 'HmacSHA256')).toBe('bR/zQ3QqOmcEYeRv71IzG/NxfisUDgy9cqRMQC+UB5g=');
  });

  it('V1-DOC-MASKED', () => {
    const masked = { ...cvm, SecretId: 'AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******' };
    const s = queryStringToSign('GET', 'cvm.tencentcloudapi.com', '/', masked);
    expect(querySignature('Gu5t9xGARNpq86cd98joQYCN3*******', s, 'HmacSHA1')).toBe('zmmjn35mikh6pM3V7sUEuX4wyYM=');
  });

  const common = { Nonce: '11886', SecretId: ID, Timestamp: '1465185768' };
  const host = 'kms-bj.api.tencentyun.com';
  const path = '/v2/index.php';
  const gdkA = { ...common, Action: 'GenerateDataKey', Region: 'gz', RequestClient: 'SDK_NODEJS_0.2.1', encryptionContext: '{"bucket":"b1"}', keyId: 'kms-345sdfk', keySpec: 'AES_256' };

  it.each([
    ['A', 'GET', gdkA, 'HmacSHA1', 'z/xtdGoSZ+an7GbqWBaFveBmCOM='],
    ['B', 'POST', gdkA, 'HmacSHA1', 'OGq59TlMYaOEe4qMqmYc1bvMXLE='],
    ['C', 'POST', { ...gdkA, SignatureMethod: 'HmacSHA256' }, 'HmacSHA256', 'dDis4xF8J8IATgO6Us12F7SU96QQ9Q0jaxkN5l/5FMo='],
    ['D', 'GET', { ...common, Action: 'GenerateDataKey', Region: 'bj', keyId: 'kms-345sdfk', keySpec: 'AES_256' }, 'HmacSHA1', 'fC3uQBLArrdw/Tk1vagyMeIoApE='],
    ['E', 'GET', { ...common, Action: 'GenerateDataKey', Region: 'bj', SignatureMethod: 'HmacSHA256', keyId: 'kms-345sdfk', keySpec: 'AES_256' }, 'HmacSHA256', 'XgrRF6idFU+sXd/xaLFdMFRb/w7QT1AT6Ej69umE34s='],
    ['F', 'POST', { ...common, Action: 'Decrypt', Region: 'bj', ciphertextBlob: 'abc==-k-def==-k-ghi', encryptionContext: '{"k":"v"}' }, 'HmacSHA1', 'I1/LEaxBQFm5vatPOdCw1D/jkYA='],
  ] as const)('V2-KMS %s', (_name, method, params, sigMethod, expected) => {
    expect(querySignature(KEY, queryStringToSign(method, host, path, params), sigMethod)).toBe(expected);
  });

  it('D: the documented string to sign', () => {
    const d = { ...common, Action: 'GenerateDataKey', Region: 'bj', keyId: 'kms-345sdfk', keySpec: 'AES_256' };
    expect(queryStringToSign('GET', host, path, d)).toBe(
      'GETkms-bj.api.tencentyun.com/v2/index.php?Action=GenerateDataKey&Nonce=11886&Region=bj&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE&Timestamp=1465185768&keyId=kms-345sdfk&keySpec=AES_256',
    );
  });

  it('captured qcloudapi-sdk request (§1.7), host with port', () => {
    const s = queryStringToSign('POST', '127.0.0.1:18080', path, gdkA);
    expect(s.startsWith('POST127.0.0.1:18080/v2/index.php?Action=GenerateDataKey&Nonce=11886&Region=gz')).toBe(true);
    expect(querySignature(KEY, s, 'HmacSHA1')).toBe('SdEZlBv/xtsrA7/6e+rArAJl324=');
    const g = queryStringToSign('GET', '127.0.0.1:18080', path, { ...gdkA, SignatureMethod: 'HmacSHA256' });
    expect(querySignature(KEY, g, 'HmacSHA256')).toBe('nvIOnPlX/MgDaHMjOqqonVAar01+YJQbmTYBP+fjUUU=');
  });

  it('captured Node SDK v1 HmacSHA256 request (§3.3 C), non-ASCII value', () => {
    const params = {
      KeyId: '23e80852-1e38-11e9-b129-5cb9019b4b01',
      KeySpec: 'AES_256',
      EncryptionContext: '{"bucket":"b1","obj":"k/ä"}',
      Action: 'GenerateDataKey',
      RequestClient: 'SDK_NODEJS_4.1.313',
      Nonce: '24247',
      Timestamp: '1795815461',
      Version: '2019-01-18',
      SecretId: ID,
      Region: 'ap-guangzhou',
      SignatureMethod: 'HmacSHA256',
    };
    const s = queryStringToSign('POST', '127.0.0.1:18080', '/', params);
    expect(s).toBe(
      'POST127.0.0.1:18080/?Action=GenerateDataKey&EncryptionContext={"bucket":"b1","obj":"k/ä"}&KeyId=23e80852-1e38-11e9-b129-5cb9019b4b01&KeySpec=AES_256&Nonce=24247&Region=ap-guangzhou&RequestClient=SDK_NODEJS_4.1.313&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE&SignatureMethod=HmacSHA256&Timestamp=1795815461&Version=2019-01-18',
    );
    expect(querySignature(KEY, s, 'HmacSHA256')).toBe('GtLA30+DJAByJRuS5iIidyAZ/OLEKUrR9iNBYGW+vWI=');
  });

  it('Node SDK unit test vectors (S10)', () => {
    expect(querySignature('test-secret-key', 'test-sign-string', 'HmacSHA1')).toBe('XjwGF9U5zdo93uMrX2b1ZDwoFOo=');
    expect(querySignature('test-secret-key', 'test-sign-string', 'HmacSHA256')).toBe('6c+oFbRDL8wKcVPPwa4KtGMOzMuJTQDwV+8tMMPf7oM=');
  });

  it('sorts by byte order: uppercase before lowercase, InstanceIds.12 before InstanceIds.2', () => {
    expect(queryStringToSign('GET', 'h', '/', { keyId: '1', Timestamp: '2', encryptionContext: '3', 'InstanceIds.2': 'b', 'InstanceIds.12': 'a' })).toBe(
      'GETh/?InstanceIds.12=a&InstanceIds.2=b&Timestamp=2&encryptionContext=3&keyId=1',
    );
  });
});

describe('TC3-HMAC-SHA256 (§2.4)', () => {
  const payload = '{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}';
  const base = { method: 'POST', host: 'cvm.tencentcloudapi.com', contentType: 'application/json; charset=utf-8', payload, timestamp: 1551113065, service: 'cvm' } as const;

  it('T1: canonical request, hashed request and signature', () => {
    const parts = tc3StringToSign(base);
    expect(parts.canonicalRequest).toBe(
      'POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\ncontent-type;host\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064',
    );
    expect(parts.stringToSign.split('\n')[3]).toBe('5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031');
    expect(utcDate(1551113065)).toBe('2019-02-25');
    expect(tc3Signature(KEY, '2019-02-25', 'cvm', parts.stringToSign)).toBe('72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168');
  });

  it('T2: masked keys', () => {
    const auth = tc3Authorization('AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******', 'Gu5t9xGARNpq86cd98joQYCN3*******', base);
    expect(auth).toContain('Signature=2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c');
  });

  it('T3: x-tc-action signed, fully masked keys', () => {
    const request = { ...base, extraHeaders: { 'x-tc-action': 'DescribeInstances' } };
    const parts = tc3StringToSign(request);
    expect(parts.stringToSign.split('\n')[3]).toBe('7019a55be8395899b900fb5564e4200d984910f34794a27cb3fb7d10ff6a1e84');
    expect(tc3Signature('*'.repeat(32), '2019-02-25', 'cvm', parts.stringToSign)).toBe('10b1a37a7301a02ca19a647ad722d5e43b4b3cff309d421d85b46093f6ab6c4f');
    expect(tc3Signature(KEY, '2019-02-25', 'cvm', parts.stringToSign)).toBe('644be983de9a8a3f00db8eadaba61467c3b429e2215758ba897b738ca469fd26');
  });

  it('T4: KMS GenerateDataKey', () => {
    const request = { method: 'POST', host: 'kms.tencentcloudapi.com', contentType: 'application/json', payload: '{"KeyId":"23e80852-1e38-11e9-b129-5cb9019b4b01","KeySpec":"AES_256"}', timestamp: 1551113065, service: 'kms' } as const;
    const parts = tc3StringToSign(request);
    expect(parts.canonicalRequest.endsWith('bd52391fe77667d1436de29c742309c90151dac77a4f307ac76d65cfe21bfc44')).toBe(true);
    expect(parts.stringToSign.split('\n')[3]).toBe('f05284b3ccf4ff885ceaa74d17a7292ce0d5f8c0c307da31c55e702ec298aa6f');
    expect(tc3Authorization(ID, KEY, request)).toBe(
      `TC3-HMAC-SHA256 Credential=${ID}/2019-02-25/kms/tc3_request, SignedHeaders=content-type;host, Signature=751b0464cd063d98471ede9f71be74016ebba946b3b1652369fb382324000a26`,
    );
  });

  it('T5: KMS Decrypt with x-tc-action', () => {
    const request = {
      method: 'POST',
      host: 'kms.tencentcloudapi.com',
      contentType: 'application/json; charset=utf-8',
      payload: '{"CiphertextBlob":"abc==-k-def==-k-ghi","EncryptionContext":"{\\"k\\":\\"v\\"}"}',
      timestamp: 1551113065,
      service: 'kms',
      extraHeaders: { 'x-tc-action': 'Decrypt' },
    } as const;
    expect(tc3Authorization(ID, KEY, request)).toContain('Signature=19bf57e4c6944b22ed7ed877bafb31f3a7c4676b855b284ae1b115d1b1382961');
  });

  it('T6: Node SDK unit tests, POST and GET', () => {
    const post = { method: 'POST', host: 'cvm.tencentcloudapi.com', contentType: 'application/json', payload: '{"Action":"DescribeInstances","Version":"2017-03-12"}', timestamp: 1640995200, service: 'cvm' } as const;
    expect(tc3Authorization('test-secret-id', 'test-secret-key', post)).toContain('Signature=96473b50fe407833672a5d6d067238d88bb44c8abcc39ef83baa3132afbfadd3');
    const get = { ...post, method: 'GET', contentType: 'application/x-www-form-urlencoded', payload: '' } as const;
    expect(tc3Authorization('test-secret-id', 'test-secret-key', get)).toContain('Signature=79ca50e0cf95a92f1fdbc371ae388fd2a541db5d5f6dd4e1a9f750db8bdd80ae');
  });

  it('captured SDK request A (§3.3): scope service "127", host without port', () => {
    const request = {
      method: 'POST',
      host: '127.0.0.1',
      contentType: 'application/json',
      payload: '{"KeyId":"23e80852-1e38-11e9-b129-5cb9019b4b01","KeySpec":"AES_256","EncryptionContext":"{\\"bucket\\":\\"b1\\",\\"obj\\":\\"k/ä\\"}"}',
      timestamp: 1795815459,
      service: '127',
    } as const;
    expect(tc3StringToSign(request).canonicalRequest).toBe(
      'POST\n/\n\ncontent-type:application/json\nhost:127.0.0.1\n\ncontent-type;host\n285dffa44d53b44d8a7b87c7f596298fc1468ec9f0763086f6b1e289362d1951',
    );
    expect(tc3Authorization(ID, KEY, request)).toBe(
      `TC3-HMAC-SHA256 Credential=${ID}/2026-11-27/127/tc3_request, SignedHeaders=content-type;host, Signature=71ecd5f6cbde7dd232276cec48ba591d910d56b19d34a4f8754c9f22c37ebe06`,
    );
  });
});
