/**
 * The operator's page: static files kept in src/http/page/ (no build step), served from the
 * package's own folder so they are found from dist/ and from a clean clone alike.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ServerResponse } from 'node:http';

const FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/util.js': { file: 'util.js', type: 'text/javascript; charset=utf-8' },
  '/dialogs.js': { file: 'dialogs.js', type: 'text/javascript; charset=utf-8' },
  '/pages.js': { file: 'pages.js', type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};

/** The package root: the nearest folder above this file with a package.json. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('sluice: cannot find the package root (package.json) above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
  return dir;
}

const PAGE_DIR = join(packageRoot(), 'src', 'http', 'page');

/** Serves one of the page's files; false when the path is not one. */
export function servePage(path: string, res: ServerResponse): boolean {
  if (path === '/favicon.ico') {
    res.writeHead(204);
    res.end();
    return true;
  }
  const f = FILES[path] ?? (path.startsWith('/t/') || path === '/activity' ? FILES['/'] : undefined);
  if (!f) return false;
  res.writeHead(200, { 'Content-Type': f.type });
  res.end(readFileSync(join(PAGE_DIR, f.file)));
  return true;
}
