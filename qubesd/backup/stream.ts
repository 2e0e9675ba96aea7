// A one-off backup of one qube whose archive is the reply itself
// (admin.vm.backup.Stream, our extension): the REST gateway's
// GET /vms/{id}.qbkp. The same plan, open-everything-first source and writer
// as a profile's backup; only the destination differs (the caller's
// connection), so the archive is Qubes' format 4 and restores anywhere.
// backup_timestamp is not set: qubesd cannot know the client kept the data.
import { PassThrough } from 'node:stream';
import type { QubesApp, Vm } from '../model/app.js';
import type { StorageManager } from '../storage/index.js';
import { ProtocolError, QubesValueError } from '../errors.js';
import { KNOWN_COMPRESSION_FILTERS, OPTIONAL_COMPRESSION_FILTERS } from './format.js';
import { openSource, planBackup } from './plan.js';
import { writeBackup } from './writer.js';
import type { ScryptParams } from './scrypt-file.js';

export interface StreamRequest {
  passphrase: Buffer;
  /** as a profile's `compression`: true (gzip), false, or a filter name */
  compression: boolean | string;
}

/** The values `compression` takes, as backup profiles allow them. */
export const STREAM_COMPRESSION = ['True', 'False', ...KNOWN_COMPRESSION_FILTERS, ...OPTIONAL_COMPRESSION_FILTERS] as const;

/**
 * The payload: `key=value` lines. `passphrase` (required, no NUL or
 * newline), `compression` (optional, default True).
 */
export function parseStreamPayload(payload: Buffer): StreamRequest {
  let passphrase: Buffer | null = null;
  let compression: boolean | string = true;
  for (const line of payload.toString('utf8').split('\n')) {
    if (line === '') continue;
    const eq = line.indexOf('=');
    const key = eq < 0 ? line : line.slice(0, eq);
    const value = eq < 0 ? '' : line.slice(eq + 1);
    if (key === 'passphrase') {
      if (!value || value.includes('\0')) throw QubesValueError('Invalid passphrase');
      passphrase = Buffer.from(value, 'utf8');
    } else if (key === 'compression') {
      if (!(STREAM_COMPRESSION as readonly string[]).includes(value)) throw QubesValueError(`Invalid compression: use ${STREAM_COMPRESSION.join(', ')}`);
      compression = value === 'True' ? true : value === 'False' ? false : value;
    } else {
      throw ProtocolError('Invalid payload: keys are passphrase and compression');
    }
  }
  if (!passphrase) throw ProtocolError('Invalid payload: no passphrase');
  return { passphrase, compression };
}

/**
 * Opens every file of the qube's backup (errors here reach the caller as
 * exceptions) and returns the archive as it is written, at the reader's pace.
 */
export async function streamQubeBackup(
  app: QubesApp,
  storage: StorageManager,
  vm: Vm,
  req: StreamRequest,
  signal: AbortSignal,
  scrypt?: ScryptParams,
): Promise<AsyncIterable<Buffer>> {
  const plan = planBackup(app, storage, { include: [vm.name], exclude: [] });
  const opened = await openSource(app, storage, plan);
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  const written = writeBackup(opened.source, out, {
    passphrase: req.passphrase,
    compression: req.compression,
    signal,
    ...(scrypt ? { scrypt } : {}),
  });
  // the writer ends `out` itself; a failure must end the reader's loop too
  written
    .then(
      () => undefined,
      (e: Error) => out.destroy(e),
    )
    .finally(() => void opened.close());
  async function* body(): AsyncGenerator<Buffer> {
    try {
      for await (const chunk of out) yield chunk as Buffer;
      await written;
    } finally {
      if (!out.writableFinished) out.destroy();
    }
  }
  return body();
}
