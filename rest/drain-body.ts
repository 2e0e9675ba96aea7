// A request refused before its body was read (413: over the body limit; a
// body parser's 400, after which fastify closes the connection) is
// answered only after the rest of the body has been read and dropped, up to
// a bound. Answering and closing while the client is still sending makes
// many clients (fetch/undici among them) fail with EPIPE and never see the
// answer; reading on, as nginx's lingering close does, lets them read it.
import type { IncomingMessage } from 'node:http';

/** At most this much is read and dropped for an answer to be seen. */
const LINGER_BYTES = 64 << 20;
const LINGER_MS = 5000;

export function drainBody(req: IncomingMessage): Promise<void> {
  if (req.complete || req.destroyed) return Promise.resolve();
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > LINGER_BYTES) return Promise.resolve();
  return new Promise((resolve) => {
    let seen = 0;
    const done = (): void => {
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', done);
      req.off('close', done);
      req.off('error', done);
      resolve();
    };
    const onData = (chunk: Buffer): void => {
      seen += chunk.length;
      if (seen > LINGER_BYTES) done();
    };
    const timer = setTimeout(done, LINGER_MS);
    req.on('data', onData);
    req.once('end', done);
    req.once('close', done);
    req.once('error', done);
    req.resume();
  });
}
