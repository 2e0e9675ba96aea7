// Framing of libvirt RPC messages on a stream socket. Every message is
//   length (uint32, counts the whole message including these 4 bytes)
//   header: program, version, procedure, type, serial, status (6 x uint32)
//   body: XDR, whose meaning depends on program/procedure/type/status.

export const LEN_SIZE = 4;
export const HEADER_SIZE = 24;
/** Largest whole message libvirt accepts or sends (VIR_NET_MESSAGE_MAX + length word). */
export const MESSAGE_MAX = 16 * 1024 * 1024 + LEN_SIZE;

export enum MessageType {
  Call = 0,
  Reply = 1,
  Message = 2,
  Stream = 3,
  CallWithFds = 4,
  ReplyWithFds = 5,
}

export enum MessageStatus {
  Ok = 0,
  Error = 1,
  Continue = 2,
}

export interface Header {
  program: number;
  version: number;
  procedure: number;
  type: MessageType;
  serial: number;
  status: MessageStatus;
}

export interface Packet {
  header: Header;
  body: Buffer;
}

export class FramingError extends Error {
  override name = 'FramingError';
}

export function encodePacket(header: Header, body: Buffer = Buffer.alloc(0)): Buffer {
  const total = LEN_SIZE + HEADER_SIZE + body.length;
  if (total > MESSAGE_MAX) throw new FramingError(`message of ${total} bytes exceeds libvirt's limit of ${MESSAGE_MAX}`);
  const out = Buffer.alloc(total);
  out.writeUInt32BE(total, 0);
  out.writeUInt32BE(header.program >>> 0, 4);
  out.writeUInt32BE(header.version >>> 0, 8);
  out.writeInt32BE(header.procedure, 12);
  out.writeUInt32BE(header.type, 16);
  out.writeUInt32BE(header.serial >>> 0, 20);
  out.writeUInt32BE(header.status, 24);
  body.copy(out, LEN_SIZE + HEADER_SIZE);
  return out;
}

/** Decodes one complete message (length word included). */
export function decodePacket(msg: Buffer): Packet {
  if (msg.length < LEN_SIZE + HEADER_SIZE) throw new FramingError(`message of ${msg.length} bytes is shorter than a header`);
  const len = msg.readUInt32BE(0);
  if (len !== msg.length) throw new FramingError(`length word says ${len} bytes, message has ${msg.length}`);
  return {
    header: {
      program: msg.readUInt32BE(4),
      version: msg.readUInt32BE(8),
      procedure: msg.readInt32BE(12),
      type: msg.readUInt32BE(16),
      serial: msg.readUInt32BE(20),
      status: msg.readUInt32BE(24),
    },
    body: Buffer.from(msg.subarray(LEN_SIZE + HEADER_SIZE)),
  };
}

/** Splits a byte stream into whole messages, whatever the chunking. */
export class PacketSplitter {
  private chunks: Buffer[] = [];
  private buffered = 0;

  /** Feeds bytes; returns every message completed by them. Throws FramingError on a bad length word. */
  push(data: Buffer): Buffer[] {
    this.chunks.push(data);
    this.buffered += data.length;
    const out: Buffer[] = [];
    for (;;) {
      if (this.buffered < LEN_SIZE) break;
      const head = this.chunks.length === 1 ? this.chunks[0]! : this.flatten();
      const len = head.readUInt32BE(0);
      if (len < LEN_SIZE + HEADER_SIZE || len > MESSAGE_MAX) throw new FramingError(`invalid message length ${len}`);
      if (this.buffered < len) break;
      const all = this.flatten();
      out.push(Buffer.from(all.subarray(0, len)));
      const rest = all.subarray(len);
      this.chunks = rest.length ? [rest] : [];
      this.buffered = rest.length;
    }
    return out;
  }

  private flatten(): Buffer {
    if (this.chunks.length !== 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!;
  }
}
