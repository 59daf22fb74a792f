/**
 * `/api/v1` (docs/api.md): reads (status, tables, runs, requests, modes, dependents, throttle,
 * verify jobs, webhook deliveries, in-place runs) and actions. Every action goes through the CLI's request path (src/control/), is
 * recorded in `_sluice.requests` with its actor and reason, and answers 202 with the request ids, or
 * 409/422 with {code, message, fix}.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { errorMessage, SluiceError } from '../core/errors.js';
import { TableName } from '../core/types.js';
import { destinationFor } from '../engines.js';
import { awaitAnswers, isRefusal, type Answers } from '../control/answers.js';
import { backfillParams, checkBackfill, MODE_HELP, pauseScope, recordRequests, tablesIn, throttleParams } from '../control/requests.js';
import { checkRollback } from '../control/rollback.js';
import type { SluiceConfig } from '../config/schema.js';
import type { Logger } from '../core/logger.js';
import type { Access } from './security.js';
import type { StatusFeed } from './status-feed.js';
import type { EventStream } from './sse.js';
import type { Metrics } from './metrics.js';
import type { VerifyJobs } from './verify-jobs.js';
import { deliveries, inplaceRuns } from './feeds.js';
import type { DestinationControl } from '../destinations/destination.js';

export interface ApiContext {
  cfg: SluiceConfig;
  feed: StatusFeed;
  stream: EventStream;
  metrics: Metrics;
  verify: VerifyJobs;
  log: Logger;
}

/** A refusal the API answers with: HTTP status, stable code, what happened, what to do. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly fix: string,
  ) {
    super(message);
  }
}

/** How long an action waits for the running pipeline's answer before it answers 202 "recorded". */
const ANSWER_WAIT_S = 5;
const MAX_BODY = 64 * 1024;
/** Options are named as in the JSON body. */
const field = (key: string) => key;

export function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify(body, null, 2));
}

export function sendError(res: ServerResponse, err: unknown): void {
  if (err instanceof ApiError) return send(res, err.status, { code: err.code, message: err.message, fix: err.fix });
  if (err instanceof SluiceError && err.isUsageError) return send(res, 422, { code: err.code, message: err.message, fix: fixOf(err.message) });
  send(res, 500, { code: err instanceof SluiceError ? err.code : 'INTERNAL', message: errorMessage(err), fix: 'see the sluice log; try again' });
}

/** sluice's refusals name their fix after the last "; " or ": "; the whole message when they do not. */
function fixOf(message: string): string {
  const i = Math.max(message.lastIndexOf('; '), message.lastIndexOf(': '));
  return i > 0 ? message.slice(i + 2) : message;
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
    throw new ApiError(415, 'JSON_ONLY', 'actions take a JSON body', 'send Content-Type: application/json');
  }
  let size = 0;
  const parts: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new ApiError(413, 'BODY_TOO_LARGE', `the body is over ${MAX_BODY} bytes`, 'send a smaller request');
    parts.push(chunk as Buffer);
  }
  try {
    const body = parts.length ? JSON.parse(Buffer.concat(parts).toString('utf8')) : {};
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new Error('not an object');
    return body as Record<string, unknown>;
  } catch {
    throw new ApiError(400, 'BAD_JSON', 'the body is not a JSON object', 'send a JSON object, e.g. {"tables": ["public.orders"]}');
  }
}

function stringList(v: unknown, name: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new ApiError(422, 'BAD_USAGE', `${name}: expected a list of table names`, `e.g. "${name}": ["public.orders"]`);
  return v as string[];
}

function optionalString(v: unknown, name: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new ApiError(422, 'BAD_USAGE', `${name}: expected a string`, `give ${name} as a string`);
  return v;
}

async function withControl<T>(cfg: SluiceConfig, fn: (c: DestinationControl) => Promise<T>): Promise<T> {
  const control = await destinationFor(cfg).openControl('sluice-api');
  try {
    return await fn(control);
  } finally {
    await control.close();
  }
}

/** Who acted, for `_sluice.requests.requested_by`: the API and the caller's address. */
function actorOf(req: IncomingMessage): string {
  return `api@${req.socket.remoteAddress ?? 'unknown'}`;
}

export async function handleApi(ctx: ApiContext, req: IncomingMessage, res: ServerResponse, url: URL, access: Access): Promise<void> {
  const path = url.pathname.replace(/^\/api\/v1/, '') || '/';
  const method = req.method ?? 'GET';
  if (method === 'GET' || method === 'HEAD') return read(ctx, req, res, path, url);
  if (access !== 'write') throw new ApiError(403, 'READ_ONLY_TOKEN', 'this token may read but not act', 'use the full token (api.token) to act');
  if (method !== 'POST' && method !== 'PATCH') throw new ApiError(405, 'METHOD_NOT_ALLOWED', `${method} is not used here`, 'actions are POST (PATCH for /throttle)');
  const body = await readJson(req);
  const action = `${method} ${path}`;
  try {
    const [status, answer] = await act(ctx, req, action, body);
    ctx.metrics.countRequest(path.slice(1).replace(/\//g, '_') || 'root', 'accepted');
    send(res, status, answer);
  } catch (err) {
    const conflict = err instanceof ApiError && err.status === 409;
    ctx.metrics.countRequest(path.slice(1).replace(/\//g, '_') || 'root', conflict ? 'conflict' : 'refused');
    throw err;
  }
}

async function read(ctx: ApiContext, req: IncomingMessage, res: ServerResponse, path: string, url: URL): Promise<void> {
  const { cfg } = ctx;
  const limit = Math.min(500, Math.max(1, Number(url.searchParams.get('limit')) || 100));
  if (path === '/status') return send(res, 200, await ctx.feed.status());
  if (path === '/events') return ctx.stream.open(req, res);
  if (path === '/events/recent') return send(res, 200, ctx.stream.events());
  if (path === '/modes') return send(res, 200, MODE_HELP);
  if (path === '/runs') {
    const table = url.searchParams.get('table');
    return send(res, 200, await withControl(cfg, (c) => c.listRuns(cfg.pipeline.name, table ? tablesIn(cfg, [table])[0] : null, limit)));
  }
  if (path === '/requests') return send(res, 200, await withControl(cfg, (c) => c.listRequests(cfg.pipeline.name, limit)));
  if (path === '/throttle') return send(res, 200, (await ctx.feed.status()).pipeline.throttle);
  if (path === '/verify') return send(res, 200, ctx.verify.list());
  if (path === '/deliveries') return send(res, 200, deliveries(cfg, limit));
  if (path === '/inplace') return send(res, 200, await inplaceRuns(cfg, Math.min(limit, 20)));
  const verifyId = /^\/verify\/(\d+)$/.exec(path);
  if (verifyId) {
    const job = ctx.verify.get(Number(verifyId[1]));
    if (!job) throw new ApiError(404, 'NOT_FOUND', `no verify job ${verifyId[1]} (jobs are kept in memory until restart)`, 'GET /api/v1/verify lists them');
    return send(res, 200, job);
  }
  const table = /^\/tables\/([^/]+)(\/dependents)?$/.exec(path);
  if (table) {
    const name = tablesIn(cfg, [decodeURIComponent(table[1])])[0];
    const target = { schema: cfg.destination.schema, name: TableName.parse(name).name };
    if (table[2]) return send(res, 200, { table: name, dependents: await withControl(cfg, (c) => c.dropDependents(target)) });
    const status = (await ctx.feed.status()).tables.find((t) => t.name === name) ?? null;
    const runs = await withControl(cfg, (c) => c.listRuns(cfg.pipeline.name, name, limit));
    const verify = ctx.verify.list().find((j) => j.state !== 'running' && j.tables.includes(name)) ?? null;
    return send(res, 200, { table: name, status, runs, lastVerify: verify });
  }
  throw new ApiError(404, 'NOT_FOUND', `no endpoint GET /api/v1${path}`, 'see docs/api.md');
}

async function act(ctx: ApiContext, req: IncomingMessage, action: string, body: Record<string, unknown>): Promise<[number, unknown]> {
  const { cfg } = ctx;
  const reason = optionalString(body.reason, 'reason');
  const actor = actorOf(req);
  switch (action) {
    case 'POST /backfills': {
      const tables = tablesIn(cfg, stringList(body.tables, 'tables'));
      const { mode, params } = backfillParams(
        {
          mode: optionalString(body.mode, 'mode'),
          strategy: optionalString(body.strategy, 'strategy'),
          where: optionalString(body.where, 'where'),
          parallelism: body.parallelism as number | string | undefined,
          keepArchive: Boolean(body.keepArchive),
          cascade: Boolean(body.cascade),
          reason,
        },
        field,
      );
      if (mode === 'truncate' || mode === 'drop') {
        const expected = tables.length === 1 ? tables[0] : `${tables.length} tables`;
        if (body.confirm !== expected) {
          throw new ApiError(422, 'CONFIRMATION_REQUIRED', `mode ${mode} leaves the destination table partial until the load ends`, `confirm by giving "confirm": "${expected}"`);
        }
      }
      await checkBackfill(cfg, tables, params, field);
      return answered(await record(ctx, 'backfill', tables, params, actor));
    }
    case 'POST /backfills/cancel':
      return answered(await record(ctx, 'cancel', tablesIn(cfg, stringList(body.tables, 'tables')), reason ? { reason } : {}, actor));
    case 'POST /pause':
    case 'POST /resume': {
      const params: Record<string, unknown> = { scope: pauseScope(body.scope, field) };
      if (reason) params.reason = reason;
      return answered(await record(ctx, action === 'POST /pause' ? 'pause' : 'resume', ['*'], params, actor));
    }
    case 'PATCH /throttle':
      return answered(await record(ctx, 'throttle', ['*'], throttleParams(body, field), actor));
    case 'POST /verify': {
      const names = stringList(body.tables, 'tables');
      const tables = names.length ? tablesIn(cfg, names) : cfg.tables.map((t) => TableName.format(TableName.parse(t.name)));
      const busy = ctx.verify.running();
      if (busy) throw new ApiError(409, 'VERIFY_RUNNING', `verify job ${busy.id} is still running`, `wait for GET /api/v1/verify/${busy.id} to be done`);
      const job = ctx.verify.start(tables, optionalString(body.where, 'where') || null, actor, reason ?? null);
      ctx.log.info('verify started from the API', { job: job.id, tables, actor, reason });
      return [202, { verifyId: job.id, state: job.state }];
    }
    case 'POST /rollback': {
      const tables = tablesIn(cfg, stringList(body.tables, 'tables'));
      await checkRollback(cfg, tables);
      const params: Record<string, unknown> = { keepArchive: Boolean(body.keepArchive) };
      if (reason) params.reason = reason;
      return answered(await record(ctx, 'rollback', tables, params, actor));
    }
    default:
      throw new ApiError(404, 'NOT_FOUND', `no action ${action.replace(' ', ' /api/v1')}`, 'see docs/api.md');
  }
}

async function record(ctx: ApiContext, kind: string, tables: string[], params: Record<string, unknown>, actor: string): Promise<{ ids: number[]; answers: Answers }> {
  const ids = await recordRequests(ctx.cfg, kind, tables, params, actor, ctx.log);
  ctx.log.info('request recorded from the API', { request: kind, tables, actor, reason: params.reason });
  return { ids, answers: await awaitAnswers(ctx.cfg, ids, ANSWER_WAIT_S) };
}

/** 202 with the ids and answers; a refusal by the running pipeline is 409 (already loading) or 422. */
function answered({ ids, answers }: { ids: number[]; answers: Answers }): [number, unknown] {
  const refused = answers.rows.filter((r) => isRefusal(r.outcome));
  if (refused.length) {
    const message = refused.map((r) => `${r.table_name}: ${r.outcome}`).join('; ');
    const already = refused.every((r) => /already/.test(r.outcome));
    throw new ApiError(already ? 409 : 422, already ? 'CONFLICT' : 'REFUSED', message, already ? 'cancel it first, or wait until it streams again' : fixOf(message));
  }
  return [
    202,
    {
      requestIds: ids,
      answered: answers.answered,
      running: answers.running,
      answers: answers.rows.map((r) => ({ table: r.table_name, outcome: r.outcome })),
    },
  ];
}
