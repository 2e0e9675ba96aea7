// The floor of bench/rest.bench.ts's REST collection: the least any Node HTTP
// gateway in front of qubesd could do for GET /vms?fields=...: node:http with
// no routing, validation, authentication, policy or rendering; each request
// makes the same Admin API calls as the gateway (rest-calls.ts) and answers
// the gateway's own answer, read once from a file, with the same headers.
// It shows what the three-process chain (load generator, gateway, qubesd)
// costs by itself, beside the two-process direct client.
//   node dist/bench/rest-floor-gateway.js SOCKET list|list+getall BODY_FILE
// Prints "listening http://127.0.0.1:PORT" once it accepts requests.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { directCalls, isDirectMode } from './rest-calls.js';

const [socket, mode, bodyFile] = process.argv.slice(2);
if (!socket || !isDirectMode(mode) || !bodyFile) throw new Error('usage: rest-floor-gateway.js SOCKET list|list+getall BODY_FILE');
const body = readFileSync(bodyFile);
const headers = { 'content-type': 'application/json; charset=utf-8', 'content-length': String(body.length) };

const server = createServer((req, res) => {
  directCalls(socket, mode).then(
    () => {
      res.writeHead(200, headers);
      res.end(body);
    },
    (e: unknown) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(e));
    },
  );
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening http://127.0.0.1:${(server.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
