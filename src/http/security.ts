/**
 * Who may use the operator's surface (docs/api.md, "Security"): off unless asked; loopback by
 * default; a non-loopback address needs `api.token`. Tokens come from the config or the environment,
 * else one is generated per start into a 0600 file. The browser logs in once with the token and keeps
 * an HttpOnly SameSite=Strict cookie. Writes are JSON POST/PATCH only, from the same origin, to an
 * allowed Host (no DNS rebinding, no cross-site form posts).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SluiceError } from '../core/errors.js';
import type { SluiceConfig } from '../config/schema.js';

export const DEFAULT_LISTEN = '127.0.0.1:7433';
export const COOKIE = 'sluice_token';

export interface HttpSettings {
  host: string;
  port: number;
  /** The full token: reads and actions. */
  token: string;
  /** Where a generated token was written (null: it came from the config or the environment). */
  tokenFile: string | null;
  readOnlyToken: string | null;
  /** Host header names accepted (lowercase, without port). */
  allowedHosts: Set<string>;
}

export type Access = 'write' | 'read';

const LOOPBACK = ['127.0.0.1', 'localhost', '::1', '[::1]'];

export function isLoopback(host: string): boolean {
  return LOOPBACK.includes(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** host:port, [v6]:port or a bare port. */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(listen) ?? (/^\d+$/.test(listen) ? [listen, undefined, '127.0.0.1', listen] : null);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new SluiceError('CONFIG_INVALID', `api.listen ${listen}: expected host:port, e.g. ${DEFAULT_LISTEN}`);
  }
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

/**
 * The surface's settings, or null when it is off (no `--http`, no `api:`). Checked before the
 * pipeline starts: a non-loopback address without a token is refused (exit 2) naming `api.token`.
 */
export function httpSettings(cfg: SluiceConfig, flag: string | boolean | undefined, env: NodeJS.ProcessEnv): HttpSettings | null {
  if (flag === undefined && !cfg.api) return null;
  const { host, port } = parseListen(typeof flag === 'string' ? flag : cfg.api?.listen ?? DEFAULT_LISTEN);
  const given = cfg.api?.token ?? env.SLUICE_API_TOKEN;
  if (!given && !isLoopback(host)) {
    throw new SluiceError(
      'CONFIG_INVALID',
      `the HTTP API would listen on ${host}, which is not a loopback address, without a token: set api.token in the config (or SLUICE_API_TOKEN), or listen on 127.0.0.1`,
    );
  }
  const logDir = cfg.log.type === 'embedded' ? cfg.log.path : join('.sluice', cfg.pipeline.name);
  const token = given ?? randomBytes(32).toString('base64url');
  const tokenFile = given ? null : join(logDir, 'api-token');
  const readOnlyToken = cfg.api?.readOnlyToken ?? env.SLUICE_API_READ_ONLY_TOKEN ?? null;
  if (readOnlyToken && readOnlyToken === token) throw new SluiceError('CONFIG_INVALID', 'api.readOnlyToken is the same as api.token: give the read-only token a value of its own');
  const allowedHosts = new Set([...LOOPBACK, host, ...(cfg.api?.allowedHosts ?? [])].map((h) => h.toLowerCase()));
  return { host, port, token, tokenFile, readOnlyToken, allowedHosts };
}

/** Writes a generated token where only this user can read it (the CLI and scripts read it from there). */
export function writeTokenFile(s: HttpSettings): void {
  if (!s.tokenFile) return;
  mkdirSync(dirname(s.tokenFile), { recursive: true });
  writeFileSync(s.tokenFile, s.token + '\n', { mode: 0o600 });
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export function accessOf(s: HttpSettings, token: string | null): Access | null {
  if (!token) return null;
  if (same(token, s.token)) return 'write';
  if (s.readOnlyToken && same(token, s.readOnlyToken)) return 'read';
  return null;
}

/** The token a request carries: `Authorization: Bearer …`, else the login cookie. */
export function tokenOf(req: IncomingMessage): string | null {
  const auth = req.headers.authorization;
  if (auth?.startsWith('Bearer ')) return auth.slice(7).trim();
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === COOKIE) return decodeURIComponent(v.join('='));
  }
  return null;
}

/** The Host header's name without its port, lowercase. */
function hostName(value: string | undefined): string | null {
  if (!value) return null;
  const m = /^(\[[^\]]+\]|[^:]+)(?::\d+)?$/.exec(value.trim().toLowerCase());
  return m ? m[1] : null;
}

/** Why a request is refused before it is routed (403 with code and fix), or null. */
export function refusal(s: HttpSettings, req: IncomingMessage): { status: number; code: string; message: string; fix: string } | null {
  const host = hostName(req.headers.host);
  if (!host || !s.allowedHosts.has(host)) {
    return { status: 403, code: 'HOST_NOT_ALLOWED', message: `Host ${req.headers.host ?? '(none)'} is not one this server answers to`, fix: 'use the address sluice printed, or add the name to api.allowedHosts' };
  }
  const write = req.method !== 'GET' && req.method !== 'HEAD';
  const origin = req.headers.origin;
  if (write && origin !== undefined) {
    let originHost: string | null = null;
    try {
      originHost = new URL(origin).host.toLowerCase();
    } catch {
      originHost = null;
    }
    if (originHost !== req.headers.host?.toLowerCase()) {
      return { status: 403, code: 'FOREIGN_ORIGIN', message: `a request from origin ${origin} may not act on this pipeline`, fix: "act from sluice's own page, or without an Origin header (curl, scripts)" };
    }
  }
  if (write && req.headers['sec-fetch-site'] === 'cross-site') {
    return { status: 403, code: 'FOREIGN_ORIGIN', message: 'a cross-site request may not act on this pipeline', fix: "act from sluice's own page" };
  }
  return null;
}

/** Headers every answer carries: no framing, no sniffing, scripts and styles only from here. */
export function secureHeaders(res: ServerResponse): void {
  res.setHeader('Content-Security-Policy', "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Cache-Control', 'no-store');
}

/** The login cookie: HttpOnly (no script reads it), SameSite=Strict (no other site sends it). */
export function loginCookie(token: string): string {
  return `${COOKIE}=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=/`;
}
