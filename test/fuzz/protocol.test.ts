// Properties of the wire protocol: whatever bytes a client sends, the request
// parser either returns a request whose parts are what the bytes said or
// refuses with FramingError; whatever strings a handler produces, every reply
// frame has exactly the fields its kind has.
import t from 'tap';
import fc from 'fast-check';
import { encodeRequest, FramingError, parseRequest } from '../../lib/protocol/request.js';
import { eventFrame, exceptionFrame, okFrame, parseReply } from '../../lib/protocol/reply.js';
import { holds } from './fc.js';

const bytes = (max = 300) => fc.uint8Array({ maxLength: max }).map((a) => Buffer.from(a));
/** Header-ish bytes: mostly printable with spaces, NULs and '+' likely. */
const headerish = fc
  .array(fc.oneof(fc.constantFrom(0x00, 0x20, 0x2b, 0x0a, 0xff, 0xc3), fc.integer({ min: 0x21, max: 0x7e })), { maxLength: 60 })
  .map((a) => Buffer.from(a));
const requestBytes = fc.oneof(
  bytes(),
  headerish,
  fc
    .tuple(
      fc.constantFrom('admin.vm.List+ dom0 name dom0', 'admin.vm.feature.Set+f dom0 name work', 'm dom0 keyword adminvm', 'm+a s name d'),
      fc.nat(),
      headerish,
      bytes(40),
    )
    .map(([h, at, mut, tail]) => {
      const b = Buffer.from(h, 'latin1');
      const i = at % (b.length + 1);
      return Buffer.concat([b.subarray(0, i), mut, b.subarray(i), Buffer.from([0]), tail]);
    }),
);
/** A header field: no space, no NUL (what encodeRequest can carry). */
const field = (minLength = 0) => fc.string({ unit: 'binary', minLength, maxLength: 20 }).map((s) => s.replace(/[ \0]/g, '_'));

t.test('parseRequest: any bytes give a consistent request or a FramingError', async (t) => {
  await holds(
    t,
    'never another exception; parts agree with the bytes',
    fc.property(requestBytes, (data) => {
      let r;
      try {
        r = parseRequest(data);
      } catch (e) {
        return e instanceof FramingError;
      }
      const nul = data.indexOf(0);
      if (nul < 0) return false;
      if (!r.payload.equals(data.subarray(nul + 1))) return false;
      const method = Buffer.from(r.method, 'latin1');
      for (const part of [method, r.arg, r.source]) if (part.includes(0x20) || part.includes(0)) return false;
      if (method.includes(0x2b) || r.dest.includes(0)) return false;
      const header = data.subarray(0, nul).toString('latin1');
      const destType = header.split(' ')[2];
      if (destType === 'keyword') return r.dest.toString() === 'dom0' && header.endsWith(' keyword adminvm');
      return destType === 'name' && header.endsWith(' ' + r.dest.toString('latin1'));
    }),
    2000,
  );
});

t.test('encodeRequest/parseRequest round trip, payload bytes (NULs too) kept', async (t) => {
  const method = field(1).map((s) => s.replace(/\+/g, '_'));
  await holds(
    t,
    'round trip',
    fc.property(method, field(), field(), field(), bytes(200), (m, arg, src, dest, payload) => {
      const r = parseRequest(encodeRequest(m, arg, src, dest, payload));
      return (
        r.method === Buffer.from(m).toString('latin1') &&
        r.arg.equals(Buffer.from(arg)) &&
        r.source.equals(Buffer.from(src)) &&
        r.dest.equals(Buffer.from(dest)) &&
        r.payload.equals(payload)
      );
    }),
    1000,
  );
});

// An independent reading of a frame, from the protocol description alone.
function fieldsAfterKind(frame: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let pos = 2;
  for (;;) {
    const z = frame.indexOf(0, pos);
    if (z < 0) {
      out.push(frame.subarray(pos));
      return out;
    }
    out.push(frame.subarray(pos, z));
    pos = z + 1;
  }
}
const anyString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 60 }),
  fc.string({ unit: 'grapheme', maxLength: 30 }),
  fc.constantFrom('', '\0', 'a\0b', '\0\0', 'x\0', '\ud800'),
);
const nulFree = anyString.map((s) => s.replace(/\0/g, ''));

t.test('okFrame: 0x30 0x00 then exactly the content', async (t) => {
  await holds(
    t,
    'string content',
    fc.property(anyString, (s) => {
      const f = okFrame(s);
      return f[0] === 0x30 && f[1] === 0 && f.subarray(2).equals(Buffer.from(s, 'utf8'));
    }),
    500,
  );
  await holds(
    t,
    'byte content',
    fc.property(bytes(), (b) => {
      const f = okFrame(b);
      return f[0] === 0x30 && f[1] === 0 && f.subarray(2).equals(b);
    }),
    500,
  );
});

/** EXCEPTION: 0x32 0x00 type 0x00 traceback 0x00 message 0x00, nothing else. */
function exceptionFrameOk(f: Buffer): boolean {
  const parts = fieldsAfterKind(f);
  return f[0] === 0x32 && f[1] === 0 && parts.length === 4 && parts[3]!.length === 0;
}

t.test('exceptionFrame: three fields, kept as given when they hold no NUL', async (t) => {
  await holds(
    t,
    'NUL-free strings',
    fc.property(nulFree, nulFree, nulFree, (type, message, tb) => {
      const f = exceptionFrame(type, message, tb);
      if (!exceptionFrameOk(f)) return false;
      const [ft, ftb, fm] = fieldsAfterKind(f);
      const p = parseReply(f);
      return (
        ft!.equals(Buffer.from(type)) &&
        ftb!.equals(Buffer.from(tb)) &&
        fm!.equals(Buffer.from(message)) &&
        p.kind === 'exception' &&
        p.type === Buffer.from(type).toString('utf8') &&
        p.message === Buffer.from(message).toString('utf8')
      );
    }),
    1000,
  );
});

// Finding 3 (issue 11): a NUL that reaches exceptionFrame (e.g. echoed from a
// payload: "Unknown storage pool x\0y") must not make a five-field frame.
t.test('exceptionFrame: exactly three fields whatever strings go in', async (t) => {
  await holds(
    t,
    'any strings',
    fc.property(anyString, anyString, anyString, (type, message, tb) => exceptionFrameOk(exceptionFrame(type, message, tb))),
    1000,
  );
});

/** EVENT: 0x31 0x00 subject 0x00 event 0x00 (key 0x00 value 0x00)* 0x00 — the first empty key ends it. */
function eventFrameFields(f: Buffer, pairs: number): boolean {
  const parts = fieldsAfterKind(f);
  // subject, event, 2n fields, the empty terminator, then the empty rest after the last NUL
  return f[0] === 0x31 && f[1] === 0 && parts.length === 2 + 2 * pairs + 2 && parts.at(-2)!.length === 0 && parts.at(-1)!.length === 0;
}
const key = nulFree.filter((s) => s.length > 0);

t.test('eventFrame: subject, event, key/value pairs and the terminator', async (t) => {
  await holds(
    t,
    'NUL-free strings (keys non-empty)',
    fc.property(nulFree, nulFree, fc.array(fc.tuple(key, nulFree), { maxLength: 5 }), (subject, event, kw) => {
      const f = eventFrame(subject, event, kw);
      if (!eventFrameFields(f, kw.length)) return false;
      const parts = fieldsAfterKind(f);
      return (
        parts[0]!.equals(Buffer.from(subject)) &&
        parts[1]!.equals(Buffer.from(event)) &&
        kw.every(([k, v], i) => parts[2 + 2 * i]!.equals(Buffer.from(k)) && parts[3 + 2 * i]!.equals(Buffer.from(v)))
      );
    }),
    1000,
  );
});

// Finding 3 (issue 11), for event frames: a value carrying a NUL would end
// the event early.
t.test('eventFrame: field count right whatever strings go in', async (t) => {
  await holds(
    t,
    'any strings',
    fc.property(
      anyString,
      anyString,
      fc.array(
        fc.tuple(
          anyString.filter((s) => s.length > 0),
          anyString,
        ),
        { maxLength: 5 },
      ),
      (subject, event, kw) => eventFrameFields(eventFrame(subject, event, kw), kw.length),
    ),
    1000,
  );
});
