// The part of libvirt's remote protocol (remote_protocol.x, virnetprotocol.x,
// virkeepaliveprotocol.x) that qubesd speaks: program and procedure numbers,
// the enums whose values travel on the wire, and the XDR layout of every
// argument, reply and event body we use.

import { XdrReader, XdrWriter } from './xdr.js';

export const REMOTE_PROGRAM = 0x20008086;
export const REMOTE_PROTOCOL_VERSION = 1;
export const KEEPALIVE_PROGRAM = 0x6b656570;
export const KEEPALIVE_PROTOCOL_VERSION = 1;

export enum KeepaliveProc {
  Ping = 1,
  Pong = 2,
}

/** Procedure numbers of the remote program (only those used here). */
export enum Proc {
  ConnectOpen = 1,
  ConnectClose = 2,
  DomainCreate = 9,
  DomainDefineXml = 11,
  DomainDestroy = 12,
  DomainGetXmlDesc = 14,
  DomainGetInfo = 16,
  DomainLookupByName = 23,
  DomainLookupByUuid = 24,
  DomainResume = 28,
  DomainShutdown = 33,
  DomainSuspend = 34,
  DomainUndefine = 35,
  ConnectSupportsFeature = 60,
  AuthList = 66,
  AuthPolkit = 70,
  ConnectGetLibVersion = 157,
  DomainCreateWithFlags = 196,
  DomainGetState = 212,
  DomainUndefineFlags = 231,
  DomainPmSuspendForDuration = 261,
  DomainPmWakeup = 267,
  ConnectListAllDomains = 273,
  ConnectDomainEventCallbackRegisterAny = 316,
  ConnectDomainEventCallbackDeregisterAny = 317,
  DomainEventCallbackLifecycle = 318,
  ConnectGetAllDomainStats = 344,
}

export enum AuthType {
  None = 0,
  Sasl = 1,
  Polkit = 2,
}

/** virDrvFeature values asked with ConnectSupportsFeature. */
export enum DrvFeature {
  ProgramKeepalive = 10,
  RemoteEventCallback = 14,
}

/** virDomainEventID */
export const DOMAIN_EVENT_ID_LIFECYCLE = 0;

/** virDomainState */
export enum DomainState {
  NoState = 0,
  Running = 1,
  Blocked = 2,
  Paused = 3,
  Shutdown = 4,
  Shutoff = 5,
  Crashed = 6,
  PmSuspended = 7,
}

/** virDomainEventType: the kind of a lifecycle event. */
export enum DomainEventType {
  Defined = 0,
  Undefined = 1,
  Started = 2,
  Suspended = 3,
  Resumed = 4,
  Stopped = 5,
  Shutdown = 6,
  PmSuspended = 7,
  Crashed = 8,
}

/** The detail enums of each event type, by value (virDomainEvent*DetailType). */
export const EVENT_DETAILS: Record<DomainEventType, readonly string[]> = {
  [DomainEventType.Defined]: ['added', 'updated', 'renamed', 'from-snapshot'],
  [DomainEventType.Undefined]: ['removed', 'renamed'],
  [DomainEventType.Started]: ['booted', 'migrated', 'restored', 'from-snapshot', 'wakeup'],
  [DomainEventType.Suspended]: ['paused', 'migrated', 'ioerror', 'watchdog', 'restored', 'from-snapshot', 'api-error', 'postcopy', 'postcopy-failed'],
  [DomainEventType.Resumed]: ['unpaused', 'migrated', 'from-snapshot', 'postcopy', 'postcopy-failed'],
  [DomainEventType.Stopped]: ['shutdown', 'destroyed', 'crashed', 'migrated', 'saved', 'failed', 'from-snapshot'],
  [DomainEventType.Shutdown]: ['finished', 'guest', 'host'],
  [DomainEventType.PmSuspended]: ['memory', 'disk'],
  [DomainEventType.Crashed]: ['panicked', 'crashloaded'],
};

/** virConnectListAllDomainsFlags */
export const LIST_DOMAINS_ACTIVE = 1;
export const LIST_DOMAINS_INACTIVE = 2;

/** virDomainStatsTypes */
export enum StatsType {
  State = 1,
  CpuTotal = 2,
  Balloon = 4,
  Vcpu = 8,
}

/** virNodeSuspendTarget, used by PM suspend. */
export enum SuspendTarget {
  Mem = 0,
  Disk = 1,
  Hybrid = 2,
}

/** virTypedParameterType */
enum TypedParamType {
  Int = 1,
  UInt = 2,
  LLong = 3,
  ULLong = 4,
  Double = 5,
  Boolean = 6,
  String = 7,
}

/** virErrorNumber values that callers look at (virterror.h). */
export enum ErrorCode {
  InternalError = 1,
  NoSupport = 3,
  OperationFailed = 9,
  XmlError = 27,
  SystemError = 38,
  NoDomain = 42,
  AuthFailed = 45,
  OperationInvalid = 55,
  OperationTimeout = 68,
  ArgumentUnsupported = 74,
  AuthUnavailable = 94,
}

/** A failure reported by libvirtd (the remote_error structure), or a local
 *  one about the connection (then `domain` is 0 and code SystemError). */
export class LibvirtError extends Error {
  constructor(
    message: string,
    readonly code: number,
    readonly domain: number,
    readonly level = 2,
    /** Name of the libvirt domain (VM) the error is about, when it says. */
    readonly vm: string | null = null,
  ) {
    super(message);
    this.name = 'LibvirtError';
  }
}

export const UUID_LEN = 16;

export interface RemoteDomain {
  name: string;
  uuid: string;
  id: number;
}

export function uuidToBytes(uuid: string): Buffer {
  const hex = uuid.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new TypeError(`invalid UUID: ${uuid}`);
  return Buffer.from(hex, 'hex');
}

export function uuidFromBytes(b: Buffer): string {
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// --- shared structures -------------------------------------------------------

export function writeDomain(w: XdrWriter, d: RemoteDomain): void {
  w.string(d.name).fixedOpaque(uuidToBytes(d.uuid), UUID_LEN).int(d.id);
}

export function readDomain(r: XdrReader): RemoteDomain {
  const name = r.string();
  const uuid = uuidFromBytes(r.fixedOpaque(UUID_LEN));
  return { name, uuid, id: r.int() };
}

export function readError(body: Buffer): LibvirtError {
  const r = new XdrReader(body);
  const code = r.int();
  const domain = r.int();
  const message = r.optional((x) => x.string());
  const level = r.int();
  const dom = r.optional(readDomain);
  // str1..3, int1, int2 and net carry nothing the message does not already say.
  return new LibvirtError(message ?? `libvirt error ${code}`, code, domain, level, dom?.name ?? null);
}

export type TypedValue = number | bigint | string | boolean;

export function readTypedParam(r: XdrReader): [string, TypedValue] {
  const field = r.string();
  const type = r.int();
  switch (type) {
    case TypedParamType.Int:
      return [field, r.int()];
    case TypedParamType.UInt:
      return [field, r.uint()];
    case TypedParamType.LLong:
      return [field, r.hyper()];
    case TypedParamType.ULLong:
      return [field, r.uhyper()];
    case TypedParamType.Double:
      return [field, r.double()];
    case TypedParamType.Boolean:
      return [field, r.int() !== 0];
    case TypedParamType.String:
      return [field, r.string()];
    default:
      throw new LibvirtError(`unknown typed parameter type ${type} for ${field}`, ErrorCode.InternalError, 0);
  }
}

// --- procedure bodies ----------------------------------------------------------

const enc = (f: (w: XdrWriter) => void): Buffer => {
  const w = new XdrWriter();
  f(w);
  return w.toBuffer();
};

export const args = {
  connectOpen: (name: string | null, flags = 0) => enc((w) => w.optional(name, (x, n) => x.string(n)).uint(flags)),
  supportsFeature: (feature: number) => enc((w) => w.int(feature)),
  domain: (d: RemoteDomain) => enc((w) => writeDomain(w, d)),
  domainFlags: (d: RemoteDomain, flags = 0) =>
    enc((w) => {
      writeDomain(w, d);
      w.uint(flags);
    }),
  defineXml: (xml: string) => enc((w) => w.string(xml)),
  lookupByName: (name: string) => enc((w) => w.string(name)),
  lookupByUuid: (uuid: string) => enc((w) => w.fixedOpaque(uuidToBytes(uuid), UUID_LEN)),
  pmSuspend: (d: RemoteDomain, target: SuspendTarget, durationS = 0, flags = 0) =>
    enc((w) => {
      writeDomain(w, d);
      w.uint(target).uhyper(durationS).uint(flags);
    }),
  listAllDomains: (flags: number) => enc((w) => w.int(1).uint(flags)),
  getAllDomainStats: (doms: RemoteDomain[], stats: number, flags = 0) =>
    enc((w) => {
      w.array(doms, writeDomain);
      w.uint(stats).uint(flags);
    }),
  eventRegister: (eventId: number, dom: RemoteDomain | null) =>
    enc((w) => {
      w.int(eventId);
      w.optional(dom, writeDomain);
    }),
  eventDeregister: (callbackId: number) => enc((w) => w.int(callbackId)),
};

export interface DomainInfo {
  state: DomainState;
  maxMemKb: number;
  memoryKb: number;
  nrVirtCpu: number;
  cpuTimeNs: number;
}
export interface DomainStatsRecord {
  domain: RemoteDomain;
  params: Map<string, TypedValue>;
}
export interface LifecycleMessage {
  callbackId: number;
  domain: RemoteDomain;
  event: DomainEventType;
  detail: number;
}

export const ret = {
  void: (r: XdrReader): void => {
    r.end();
  },
  authList: (r: XdrReader): AuthType[] => r.array((x) => x.int(), 20),
  authPolkit: (r: XdrReader): boolean => r.int() !== 0,
  int: (r: XdrReader): number => r.int(),
  uhyper: (r: XdrReader): bigint => r.uhyper(),
  domain: (r: XdrReader): RemoteDomain => readDomain(r),
  string: (r: XdrReader): string => r.string(),
  state: (r: XdrReader): { state: DomainState; reason: number } => ({ state: r.int(), reason: r.int() }),
  info: (r: XdrReader): DomainInfo => ({
    state: r.uint(),
    maxMemKb: r.uhyperNumber(),
    memoryKb: r.uhyperNumber(),
    nrVirtCpu: r.uint(),
    cpuTimeNs: r.uhyperNumber(),
  }),
  listAllDomains: (r: XdrReader): RemoteDomain[] => {
    const doms = r.array(readDomain);
    r.uint();
    return doms;
  },
  allDomainStats: (r: XdrReader): DomainStatsRecord[] =>
    r.array((x) => {
      const domain = readDomain(x);
      return { domain, params: new Map(x.array(readTypedParam)) };
    }),
};

export function readLifecycleMessage(r: XdrReader): LifecycleMessage {
  const callbackId = r.int();
  const domain = readDomain(r);
  return { callbackId, domain, event: r.int(), detail: r.int() };
}
