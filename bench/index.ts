import { benchHkdf } from './hkdf.ts';
import { benchKmsEconomy } from './kms-economy.ts';
import { benchKmsRtt } from './kms-rtt.ts';
import { benchSealOpen } from './seal-open.ts';
import { benchStream } from './stream.ts';

console.log(`# kms-envelope benchmarks\n\nNode ${process.version}, ${process.platform}/${process.arch}, ${new Date().toISOString().slice(0, 10)}`);
await benchHkdf();
await benchSealOpen();
await benchKmsRtt();
await benchKmsEconomy();
await benchStream();
