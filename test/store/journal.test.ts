import t from 'tap';
import { crc32, encodeRecord, readRecords, JournalCorruption, HEADER_SIZE } from '../../qubesd/store/journal.js';

const rec = (s: string) => encodeRecord(Buffer.from(s));

t.test('crc32 matches the IEEE check value', async (t) => {
  t.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
  t.equal(crc32(Buffer.from('6789'), crc32(Buffer.from('12345'))), 0xcbf43926, 'can continue over pieces');
});

t.test('records read back in order', async (t) => {
  const buf = Buffer.concat([rec('[1]'), rec('[2,3]'), rec('[]')]);
  const r = readRecords(buf);
  t.same(r.payloads.map(String), ['[1]', '[2,3]', '[]']);
  t.equal(r.tornBytes, 0);
  t.same(readRecords(Buffer.alloc(0)), { payloads: [], tornBytes: 0 });
});

t.test('a torn last record is ignored, however it was cut', async (t) => {
  const good = Buffer.concat([rec('["a"]'), rec('["b"]')]);
  const last = rec('["never acknowledged"]');
  for (let cut = 1; cut < last.length; cut++) {
    const r = readRecords(Buffer.concat([good, last.subarray(0, cut)]));
    t.same(r.payloads.map(String), ['["a"]', '["b"]'], `cut at ${cut}`);
    t.equal(r.tornBytes, cut);
  }
  const zeros = readRecords(Buffer.concat([good, Buffer.alloc(4096)]));
  t.equal(zeros.payloads.length, 2, 'a zero-filled tail (file extended, data not written) is a torn tail');
  const garbled = Buffer.from(last);
  garbled[HEADER_SIZE + 3] ^= 0xff;
  t.equal(readRecords(Buffer.concat([good, garbled])).payloads.length, 2, 'a complete but garbled last record is torn too');
});

t.test('damage followed by valid records is refused', async (t) => {
  const parts = [rec('["a"]'), rec('["b"]'), rec('["c"]')];
  const buf = Buffer.concat(parts);
  const middle = parts[0]!.length + HEADER_SIZE + 2;
  for (const [what, at] of [
    ['payload', middle],
    ['length', parts[0]!.length + 5],
    ['magic', parts[0]!.length],
  ] as const) {
    const bad = Buffer.from(buf);
    bad[at] ^= 0x55;
    t.throws(() => readRecords(bad), JournalCorruption, `damaged ${what}`);
    try {
      readRecords(bad);
    } catch (e) {
      t.match((e as Error).message, /record 2 at byte \d+ is damaged/);
    }
  }
});
