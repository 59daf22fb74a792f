/**
 * The operator's HTTP surface of `sluice run --http`: node:http, one router. Before routing: the
 * Host allowlist and Origin check (security.ts); then `/healthz` and `/readyz` (no token needed),
 * `/login`, and everything else behind the token: `/metrics`, `/api/v1/*`, and the page.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../core/logger.js';
import { slotNameOf, type SluiceConfig } from '../config/schema.js';
import type { Pipeline } from '../pipeline/orchestrator.js';
import { handleApi, send, sendError, type ApiContext } from './api.js';
import { Metrics } from './metrics.js';
import { servePage } from './page.js';
import { accessOf, loginCookie, refusal, secureHeaders, tokenOf, writeTokenFile, type HttpSettings } from './security.js';
import { EventStream } from './sse.js';
import { StatusFeed } from './status-feed.js';
import { VerifyJobs } from './verify-jobs.js';

export interface HttpSurface {
  /** http://host:port (the port the system chose when 0 was asked). */
  readonly url: string;
  /** The page's login link (carries the token). */
  readonly loginUrl: string;
  close(): Promise<void>;
}

export async function startHttp(cfg: SluiceConfig, pipeline: () => Pipeline, settings: HttpSettings, log: Logger, print: (line: string) => void = (l) => process.stdout.write(l + '\n')): Promise<HttpSurface> {
  const feed = new StatusFeed(cfg, pipeline);
  const stream = new EventStream(feed, pipeline);
  const metrics = new Metrics(cfg.pipeline.name, slotNameOf(cfg));
  const verify = new VerifyJobs(cfg, (job) => pipeline().events.emit('verify.completed', { verifyId: job.id, equal: job.equal, error: job.error, tables: job.tables }));
  const ctx: ApiContext = { cfg, feed, stream, metrics, verify, log: log.child({ part: 'http' }) };
  const server = createServer((req, res) => {
    void route(ctx, settings, req, res).catch((err) => {
      if (!res.headersSent) sendError(res, err);
      else res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(settings.port, settings.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const hostPart = settings.host.includes(':') ? `[${settings.host}]` : settings.host;
  const url = `http://${hostPart}:${port}`;
  // Now that the port is known the page's own host is allowed too (it may be a name from api.allowedHosts).
  writeTokenFile(settings);
  const loginUrl = `${url}/login?token=${encodeURIComponent(settings.token)}`;
  if (settings.tokenFile) print(`sluice: operator page at ${loginUrl} (token in ${settings.tokenFile}, new at each start)`);
  else print(`sluice: operator page at ${url}/login?token=<api.token>`);
  ctx.log.info('http listening', { url });
  return {
    url,
    loginUrl,
    close: async () => {
      stream.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function route(ctx: ApiContext, s: HttpSettings, req: IncomingMessage, res: ServerResponse): Promise<void> {
  secureHeaders(res);
  const refused = refusal(s, req);
  if (refused) return send(res, refused.status, { code: refused.code, message: refused.message, fix: refused.fix });
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (url.pathname === '/healthz') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    return void res.end('ok\n');
  }
  if (url.pathname === '/login') {
    const token = url.searchParams.get('token');
    if (!accessOf(s, token)) return send(res, 401, { code: 'BAD_TOKEN', message: 'that token is not this server’s', fix: 'use the login link sluice printed at start' });
    // The token leaves the address bar: the cookie carries it from now on.
    res.writeHead(303, { 'Set-Cookie': loginCookie(token!), Location: '/' });
    return void res.end();
  }
  const access = accessOf(s, tokenOf(req));
  // For probes: the answer's status without a token; what is wrong only with one.
  if (url.pathname === '/readyz') return readyz(ctx, res, access !== null);
  if (!access) {
    if (url.pathname === '/' && req.method === 'GET') {
      res.writeHead(401, { 'Content-Type': 'text/plain; charset=utf-8' });
      return void res.end('Log in with the link sluice printed at start (/login?token=…).\n');
    }
    return send(res, 401, { code: 'UNAUTHENTICATED', message: 'this needs the token', fix: 'send Authorization: Bearer <token>, or open the login link sluice printed' });
  }
  if (url.pathname === '/metrics') {
    ctx.metrics.update(await ctx.feed.snapshot());
    res.writeHead(200, { 'Content-Type': ctx.metrics.contentType });
    return void res.end(await ctx.metrics.text());
  }
  if (url.pathname.startsWith('/api/v1/') || url.pathname === '/api/v1') return handleApi(ctx, req, res, url, access);
  if (req.method === 'GET' && servePage(url.pathname, res)) return;
  send(res, 404, { code: 'NOT_FOUND', message: `nothing at ${url.pathname}`, fix: 'the page is at /, the API under /api/v1 (docs/api.md)' });
}

/** 200 when the pipeline runs, the source answers and no table failed; else 503. */
async function readyz(ctx: ApiContext, res: ServerResponse, detail: boolean): Promise<void> {
  const st = await ctx.feed.status().catch(() => null);
  const failed = st ? st.tables.filter((t) => t.state === 'failed').map((t) => t.name) : [];
  const ready = !!st && st.pipeline.running && !st.pipeline.sourceError && failed.length === 0;
  send(res, ready ? 200 : 503, detail ? { ready, running: st?.pipeline.running ?? null, sourceError: st?.pipeline.sourceError ?? null, failedTables: failed } : { ready });
}
