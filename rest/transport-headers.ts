// Headers that belong to the transport rather than to a route: every
// response carries them, including those a route writes itself after
// taking the response over from fastify (event streams, task watches, disk
// exports), which fastify's onSend hooks never see.
import type { RestOptions } from './options.js';

/** Strict-Transport-Security over HTTPS when hsts_max_age is positive (XAPI's option; read per response: SIGHUP may change it). */
export function transportHeaders(options: Readonly<RestOptions>): Record<string, string> {
  const https = Boolean(options.tls_cert && options.tls_key);
  return https && options.hsts_max_age > 0 ? { 'Strict-Transport-Security': `max-age=${options.hsts_max_age}` } : {};
}

/** The headers of a Server-Sent Events stream (/events, /asks): not cached, not buffered by a proxy. */
export function eventStreamHeaders(options: Readonly<RestOptions>): Record<string, string> {
  return { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', 'X-Accel-Buffering': 'no', ...transportHeaders(options) };
}
