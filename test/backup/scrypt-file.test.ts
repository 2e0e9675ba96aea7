import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import {
  ScryptDecrypt,
  ScryptEncrypt,
  ScryptFileError,
  SCRYPT_OVERHEAD,
  decryptBuffer,
  encryptBuffer,
  parseHeader,
  prepareEncryption,
} from '../../qubesd/backup/scrypt-file.js';
import { FAST, have, tempDir } from './util.js';

const pass = Buffer.from('correct horse');

t.test('round trip for several sizes', async (t) => {
  for (const size of [0, 1, 15, 16, 17, 4096, 100_001]) {
    const plain = randomBytes(size);
    const enc = await encryptBuffer(pass, plain, FAST);
    t.equal(enc.length, size + SCRYPT_OVERHEAD, `size ${size}: overhead`);
    t.same(parseHeader(enc), { ...FAST, salt: enc.subarray(16, 48) }, 'header fields');
    t.ok((await decryptBuffer(pass, enc)).equals(plain), `size ${size}: decrypts to the same bytes`);
  }
});

t.test('streaming transforms match', async (t) => {
  const plain = randomBytes(300_000);
  const key = await prepareEncryption(pass, FAST);
  const parts: Buffer[] = [];
  const pieces = [plain.subarray(0, 7), plain.subarray(7, 200_000), plain.subarray(200_000)];
  for await (const p of Readable.from(pieces).pipe(new ScryptEncrypt(key))) parts.push(p as Buffer);
  const enc = Buffer.concat(parts);
  const out: Buffer[] = [];
  for await (const p of Readable.from([enc.subarray(0, 50), enc.subarray(50)]).pipe(new ScryptDecrypt(pass, 1 << 20))) out.push(p as Buffer);
  t.ok(Buffer.concat(out).equals(plain));
  const tooBig = Readable.from([enc]).pipe(new ScryptDecrypt(pass, 1000));
  await t.rejects(
    async () => {
      for await (const _ of tooBig) {
        /* drain */
      }
    },
    { code: 'too-costly' },
  );
});

t.test('failures are typed', async (t) => {
  const enc = await encryptBuffer(pass, Buffer.from('some secret data'), FAST);
  await t.rejects(decryptBuffer(Buffer.from('wrong'), enc), { code: 'bad-passphrase' });
  const body = Buffer.from(enc);
  body[100]! ^= 1;
  await t.rejects(decryptBuffer(pass, body), { code: 'corrupt' });
  const trailer = Buffer.from(enc);
  trailer[enc.length - 1]! ^= 1;
  await t.rejects(decryptBuffer(pass, trailer), { code: 'corrupt' });
  const salt = Buffer.from(enc);
  salt[20]! ^= 1;
  await t.rejects(decryptBuffer(pass, salt), { code: 'corrupt' }, 'header checksum covers the salt');
  await t.rejects(decryptBuffer(pass, enc.subarray(0, enc.length - 1)), { code: 'corrupt' });
  await t.rejects(decryptBuffer(pass, enc.subarray(0, 60)), { code: 'truncated' });
  await t.rejects(
    decryptBuffer(
      pass,
      Buffer.from('not scrypt at all, just some text here....................................................................................................'),
    ),
    { code: 'not-scrypt' },
  );
  const costly = await encryptBuffer(pass, Buffer.from('x'), FAST);
  t.throws(() => parseHeader(costly, { maxMemory: 1024, maxWork: 2 ** 30 }), ScryptFileError);
});

t.test(
  'interoperates with the scrypt command line tool',
  { skip: have('scrypt') ? false : 'scrypt tool not installed (apt-get install scrypt)' },
  async (t) => {
    const dir = tempDir(t);
    const plain = randomBytes(200_000);
    // ours -> scrypt dec
    writeFileSync(join(dir, 'ours.enc'), await encryptBuffer(pass, plain, FAST));
    const dec = spawnSync('scrypt', ['dec', '-P', join(dir, 'ours.enc'), join(dir, 'ours.dec')], { input: pass.toString() + '\n' });
    t.equal(dec.status, 0, `scrypt dec accepts our file: ${dec.stderr}`);
    t.ok(readFileSync(join(dir, 'ours.dec')).equals(plain), 'scrypt dec yields the plaintext');
    // scrypt enc -> ours
    writeFileSync(join(dir, 'plain'), plain);
    const enc = spawnSync('scrypt', ['enc', '-P', '--logN', '10', '-r', '8', '-p', '1', join(dir, 'plain'), join(dir, 'theirs.enc')], {
      input: pass.toString() + '\n',
    });
    t.equal(enc.status, 0, `scrypt enc: ${enc.stderr}`);
    const theirs = readFileSync(join(dir, 'theirs.enc'));
    t.match(parseHeader(theirs), { logN: 10, r: 8, p: 1 });
    t.ok((await decryptBuffer(pass, theirs)).equals(plain), 'we decrypt what scrypt enc wrote');
    // and scrypt dec rejects a tampered file of ours
    const bad = readFileSync(join(dir, 'ours.enc'));
    bad[1000]! ^= 0x40;
    writeFileSync(join(dir, 'bad.enc'), bad);
    const rej = spawnSync('scrypt', ['dec', '-P', join(dir, 'bad.enc'), join(dir, 'bad.dec')], { input: pass.toString() + '\n' });
    t.not(rej.status, 0, 'scrypt dec rejects a tampered file');
  },
);
