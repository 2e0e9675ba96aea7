// The persistent store: qubes.xml plus a write-ahead journal beside it.
//
// Qubes rewrites the whole qubes.xml on every change, so a write costs time
// proportional to the number of qubes. Here a commit appends one framed record
// (the changed domains, or just the changed entries of one, as JSON) to `qubes.xml.journal.<n>`, written with
// O_DSYNC so that it is on disk when the write returns: the cost depends on
// what changed, not on the size of the store. Commits queued while a write is
// in flight go out together as the next record (group commit), so concurrent
// callers share one sync. A commit nobody else waits for (`writeNow`) is
// written from the event loop's own thread instead of the thread pool.
//
// qubes.xml stays a complete file Qubes can load: it is only ever replaced
// atomically (lib/atomic-write.ts: temporary file, fsync, rename, fsync of the directory) with a
// full snapshot, on open (after replaying journals), whenever the journal
// grows past a threshold, and on close. Before a snapshot is taken, new
// commits are switched to a fresh journal file, so a commit that lands while
// the snapshot is being written is never in a journal that gets deleted.
// Replaying journals older than the snapshot is harmless (a record replaces
// whole domains or lists, or sets entries in place, which gives the same
// result when done again: README.md), so deleting them needs no particular
// ordering.
//
// A corrupt or unreadable qubes.xml or journal stops open() with the path and
// the reason, and nothing is written. See lock.ts for the one-daemon lock.

import { constants, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { atomicWriteFile, fsyncDir } from '../../lib/atomic-write.js';
import type { Change, DomainDoc, DomainEntriesChange, QubesDoc } from './document.js';
import { JournalCorruption, encodeRecord, readRecords } from './journal.js';
import { LockError, StoreLock } from './lock.js';
import { parseQubesXml, serializeDomain, serializeGlobals, serializeQubesXml } from './qubes-xml.js';
import { checkChars, parseXml, XmlError } from './xml.js';

export class StoreError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(message);
    this.name = 'StoreError';
  }
}

export interface StoreOptions {
  /** The document to create the store from when qubes.xml does not exist. */
  fresh?: () => QubesDoc;
  /** Compact after this many journal records (default 10000). */
  compactRecords?: number;
  /** Compact after this many journal bytes (default: the larger of 8 MiB and 4 x qubes.xml). */
  compactBytes?: number;
}

const DEFAULT_COMPACT_RECORDS = 10_000;
const MIN_COMPACT_BYTES = 8 << 20;

/** `size` is the end of the last record; the file is zero-filled up to `allocated`. */
interface Journal {
  seq: number;
  path: string;
  fh: FileHandle;
  size: number;
  allocated: number;
  records: number;
}
interface Pending {
  json: string;
  resolve: () => void;
  reject: (e: Error) => void;
}

export class Store {
  /**
   * What was loaded (after journal replay). Read-only: until setSnapshot()
   * is called the store's own snapshots share these objects.
   */
  readonly doc: QubesDoc;

  private provider: (() => QubesDoc) | null = null;
  /** The acknowledged state, kept while no snapshot provider is set. */
  private state: DocState | null;
  private queue: Pending[] = [];
  /** The running flush loop, if any; `flushing` is cleared synchronously when it ends. */
  private loop: Promise<void> = Promise.resolve();
  private flushing = false;
  private compaction: Promise<void> | null = null;
  /** Journals whose records are not yet known to be in qubes.xml. */
  private retired: string[] = [];
  private broken: StoreError | null = null;
  private closing: Promise<void> | null = null;
  private xmlSize: number;

  private constructor(
    readonly path: string,
    private readonly lock: StoreLock,
    private journal: Journal,
    state: DocState,
    xmlSize: number,
    private readonly opts: StoreOptions,
  ) {
    this.state = state;
    this.xmlSize = xmlSize;
    this.doc = state.toDoc();
  }

  /**
   * Takes the lock, loads qubes.xml (creating it from `fresh` if missing),
   * replays and folds in any journal, and starts a new journal.
   */
  static async open(path: string, opts: StoreOptions = {}): Promise<Store> {
    path = resolve(path);
    let lock: StoreLock;
    try {
      lock = await StoreLock.acquire(path + '.lock', path);
    } catch (e) {
      throw new StoreError(path, e instanceof LockError ? e.message : `cannot lock ${path}: ${(e as Error).message}`);
    }
    try {
      const dir = dirname(path);
      await removeTempLeftovers(path); // left by a daemon killed while writing a snapshot
      const journals = await listJournals(path);
      const { doc, size, created } = await loadXml(path, journals.length > 0, opts.fresh);
      const state = new DocState(doc, path);
      for (const j of journals) await replay(j.path, state, path);
      let xmlSize = size;
      if (created || journals.length > 0) {
        xmlSize = await writeAtomic(path, serializeQubesXml(state.toDoc()));
        for (const j of journals) await unlink(j.path);
        await fsyncDir(dir);
      }
      const seq = journals.length ? journals[journals.length - 1]!.seq + 1 : 1;
      const journal = await createJournal(path, seq);
      return new Store(path, lock, journal, state, xmlSize, opts);
    } catch (e) {
      await lock.release().catch(() => {});
      if (e instanceof StoreError) throw e;
      throw new StoreError(path, `cannot open store ${path}: ${(e as Error).message}`);
    }
  }

  /**
   * From now on snapshots (compaction) are taken from `provider`, the live
   * model, instead of the store's own copy of the acknowledged state.
   */
  setSnapshot(provider: () => QubesDoc): void {
    this.provider = provider;
    this.state = null;
  }

  /**
   * Resolves once the changes are durable; rejects (writing nothing) if they
   * cannot be stored. `writeNow`: the caller knows of no other call waiting,
   * so the record is written at once from this thread when no write is in
   * flight. Handing one small write to the thread pool and its completion
   * back costs two thread wake-ups, more than the write itself on an idle
   * machine; but a write from this thread holds every other call until the
   * disk has it, and no commit can join it: with other calls about, the
   * thread pool (and group commit) serves better.
   */
  commit(changes: Change[], writeNow = false): Promise<void> {
    if (this.closing) return Promise.reject(new StoreError(this.path, `store ${this.path} is closed`));
    if (this.broken) return Promise.reject(this.broken);
    if (changes.length === 0) return Promise.resolve();
    let json: string;
    try {
      for (const c of changes) checkChange(c);
      json = changes.map((c) => JSON.stringify(c)).join(',');
    } catch (e) {
      return Promise.reject(new StoreError(this.path, `refusing to store a change: ${(e as Error).message}`));
    }
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ json, resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        this.loop = this.flush(writeNow);
      }
    });
  }

  /** Waits for pending commits, writes a final snapshot, removes the journal and releases the lock. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    try {
      while (this.flushing) await this.loop;
      await this.compaction;
      const j = this.journal;
      await j.fh.close();
      if (this.broken) throw this.broken;
      if (j.records > 0 || this.retired.length > 0) {
        await writeAtomic(this.path, this.snapshotXml());
      }
      for (const p of [...this.retired, j.path]) await unlink(p).catch(ignoreMissing);
      this.retired = [];
      await fsyncDir(dirname(this.path));
    } catch (e) {
      throw e instanceof StoreError ? e : new StoreError(this.path, `closing store ${this.path}: ${(e as Error).message}`);
    } finally {
      await this.lock.release();
    }
  }

  /**
   * Writes queued commits, one record per batch, until the queue is empty.
   * `flushing` is cleared in the same synchronous step that finds the queue
   * empty, so a commit arriving afterwards always starts a new loop.
   */
  private async flush(writeNow: boolean): Promise<void> {
    for (;;) {
      if (this.queue.length === 0) {
        this.flushing = false;
        return;
      }
      try {
        await this.writeBatch(writeNow);
        writeNow = false;
      } catch (e) {
        this.flushing = false; // not expected: writeBatch settles every commit itself
        throw e;
      }
    }
  }

  /** Appends everything queued as one record, durably, and settles those commits. */
  private async writeBatch(writeNow: boolean): Promise<void> {
    const batch = this.queue;
    this.queue = [];
    if (this.broken) {
      for (const p of batch) p.reject(this.broken);
      return;
    }
    const j = this.journal;
    const payload = batch.length === 1 ? '[' + batch[0]!.json + ']' : '[' + batch.map((p) => p.json).join(',') + ']';
    let rec: Buffer;
    try {
      rec = encodeRecord(payload);
      if (j.size + rec.length > j.allocated) await preallocate(j, j.size + rec.length);
      // O_DSYNC: durable when the write returns
      if (writeNow) writeFullySync(j.fh.fd, rec, j.size);
      else await writeFully(j.fh, rec, j.size);
    } catch (e) {
      const err = new StoreError(this.path, `writing journal ${j.path} failed: ${(e as Error).message}`);
      await this.undoPartialRecord(j, err);
      for (const p of batch) p.reject(err);
      return;
    }
    j.size += rec.length;
    j.records++;
    if (this.state) for (const c of JSON.parse(payload) as Change[]) this.state.apply(c);
    for (const p of batch) p.resolve();
    if (!this.compaction && this.compactionDue()) await this.startCompaction();
  }

  /**
   * A failed write may leave part of a record behind; a later record after it
   * would make the journal look damaged. Cut it off, or stop accepting
   * commits if even that fails.
   */
  private async undoPartialRecord(j: Journal, cause: StoreError): Promise<void> {
    try {
      await j.fh.truncate(j.size);
      await j.fh.datasync();
      j.allocated = j.size;
    } catch (e) {
      this.broken = new StoreError(this.path, `${cause.message}; the journal could not be repaired (${(e as Error).message}); restart qubesd`);
    }
  }

  private compactionDue(): boolean {
    const j = this.journal;
    const maxBytes = this.opts.compactBytes ?? Math.max(MIN_COMPACT_BYTES, 4 * this.xmlSize);
    return j.records >= (this.opts.compactRecords ?? DEFAULT_COMPACT_RECORDS) || j.size >= maxBytes;
  }

  /**
   * Switches commits to a new journal, then writes a snapshot in the
   * background; the old journals are deleted once the snapshot is durable.
   * Runs between two journal writes, so the old journal is complete.
   */
  private async startCompaction(): Promise<void> {
    const old = this.journal;
    let next: Journal;
    try {
      next = await createJournal(this.path, old.seq + 1);
    } catch {
      return; // keep appending to the current journal; the next batch retries
    }
    this.journal = next;
    await old.fh.close().catch(() => {});
    this.retired.push(old.path);
    const covered = [...this.retired];
    let xml: string;
    try {
      xml = this.snapshotXml();
    } catch {
      return; // the journals stay and are folded in by a later snapshot
    }
    this.compaction = (async () => {
      try {
        this.xmlSize = await writeAtomic(this.path, xml);
        for (const p of covered) await unlink(p).catch(ignoreMissing);
        await fsyncDir(dirname(this.path));
        this.retired = this.retired.filter((p) => !covered.includes(p));
      } catch {
        // qubes.xml is either the old or the new complete file, and every
        // journal is still there: nothing is lost, a later snapshot retries.
      }
    })().finally(() => {
      this.compaction = null;
    });
  }

  private snapshotXml(): string {
    const doc = this.provider ? this.provider() : this.state!.toDoc();
    return serializeQubesXml(doc);
  }
}

// ---------------------------------------------------------------------------

/** The acknowledged document: the loaded file with committed changes applied. */
class DocState {
  private globals: Omit<QubesDoc, 'domains'>;
  private domains = new Map<string, DomainDoc>();

  constructor(doc: QubesDoc, path: string) {
    this.globals = { labels: doc.labels, pools: doc.pools, properties: doc.properties, extra: doc.extra };
    for (const d of doc.domains) {
      if (this.domains.has(d.id)) throw new StoreError(path, `${path} is not a loadable Qubes store: duplicate domain id ${d.id}`);
      this.domains.set(d.id, d);
    }
  }

  apply(c: Change): void {
    switch (c.kind) {
      case 'domain':
        this.domains.set(c.doc.id, c.doc);
        break;
      case 'domain-entries': {
        // Missing when a newer qubes.xml is replayed over and a later record
        // removed the domain (as 'domain-removed' of a missing one is ignored).
        const d = this.domains.get(c.id);
        // a new object: the loaded document (Store.doc) may share the old one
        if (d) this.domains.set(c.id, applyEntries(d, c));
        break;
      }
      case 'domain-removed':
        this.domains.delete(c.id);
        break;
      case 'globals':
        this.globals = { labels: c.labels, pools: c.pools, properties: c.properties, extra: c.extra };
        break;
    }
  }

  /** In Qubes' order: dom0 first, then by name. */
  toDoc(): QubesDoc {
    const domains = [...this.domains.values()].map((d) => ({ d, key: d.klass === 'AdminVM' ? '' : '\u0001' + (propertyOf(d, 'name') ?? d.id) }));
    domains.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return { ...this.globals, domains: domains.map((x) => x.d) };
  }
}

/**
 * `d` with the entries of `c` changed, as Map and Set do it in the model.
 * Whole lists replace; sets and additions, in order, keep an entry's place
 * or append it. Done again over a domain that already holds the result, it
 * changes nothing (no deletion is ever replayed as one).
 */
function applyEntries(d: DomainDoc, c: DomainEntriesChange): DomainDoc {
  let features = c.features ?? d.features;
  if (c.setFeatures) {
    features = [...features];
    for (const [k, v] of c.setFeatures) {
      const i = features.findIndex(([name]) => name === k);
      if (i >= 0) features[i] = [k, v];
      else features.push([k, v]);
    }
  }
  let tags = c.tags ?? d.tags;
  if (c.addTags) {
    tags = [...tags];
    for (const t of c.addTags) if (!tags.includes(t)) tags.push(t);
  }
  return { ...d, properties: c.properties ?? d.properties, features, tags };
}

function propertyOf(d: DomainDoc, name: string): string | undefined {
  for (const [k, v] of d.properties) if (k === name) return v;
  return undefined;
}

/** Refuses what qubes.xml could not hold (and malformed changes) before anything is written. */
function checkChange(c: Change): void {
  switch (c?.kind) {
    case 'domain':
      serializeDomain(c.doc);
      return;
    case 'domain-entries':
      // what serializeDomain would refuse of these strings (all are text or attribute values)
      if (!isEntries(c as unknown as Record<string, unknown>)) throw new Error('malformed domain-entries change');
      for (const [k, v] of c.properties ?? []) {
        checkChars(k, 'property name');
        checkChars(v, 'property value');
      }
      for (const list of [c.features, c.setFeatures])
        for (const [k, v] of list ?? []) {
          checkChars(k, 'feature name');
          checkChars(v, 'feature value');
        }
      for (const list of [c.tags, c.addTags]) for (const t of list ?? []) checkChars(t, 'tag');
      return;
    case 'domain-removed':
      if (typeof c.id !== 'string') throw new Error('domain-removed without an id');
      return;
    case 'globals':
      serializeGlobals(c);
      for (const x of c.extra) parseXml(x);
      return;
    default:
      throw new Error(`unknown change kind ${JSON.stringify((c as { kind?: unknown })?.kind)}`);
  }
}

function isChange(v: unknown): v is Change {
  if (typeof v !== 'object' || v === null) return false;
  const c = v as Record<string, unknown>;
  if (c.kind === 'domain') {
    const d = c.doc as Record<string, unknown> | null;
    return (
      typeof d === 'object' &&
      d !== null &&
      typeof d.id === 'string' &&
      typeof d.klass === 'string' &&
      ['properties', 'features', 'tags', 'devices', 'volumeConfig', 'extra'].every((k) => Array.isArray(d[k]))
    );
  }
  if (c.kind === 'domain-entries') return isEntries(c);
  if (c.kind === 'domain-removed') return typeof c.id === 'string';
  if (c.kind === 'globals') return ['labels', 'pools', 'properties', 'extra'].every((k) => Array.isArray(c[k]));
  return false;
}

function isEntries(c: Record<string, unknown>): boolean {
  const pairs = (v: unknown) =>
    v === undefined || (Array.isArray(v) && v.every((p) => Array.isArray(p) && p.length === 2 && typeof p[0] === 'string' && typeof p[1] === 'string'));
  const strings = (v: unknown) => v === undefined || (Array.isArray(v) && v.every((s) => typeof s === 'string'));
  return typeof c.id === 'string' && pairs(c.properties) && pairs(c.features) && pairs(c.setFeatures) && strings(c.tags) && strings(c.addTags);
}

// ---------------------------------------------------------------------------
// Files

/** a unique name per snapshot, recognisable as a leftover by its '~' */
function tempPath(path: string): string {
  return `${path}~new.${randomBytes(6).toString('hex')}`;
}
/** Snapshots a killed daemon left half-written (also the older fixed name `qubes.xml~new`). */
async function removeTempLeftovers(path: string): Promise<void> {
  const stem = basename(path) + '~new';
  for (const n of await readdir(dirname(path))) {
    if (n === stem || n.startsWith(stem + '.')) await unlink(join(dirname(path), n)).catch(() => {});
  }
}
function journalPath(path: string, seq: number): string {
  return `${path}.journal.${seq}`;
}

async function listJournals(path: string): Promise<Array<{ seq: number; path: string }>> {
  const prefix = basename(path) + '.journal.';
  const names = await readdir(dirname(path));
  return names
    .filter((n) => n.startsWith(prefix) && /^[0-9]+$/.test(n.slice(prefix.length)))
    .map((n) => ({ seq: Number(n.slice(prefix.length)), path: join(dirname(path), n) }))
    .sort((a, b) => a.seq - b.seq);
}

async function loadXml(path: string, haveJournals: boolean, fresh?: () => QubesDoc): Promise<{ doc: QubesDoc; size: number; created: boolean }> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code !== 'ENOENT') throw new StoreError(path, `cannot read store ${path}: ${err.message}`);
    if (haveJournals) {
      throw new StoreError(
        path,
        `store ${path} is missing but journal files exist beside it; refusing to start ` + '(restore qubes.xml or move the journal files away)',
      );
    }
    if (!fresh) throw new StoreError(path, `store ${path} does not exist`);
    return { doc: fresh(), size: 0, created: true };
  }
  try {
    return { doc: parseQubesXml(bytes), size: bytes.length, created: false };
  } catch (e) {
    const reason = e instanceof XmlError ? `malformed XML at ${e.message}` : (e as Error).message;
    throw new StoreError(path, `${path} is not a loadable Qubes store: ${reason}`);
  }
}

async function replay(file: string, state: DocState, store: string): Promise<void> {
  const bad = (why: string) => new StoreError(store, `journal ${file} of store ${store} is damaged: ${why}; ` + 'refusing to start (nothing was modified)');
  let buf: Buffer;
  try {
    buf = await readFile(file);
  } catch (e) {
    throw new StoreError(store, `cannot read journal ${file}: ${(e as Error).message}`);
  }
  let payloads: Buffer[];
  try {
    payloads = readRecords(buf).payloads;
  } catch (e) {
    if (e instanceof JournalCorruption) throw bad(e.message);
    throw e;
  }
  payloads.forEach((p, i) => {
    let changes: unknown;
    try {
      changes = JSON.parse(p.toString('utf8'));
    } catch {
      throw bad(`record ${i + 1} is not valid JSON`);
    }
    if (!Array.isArray(changes) || !changes.every(isChange)) throw bad(`record ${i + 1} does not hold a list of changes`);
    for (const c of changes) state.apply(c);
  });
}

async function createJournal(path: string, seq: number): Promise<Journal> {
  const jp = journalPath(path, seq);
  // O_DSYNC makes each write durable before it returns: one system call per
  // commit instead of a write and an fdatasync.
  const fh = await open(jp, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_DSYNC, 0o660);
  try {
    await fsyncDir(dirname(path));
  } catch (e) {
    await fh.close();
    await unlink(jp).catch(() => {});
    throw e;
  }
  return { seq, path: jp, fh, size: 0, allocated: 0, records: 0 };
}

/**
 * Journal space is written with zeros ahead of use, so that a commit
 * overwrites allocated blocks and its fdatasync flushes just data: appending
 * would also force a filesystem journal commit (new size and blocks) on every
 * record, and with it any other dirty data, such as a snapshot being written.
 * On replay the zeros read as a torn tail and are ignored.
 */
const PREALLOCATE = 4 << 20;
const ZEROS = Buffer.alloc(1 << 20);

async function preallocate(j: Journal, needed: number): Promise<void> {
  const target = Math.ceil(needed / PREALLOCATE) * PREALLOCATE;
  for (let at = j.allocated; at < target; at += ZEROS.length) await writeFully(j.fh, ZEROS.subarray(0, Math.min(ZEROS.length, target - at)), at);
  j.allocated = target;
}

function writeFullySync(fd: number, buf: Buffer, position: number): void {
  for (let off = 0; off < buf.length;) {
    const n = writeSync(fd, buf, off, buf.length - off, position + off);
    if (n === 0) throw new Error('short write');
    off += n;
  }
}

async function writeFully(fh: FileHandle, buf: Buffer, position: number): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off, position + off);
    if (bytesWritten === 0) throw new Error('short write');
    off += bytesWritten;
  }
}

/**
 * Replaces `path` with `text` so that it is at every instant either the old or
 * the new complete file. Keeps the owner and group of the file it replaces;
 * mode 0660 as Qubes sets it. Returns the size written.
 */
async function writeAtomic(path: string, text: string): Promise<number> {
  const data = Buffer.from(text, 'utf8');
  await atomicWriteFile(path, data, { mode: 0o660, exactMode: true, keepOwner: true, tempPath });
  return data.length;
}

function ignoreMissing(e: NodeJS.ErrnoException): void {
  if (e.code !== 'ENOENT') throw e;
}
