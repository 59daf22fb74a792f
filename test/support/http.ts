/** `sluice run --http` for tests: starts it on a free port and reads the login link it prints once. */
import { spawnSluice, type Running } from './sluice.js';

export interface HttpRun {
  run: Running;
  /** http://127.0.0.1:port */
  base: string;
  token: string;
  loginUrl: string;
  /** fetch with the token as a Bearer header (and JSON when a body is given). */
  call(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; json: any; text: string; headers: Headers }>;
}

export async function startHttpRun(config: string, env: NodeJS.ProcessEnv = {}, addr = '127.0.0.1:0'): Promise<HttpRun> {
  const run = spawnSluice(['run', '--http', addr], { config, env });
  await run.waitForOutput(/operator page at \S+\/login\?token=\S+/, 60_000);
  await run.waitForOutput(/pipeline running/, 60_000);
  const m = /operator page at (http:\/\/\S+?)\/login\?token=(\S+)/.exec(run.output())!;
  const base = m[1];
  const token = decodeURIComponent(m[2]);
  const call: HttpRun['call'] = async (method, path, body, headers = {}) => {
    const r = await fetch(base + path, {
      method,
      headers: { Authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }), ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      redirect: 'manual',
    });
    const text = await r.text();
    let json: any = null;
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
    return { status: r.status, json, text, headers: r.headers };
  };
  return { run, base, token, loginUrl: `${base}/login?token=${encodeURIComponent(token)}`, call };
}
