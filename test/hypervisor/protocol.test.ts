// Wire encoding, pinned by packets recorded from real libvirt 9.0
// (test/hypervisor/fixtures/, made by tools/capture-fixtures.ts):
//  - calls virsh (libvirt's C client) made must be byte-identical to what our
//    encoders produce for the same arguments;
//  - replies and events libvirtd sent must decode to what we know the test
//    driver holds (its built-in domain "test").
import t from 'tap';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodePacket, encodePacket, FramingError, MessageStatus, MessageType, PacketSplitter, type Packet } from '../../qubesd/hypervisor/libvirt/packet.js';
import {
  args,
  AuthType,
  DomainEventType,
  DomainState,
  DrvFeature,
  ErrorCode,
  KEEPALIVE_PROGRAM,
  KeepaliveProc,
  LIST_DOMAINS_ACTIVE,
  LIST_DOMAINS_INACTIVE,
  Proc,
  readError,
  readLifecycleMessage,
  REMOTE_PROGRAM,
  ret,
  StatsType,
} from '../../qubesd/hypervisor/libvirt/protocol.js';
import { XdrReader } from '../../qubesd/hypervisor/libvirt/xdr.js';

const here = dirname(fileURLToPath(import.meta.url));
const fixtureDir = join(here, '../../../test/hypervisor/fixtures');
interface Recorded {
  dir: 'c2s' | 's2c';
  hex: string;
  bytes: Buffer;
  packet: Packet;
}
function load(name: string): Recorded[] {
  const raw = JSON.parse(readFileSync(join(fixtureDir, name), 'utf8')) as { packets: Array<{ dir: 'c2s' | 's2c'; hex: string }> };
  return raw.packets.map((p) => {
    const bytes = Buffer.from(p.hex, 'hex');
    return { ...p, bytes, packet: decodePacket(bytes) };
  });
}

const TEST_DOM = { name: 'test', uuid: '6695eb01-f6a4-8304-79aa-97f2502e193f', id: 1 };
const virsh = load('virsh-session.json');
const ours = load('client-events.json');

const calls = (rec: Recorded[], proc: number) =>
  rec.filter((r) => r.dir === 'c2s' && r.packet.header.procedure === proc && r.packet.header.program === REMOTE_PROGRAM);
const replyTo = (rec: Recorded[], call: Recorded) =>
  rec.find((r) => r.dir === 's2c' && r.packet.header.type === MessageType.Reply && r.packet.header.serial === call.packet.header.serial)!;
const encodeCall = (proc: number, serial: number, body: Buffer) =>
  encodePacket({ program: REMOTE_PROGRAM, version: 1, procedure: proc, type: MessageType.Call, serial, status: MessageStatus.Ok }, body);

t.test('virsh calls are byte-identical to ours', async (t) => {
  const expect: Array<[Proc, Buffer, string]> = [
    [Proc.AuthList, Buffer.alloc(0), 'auth list'],
    [Proc.ConnectOpen, args.connectOpen('test:///default', 0), 'connect open'],
    [Proc.ConnectSupportsFeature, args.supportsFeature(DrvFeature.ProgramKeepalive), 'keepalive feature'],
    [Proc.DomainLookupByName, args.lookupByName('test'), 'lookup by name'],
    [Proc.DomainGetState, args.domainFlags(TEST_DOM, 0), 'get state'],
    [Proc.DomainGetInfo, args.domain(TEST_DOM), 'get info'],
    [Proc.DomainSuspend, args.domain(TEST_DOM), 'suspend'],
    [Proc.DomainResume, args.domain(TEST_DOM), 'resume'],
    [Proc.DomainDestroy, args.domain(TEST_DOM), 'destroy'],
    [Proc.ConnectListAllDomains, args.listAllDomains(LIST_DOMAINS_ACTIVE | LIST_DOMAINS_INACTIVE), 'list all domains'],
    [Proc.ConnectGetAllDomainStats, args.getAllDomainStats([TEST_DOM], 0, 0), 'all-domain stats for one domain'],
    [Proc.DomainLookupByUuid, args.lookupByUuid(TEST_DOM.uuid), 'lookup by uuid'],
    [Proc.ConnectClose, Buffer.alloc(0), 'connect close'],
  ];
  for (const [proc, body, what] of expect) {
    const recorded = calls(virsh, proc);
    t.ok(recorded.length > 0, `virsh made a ${what} call`);
    const match = recorded.some((r) => encodeCall(proc, r.packet.header.serial, body).equals(r.bytes));
    t.ok(match, `${what}: our encoding equals virsh's`);
  }
  // virsh starts the inactive domain with DomainCreate: same body as ours for DomainCreateWithFlags minus the flags word.
  const create = calls(virsh, Proc.DomainCreate)[0]!;
  t.same(create.packet.body, args.domain({ ...TEST_DOM, id: -1 }), 'create of the halted domain (id -1)');
});

t.test('libvirtd replies decode to the test driver facts', async (t) => {
  const body = (proc: number, i = 0) => new XdrReader(replyTo(virsh, calls(virsh, proc)[i]!).packet.body);
  t.same(ret.authList(body(Proc.AuthList)), [AuthType.None], 'auth none offered');
  t.equal(ret.int(body(Proc.ConnectSupportsFeature)), 1, 'keepalive supported');
  t.same(ret.domain(body(Proc.DomainLookupByName)), TEST_DOM);
  const state = body(Proc.DomainGetState);
  t.same(ret.state(state), { state: DomainState.Running, reason: 0 }, 'running, reason unknown (the recording followed a resume)');
  state.end();
  const info = ret.info(body(Proc.DomainGetInfo));
  t.same({ ...info, cpuTimeNs: 0 }, { state: DomainState.Running, maxMemKb: 8388608, memoryKb: 2097152, nrVirtCpu: 2, cpuTimeNs: 0 });
  t.ok(info.cpuTimeNs > 0, 'cpu time decoded from the 64-bit field');
  t.same(ret.listAllDomains(body(Proc.ConnectListAllDomains)), [TEST_DOM]);
  const stats = ret.allDomainStats(body(Proc.ConnectGetAllDomainStats));
  t.equal(stats.length, 1);
  t.same(stats[0]!.domain, TEST_DOM);
  t.equal(stats[0]!.params.get('state.state'), DomainState.Running, 'typed parameters decoded');

  const failing = calls(virsh, Proc.DomainLookupByName).find((c) => !new XdrReader(c.packet.body).string().startsWith('test'))!;
  const reply = replyTo(virsh, failing);
  t.equal(reply.packet.header.status, MessageStatus.Error, 'unknown domain: error reply');
  const err = readError(reply.packet.body);
  t.equal(err.code, ErrorCode.NoDomain);
  t.match(err.message, /Domain not found/);
});

t.test('events and keepalive as libvirtd sends them', async (t) => {
  const register = calls(ours, Proc.ConnectDomainEventCallbackRegisterAny)[0]!;
  t.same(register.packet.body, args.eventRegister(0, null), 'lifecycle registration for all domains');
  const callbackId = ret.int(new XdrReader(replyTo(ours, register).packet.body));
  const events = ours
    .filter((r) => r.packet.header.type === MessageType.Message && r.packet.header.program === REMOTE_PROGRAM)
    .map((r) => {
      t.equal(r.packet.header.procedure, Proc.DomainEventCallbackLifecycle);
      return readLifecycleMessage(new XdrReader(r.packet.body));
    });
  t.same(events, [
    { callbackId, domain: TEST_DOM, event: DomainEventType.Suspended, detail: 0 },
    { callbackId, domain: TEST_DOM, event: DomainEventType.Resumed, detail: 0 },
  ]);
  const ka = ours.filter((r) => r.packet.header.program === KEEPALIVE_PROGRAM);
  t.same(
    ka.map((r) => [r.dir, r.packet.header.procedure, r.packet.header.type, r.packet.body.length]),
    [
      ['c2s', KeepaliveProc.Ping, MessageType.Message, 0],
      ['s2c', KeepaliveProc.Pong, MessageType.Message, 0],
    ],
    'our PING is answered by a PONG',
  );
});

t.test('framing', async (t) => {
  const all = Buffer.concat(virsh.map((r) => r.bytes));
  const s = new PacketSplitter();
  const out: Buffer[] = [];
  for (let i = 0; i < all.length; i += 7) out.push(...s.push(all.subarray(i, i + 7)));
  t.equal(out.length, virsh.length, 'a stream cut in 7-byte pieces splits into the same messages');
  t.ok(out.every((b, i) => b.equals(virsh[i]!.bytes)));
  t.throws(() => new PacketSplitter().push(Buffer.from([0, 0, 0, 8, 1, 2, 3, 4])), FramingError, 'length shorter than a header');
  t.throws(() => new PacketSplitter().push(Buffer.from([0x7f, 0, 0, 0])), FramingError, 'length beyond the 16 MiB limit');
  t.throws(() => decodePacket(Buffer.alloc(10)), FramingError);
  const stats = StatsType.State | StatsType.CpuTotal;
  t.equal(stats, 3);
});
