// Helpers for the REST gateway tests: the real stack started by
// bin/qubes-stack on a fresh bin/qubes-install prefix (qubesd, the policy
// daemon, the qrexec dispatcher and bin/qubes-rest), the gateway's URL and
// first dom0 token read from the stack's own output, tokens made with the
// real `qubes-rest token create`, and a small HTTP client over fetch.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { call, type Reply } from '../helpers/qubesd.js';
import { install } from '../../rpc-services/install.js';
import { loadConfig, type StackConfig } from '../../lib/stack-config.js';
import { BIN, runStack } from '../rpc-services/helpers.js';

export interface RestStack {
  prefix: string;
  config: StackConfig;
  /** http://127.0.0.1:PORT/rest/v0 */
  url: string;
  /** the dom0 token qubes-stack created on first start */
  token: string;
  output(): string;
  /** a dom0 call on qubesd.sock; throws on an exception */
  dom0(method: string, dest?: string, arg?: string, payload?: string): Promise<Reply>;
  stop(): Promise<void>;
}

/**
 * Install under a temporary prefix, add policy files (and `restConf`, a
 * qubes-rest.conf.d drop-in, e.g. "ask_timeout = 2"), run bin/qubes-stack
 * until it is ready.
 */
export async function startRestStack(policy: Record<string, string> = {}, entries: 'handler' | 'socket' = 'handler', restConf?: string): Promise<RestStack> {
  const prefix = mkdtempSync(join(tmpdir(), 'rest-test-'));
  install({ prefix, entries });
  const config = loadConfig(join(prefix, 'etc', 'qubes', 'stack.json'));
  for (const [file, text] of Object.entries(policy)) writeFileSync(join(config.policy.dir, file), text);
  if (restConf !== undefined) {
    const dropIns = join(prefix, 'etc', 'qubes', 'qubes-rest.conf.d');
    mkdirSync(dropIns, { recursive: true });
    writeFileSync(join(dropIns, '50-test.conf'), restConf);
  }
  // a loaded machine starts the four processes slowly: a minute, not runStack's 30 s
  const stack = await runStack(prefix, [], 60_000);
  const output = stack.output();
  const url = /^qubes-rest: listening on (\S+)$/m.exec(output)?.[1];
  const token = /^qubes-rest: dom0 token .*: (\S+)$/m.exec(output)?.[1];
  if (!url || !token) throw new Error(`no gateway line or token in:\n${output}`);
  return {
    prefix,
    config,
    url,
    token,
    output: () => stack.output(),
    dom0: async (method, dest = 'dom0', arg = '', payload = '') => {
      const r = await call(config.qubesd.socket, method, dest, arg, payload);
      if (!r.ok) throw new Error(`${method} ${dest} ${arg}: ${r.type} ${r.message}`);
      return r;
    },
    stop: async () => {
      await stack.stop();
      rmSync(prefix, { recursive: true, force: true });
    },
  };
}

/** bin/qubes-rest with arguments; its exit code and output. */
export function qubesRest(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('/usr/bin/env', ['-u', 'NODE_OPTIONS', process.execPath, join(BIN, 'qubes-rest'), ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A new token for IDENTITY through the real CLI. */
export function createToken(prefix: string, identity: string, extra: string[] = []): string {
  const r = qubesRest(['token', 'create', '--prefix', prefix, '--as', identity, ...extra]);
  if (r.code !== 0) throw new Error(`token create failed: ${r.stderr}`);
  return r.stdout.trim();
}

export interface HttpResult {
  status: number;
  headers: Headers;
  text: string;
  json: unknown;
}

/** One request; `body` objects are sent as JSON. */
export async function http(url: string, method: string, token: string | null, body?: unknown, headers: Record<string, string> = {}): Promise<HttpResult> {
  const h: Record<string, string> = { ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  let payload: string | undefined;
  if (body !== undefined) {
    payload = typeof body === 'string' ? body : JSON.stringify(body);
    h['content-type'] ??= 'application/json';
  }
  const res = await fetch(url, { method, headers: h, ...(payload !== undefined ? { body: payload } : {}), redirect: 'manual' });
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}
