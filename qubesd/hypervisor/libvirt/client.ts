// A client for libvirtd's remote protocol over a UNIX socket, in plain
// TypeScript (no libvirt library, nothing native).
//
// One LibvirtClient is one libvirt connection. After connect() it has
//   - authenticated (auth list; "none" needs nothing more, "polkit" is one call),
//   - opened the driver named by `uri` (e.g. "qemu:///system", "test:///default"),
//   - asked for keepalive (then it answers libvirtd's PINGs and sends its own
//     when the line is quiet, dropping a connection that stays silent),
//   - registered for lifecycle events of every domain.
// Calls are pipelined: each carries a serial and its reply is matched by it.
// When the connection drops without close() (libvirtd restarted, keepalive
// timeout), pending calls fail with a LibvirtError, 'disconnect' is emitted,
// and the client reconnects with exponential backoff; every successful
// (re)connection emits 'connect' once events are registered again, which is
// the cue for the user to resynchronise its view.
//
// Events: 'connect' ({ reconnected: boolean }), 'disconnect' (Error),
//         'lifecycle' (LifecycleMessage), 'reconnect-failed' (Error, per attempt).

import { EventEmitter } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { decodePacket, encodePacket, MessageStatus, MessageType, PacketSplitter, type Header } from './packet.js';
import {
  args,
  AuthType,
  DOMAIN_EVENT_ID_LIFECYCLE,
  DrvFeature,
  ErrorCode,
  KEEPALIVE_PROGRAM,
  KEEPALIVE_PROTOCOL_VERSION,
  KeepaliveProc,
  LibvirtError,
  LIST_DOMAINS_ACTIVE,
  LIST_DOMAINS_INACTIVE,
  Proc,
  readError,
  readLifecycleMessage,
  REMOTE_PROGRAM,
  REMOTE_PROTOCOL_VERSION,
  ret,
  SuspendTarget,
  type DomainInfo,
  type DomainState,
  type DomainStatsRecord,
  type LifecycleMessage,
  type RemoteDomain,
} from './protocol.js';
import { XdrReader } from './xdr.js';
import { systemErrorWords } from '../../../lib/system-error.js';

export interface LibvirtClientOptions {
  /** libvirtd's read-write UNIX socket. */
  socketPath: string;
  /** Driver URI sent in ConnectOpen, without transport parts (e.g. "qemu:///system"). */
  uri: string;
  /** Quiet time after which we ping libvirtd (ms). */
  keepaliveIntervalMs?: number;
  /** Unanswered intervals after which the connection counts as dead. */
  keepaliveCount?: number;
  /** Reconnect automatically after an unexpected disconnection (default true). */
  reconnect?: boolean;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** A call with no reply after this long fails (0: never). */
  callTimeoutMs?: number;
  /** Sees every whole message sent or received (tracing, fixture capture). */
  onPacket?: (direction: 'out' | 'in', bytes: Buffer) => void;
}

interface Pending {
  decode: (r: XdrReader) => unknown;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout | null;
  procedure: number;
}

type State = 'idle' | 'connecting' | 'open' | 'closed';

const connectionLost = (why: string) => new LibvirtError(`connection to libvirtd lost: ${why}`, ErrorCode.SystemError, 0);

export class LibvirtClient extends EventEmitter {
  private readonly opts: Required<Omit<LibvirtClientOptions, 'onPacket'>> & Pick<LibvirtClientOptions, 'onPacket'>;
  private sock: Socket | null = null;
  private state: State = 'idle';
  private serial = 0;
  private pending = new Map<number, Pending>();
  private lastReceived = 0;
  private keepaliveTimer: NodeJS.Timeout | null = null;
  private keepaliveEnabled = false;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private reconnectDelay: number;
  private eventCallbackId: number | null = null;
  private everConnected = false;

  constructor(options: LibvirtClientOptions) {
    super();
    this.opts = {
      keepaliveIntervalMs: 5000,
      keepaliveCount: 5,
      reconnect: true,
      reconnectMinMs: 100,
      reconnectMaxMs: 5000,
      callTimeoutMs: 120_000,
      ...options,
    };
    this.reconnectDelay = this.opts.reconnectMinMs;
  }

  get connected(): boolean {
    return this.state === 'open';
  }

  /** close() may run while a connection attempt awaits: re-read the state. */
  private isClosed(): boolean {
    return this.state === 'closed';
  }

  /** Opens the connection; rejects (without retrying) when libvirtd cannot be reached. */
  async connect(): Promise<void> {
    if (this.state === 'open') return;
    if (this.state === 'connecting') throw new LibvirtError('connection already in progress', ErrorCode.OperationInvalid, 0);
    await this.establish();
  }

  /** Closes the connection for good (no reconnection); pending calls fail. */
  async close(): Promise<void> {
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    if (this.reconnectTimer) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
    }
    if (wasOpen && this.sock) {
      try {
        await this.rawCall(Proc.ConnectClose, Buffer.alloc(0), ret.void, 2000);
      } catch {
        /* closing anyway */
      }
    }
    this.teardown(connectionLost('client closed'));
  }

  // --- typed calls -------------------------------------------------------------

  async listAllDomains(flags = LIST_DOMAINS_ACTIVE | LIST_DOMAINS_INACTIVE): Promise<RemoteDomain[]> {
    return this.call(Proc.ConnectListAllDomains, args.listAllDomains(flags), ret.listAllDomains);
  }
  lookupByName(name: string): Promise<RemoteDomain> {
    return this.call(Proc.DomainLookupByName, args.lookupByName(name), ret.domain);
  }
  lookupByUuid(uuid: string): Promise<RemoteDomain> {
    return this.call(Proc.DomainLookupByUuid, args.lookupByUuid(uuid), ret.domain);
  }
  defineXml(xml: string): Promise<RemoteDomain> {
    return this.call(Proc.DomainDefineXml, args.defineXml(xml), ret.domain);
  }
  undefine(d: RemoteDomain, flags = 0): Promise<void> {
    return this.call(Proc.DomainUndefineFlags, args.domainFlags(d, flags), ret.void);
  }
  /** Starts a defined domain; returns it with its new id. */
  create(d: RemoteDomain, flags = 0): Promise<RemoteDomain> {
    return this.call(Proc.DomainCreateWithFlags, args.domainFlags(d, flags), ret.domain);
  }
  destroy(d: RemoteDomain): Promise<void> {
    return this.call(Proc.DomainDestroy, args.domain(d), ret.void);
  }
  shutdown(d: RemoteDomain): Promise<void> {
    return this.call(Proc.DomainShutdown, args.domain(d), ret.void);
  }
  suspend(d: RemoteDomain): Promise<void> {
    return this.call(Proc.DomainSuspend, args.domain(d), ret.void);
  }
  resume(d: RemoteDomain): Promise<void> {
    return this.call(Proc.DomainResume, args.domain(d), ret.void);
  }
  pmSuspend(d: RemoteDomain, target = SuspendTarget.Mem, durationS = 0): Promise<void> {
    return this.call(Proc.DomainPmSuspendForDuration, args.pmSuspend(d, target, durationS), ret.void);
  }
  pmWakeup(d: RemoteDomain): Promise<void> {
    return this.call(Proc.DomainPmWakeup, args.domainFlags(d, 0), ret.void);
  }
  getState(d: RemoteDomain): Promise<{ state: DomainState; reason: number }> {
    return this.call(Proc.DomainGetState, args.domainFlags(d, 0), ret.state);
  }
  getInfo(d: RemoteDomain): Promise<DomainInfo> {
    return this.call(Proc.DomainGetInfo, args.domain(d), ret.info);
  }
  getXmlDesc(d: RemoteDomain, flags = 0): Promise<string> {
    return this.call(Proc.DomainGetXmlDesc, args.domainFlags(d, flags), ret.string);
  }
  /** Stats of all domains (or of `doms`), `stats` a mask of StatsType. */
  getAllDomainStats(stats: number, doms: RemoteDomain[] = [], flags = 0): Promise<DomainStatsRecord[]> {
    return this.call(Proc.ConnectGetAllDomainStats, args.getAllDomainStats(doms, stats, flags), ret.allDomainStats);
  }
  async libVersion(): Promise<number> {
    return Number(await this.call(Proc.ConnectGetLibVersion, Buffer.alloc(0), ret.uhyper));
  }

  /** Any remote-program call; fails at once when not connected. */
  call<T>(procedure: number, body: Buffer, decode: (r: XdrReader) => T): Promise<T> {
    if (this.state !== 'open') {
      const why = this.reconnectTimer || this.state === 'connecting' ? ' (reconnecting)' : '';
      return Promise.reject(new LibvirtError(`not connected to libvirtd${why}`, ErrorCode.SystemError, 0));
    }
    return this.rawCall(procedure, body, decode, this.opts.callTimeoutMs);
  }

  // --- connection ------------------------------------------------------------

  private async establish(): Promise<void> {
    this.state = 'connecting';
    const sock = await new Promise<Socket>((resolve, reject) => {
      const s = netConnect(this.opts.socketPath);
      s.once('connect', () => {
        s.off('error', reject);
        resolve(s);
      });
      s.once('error', reject);
    }).catch((e: NodeJS.ErrnoException) => {
      if (this.state === 'connecting') this.state = 'idle';
      throw new LibvirtError(`cannot connect to libvirtd socket ${this.opts.socketPath}: ${systemErrorWords(e)}`, ErrorCode.SystemError, 0);
    });
    if (this.isClosed()) {
      sock.destroy();
      throw connectionLost('client closed');
    }
    this.attach(sock);
    try {
      const t = this.opts.callTimeoutMs;
      const types = await this.rawCall(Proc.AuthList, Buffer.alloc(0), ret.authList, t);
      if (types.length > 0 && !types.includes(AuthType.None)) {
        if (!types.includes(AuthType.Polkit))
          throw new LibvirtError('libvirtd requires SASL authentication, which this client does not implement', ErrorCode.AuthUnavailable, 0);
        await this.rawCall(Proc.AuthPolkit, Buffer.alloc(0), ret.authPolkit, t);
      }
      await this.rawCall(Proc.ConnectOpen, args.connectOpen(this.opts.uri), ret.void, t);
      this.keepaliveEnabled = (await this.rawCall(Proc.ConnectSupportsFeature, args.supportsFeature(DrvFeature.ProgramKeepalive), ret.int, t)) === 1;
      this.eventCallbackId = await this.rawCall(Proc.ConnectDomainEventCallbackRegisterAny, args.eventRegister(DOMAIN_EVENT_ID_LIFECYCLE, null), ret.int, t);
    } catch (e) {
      if (this.state === 'connecting') this.state = 'idle';
      this.teardown(e as Error);
      throw e;
    }
    if (this.state !== 'connecting') throw connectionLost('closed while connecting');
    this.state = 'open';
    this.reconnectDelay = this.opts.reconnectMinMs;
    this.startKeepalive();
    const reconnected = this.everConnected;
    this.everConnected = true;
    this.emit('connect', { reconnected });
  }

  private attach(sock: Socket): void {
    this.sock = sock;
    this.lastReceived = Date.now();
    const splitter = new PacketSplitter();
    sock.on('data', (chunk: Buffer) => {
      if (this.sock !== sock) return;
      this.lastReceived = Date.now();
      let messages: Buffer[];
      try {
        messages = splitter.push(chunk);
      } catch (e) {
        this.lost(sock, (e as Error).message);
        return;
      }
      for (const m of messages) this.dispatch(m);
    });
    sock.on('error', (e: Error) => this.lost(sock, e.message));
    sock.on('close', () => this.lost(sock, 'socket closed'));
  }

  private dispatch(bytes: Buffer): void {
    this.opts.onPacket?.('in', bytes);
    const { header, body } = decodePacket(bytes);
    if (header.program === KEEPALIVE_PROGRAM) {
      if (header.procedure === KeepaliveProc.Ping) this.send(keepaliveHeader(KeepaliveProc.Pong), Buffer.alloc(0));
      return;
    }
    if (header.program !== REMOTE_PROGRAM) return;
    if (header.type === MessageType.Reply) {
      const p = this.pending.get(header.serial);
      if (!p) return;
      this.pending.delete(header.serial);
      if (p.timer) clearTimeout(p.timer);
      if (header.status === MessageStatus.Error) {
        p.reject(safe(() => readError(body)));
        return;
      }
      try {
        const r = new XdrReader(body);
        const v = p.decode(r);
        p.resolve(v);
      } catch (e) {
        p.reject(new LibvirtError(`cannot decode reply to procedure ${p.procedure}: ${(e as Error).message}`, ErrorCode.InternalError, 0));
      }
      return;
    }
    if (header.type === MessageType.Message && header.procedure === Proc.DomainEventCallbackLifecycle) {
      let msg: LifecycleMessage;
      try {
        msg = readLifecycleMessage(new XdrReader(body));
      } catch {
        return;
      }
      if (msg.callbackId === this.eventCallbackId) this.emit('lifecycle', msg);
    }
  }

  private rawCall<T>(procedure: number, body: Buffer, decode: (r: XdrReader) => T, timeoutMs: number): Promise<T> {
    if (!this.sock) return Promise.reject(connectionLost('no socket'));
    const serial = this.serial;
    this.serial = (this.serial + 1) >>> 0;
    return new Promise<T>((resolve, reject) => {
      const p: Pending = {
        decode,
        resolve: resolve as (v: unknown) => void,
        reject,
        procedure,
        timer:
          timeoutMs > 0
            ? setTimeout(() => {
                this.pending.delete(serial);
                reject(new LibvirtError(`libvirtd did not answer procedure ${procedure} within ${timeoutMs} ms`, ErrorCode.OperationTimeout, 0));
              }, timeoutMs)
            : null,
      };
      this.pending.set(serial, p);
      this.send({ program: REMOTE_PROGRAM, version: REMOTE_PROTOCOL_VERSION, procedure, type: MessageType.Call, serial, status: MessageStatus.Ok }, body);
    });
  }

  private send(header: Header, body: Buffer): void {
    const bytes = encodePacket(header, body);
    this.opts.onPacket?.('out', bytes);
    this.sock?.write(bytes);
  }

  private startKeepalive(): void {
    if (!this.keepaliveEnabled || this.opts.keepaliveIntervalMs <= 0) return;
    const interval = this.opts.keepaliveIntervalMs;
    this.keepaliveTimer = setInterval(() => {
      const quiet = Date.now() - this.lastReceived;
      if (quiet >= interval * this.opts.keepaliveCount) {
        if (this.sock) this.lost(this.sock, 'keepalive timeout');
      } else if (quiet >= interval) this.send(keepaliveHeader(KeepaliveProc.Ping), Buffer.alloc(0));
    }, interval);
    this.keepaliveTimer.unref();
  }

  /** The socket went away (or must go): fail what waits, then maybe reconnect. */
  private lost(sock: Socket, why: string): void {
    if (this.sock !== sock) return;
    const wasOpen = this.state === 'open';
    const err = connectionLost(why);
    this.teardown(err);
    if (!wasOpen) return;
    this.state = 'idle';
    this.emit('disconnect', err);
    if (this.opts.reconnect) this.scheduleReconnect();
  }

  private teardown(err: Error): void {
    if (this.keepaliveTimer) {
      clearInterval(this.keepaliveTimer);
      this.keepaliveTimer = null;
    }
    const sock = this.sock;
    this.sock = null;
    sock?.destroy();
    this.eventCallbackId = null;
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) {
      if (p.timer) clearTimeout(p.timer);
      p.reject(err);
    }
  }

  private scheduleReconnect(): void {
    if (this.state === 'closed' || this.reconnectTimer) return;
    const delay = this.reconnectDelay;
    this.reconnectDelay = Math.min(this.reconnectDelay * 2, this.opts.reconnectMaxMs);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.state === 'closed') return;
      this.establish().catch((e: Error) => {
        if (this.state === 'closed') return;
        this.emit('reconnect-failed', e);
        this.scheduleReconnect();
      });
    }, delay);
  }
}

function keepaliveHeader(procedure: KeepaliveProc): Header {
  return { program: KEEPALIVE_PROGRAM, version: KEEPALIVE_PROTOCOL_VERSION, procedure, type: MessageType.Message, serial: 0, status: MessageStatus.Ok };
}

function safe(f: () => LibvirtError): LibvirtError {
  try {
    return f();
  } catch (e) {
    return new LibvirtError(`undecodable error reply: ${(e as Error).message}`, ErrorCode.InternalError, 0);
  }
}
