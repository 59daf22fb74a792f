/**
 * Loading sluice.yaml: `${VAR}` expansion, YAML parsing, SLUICE_* env and flag overrides, schema
 * validation with errors people can act on (`tables[2].strategy: expected one of ...`), and
 * redaction for logging. The shape and the defaults are in schema.ts.
 *
 * Precedence, highest first: flags (`overrides`) > SLUICE_* environment > the file > defaults.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { LineCounter, parseDocument, isMap, isPair, isScalar, isCollection } from 'yaml';
import type { Document, Node as YamlNode } from 'yaml';
import type { z } from 'zod';
import { SluiceError } from '../core/errors.js';
import { allowedKeysAt, configSchema, duplicateTableMessage, findDuplicateTables } from './schema.js';
import type { SluiceConfig } from './schema.js';

export type { SluiceConfig, ConfigInput } from './schema.js';

/** Values the CLI passes from its flags; they win over SLUICE_* env and the file. */
export interface ConfigOverrides {
  /** source.url */
  sourceUrl: string;
  /** destination.url */
  destinationUrl: string;
  /** log.path (embedded log only) */
  logPath: string;
}

export interface ParseConfigOptions {
  /** Environment for `${VAR}` expansion and SLUICE_* overrides; defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** File name used in error messages. */
  file?: string;
  overrides?: Partial<ConfigOverrides>;
}

export type LoadConfigOptions = Omit<ParseConfigOptions, 'file'>;

/** The SLUICE_* environment variables that override file keys, and the key each one sets. */
export const ENV_OVERRIDES = {
  SLUICE_SOURCE_URL: 'source.url',
  SLUICE_DESTINATION_URL: 'destination.url',
  SLUICE_LOG_PATH: 'log.path',
} as const;

export const CONFIG_DOC = 'docs/configuration.md';

// ---------------------------------------------------------------------------------------------
// ${VAR} expansion

const VAR_REF = /^([A-Za-z_][A-Za-z0-9_]*)(?::-([^]*))?$/;

/**
 * Replaces `${NAME}` with the variable's value and `${NAME:-default}` with the value, or with
 * `default` when the variable is unset or empty. `$${` is a literal `${`. Lines whose first
 * non-blank character is `#` (YAML comments) are left alone. Every unset variable without a
 * default is reported, with its line number, in one CONFIG_INVALID error.
 */
export function expandEnv(text: string, env: NodeJS.ProcessEnv): string {
  const problems: string[] = [];
  const lines = text.split('\n');
  const out = lines.map((line, index) => {
    const lineNo = index + 1;
    if (/^\s*#/.test(line) || !line.includes('$')) return line;
    let result = '';
    let i = 0;
    while (i < line.length) {
      if (line.startsWith('$${', i)) {
        result += '${';
        i += 3;
      } else if (line.startsWith('${', i)) {
        const close = line.indexOf('}', i + 2);
        if (close < 0) {
          problems.push(`line ${lineNo}: unterminated \${ (write $\${ for a literal \${)`);
          result += line.slice(i);
          break;
        }
        const inner = line.slice(i + 2, close);
        const m = VAR_REF.exec(inner);
        if (!m) {
          problems.push(
            `line ${lineNo}: invalid variable reference \${${inner}} (expected \${NAME} or \${NAME:-default}; write $\${ for a literal \${)`,
          );
        } else {
          const [, name, fallback] = m;
          const value = env[name];
          if (fallback !== undefined) result += value === undefined || value === '' ? fallback : value;
          else if (value !== undefined) result += value;
          else
            problems.push(
              `line ${lineNo}: environment variable ${name} is not set (set it, or give a default with \${${name}:-default})`,
            );
        }
        i = close + 1;
      } else {
        result += line[i];
        i++;
      }
    }
    return result;
  });
  if (problems.length > 0) {
    throw new SluiceError('CONFIG_INVALID', problems.join('\n'), { context: { problems } });
  }
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Issue formatting

/** `tables[2].strategy`: numbers in brackets, dots between keys, `(root)` for the whole config. */
export function formatPath(path: readonly PropertyKey[]): string {
  let s = '';
  for (const key of path) {
    if (typeof key === 'number') s += `[${key}]`;
    else {
      const k = String(key);
      if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(k)) s += s === '' ? k : `.${k}`;
      else s += `[${JSON.stringify(k)}]`;
    }
  }
  return s === '' ? '(root)' : s;
}

export interface ConfigIssue {
  path: string;
  message: string;
  /** 1-based line in the (expanded) YAML text, when it could be located. */
  line?: number;
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  switch (typeof value) {
    case 'object':
      return 'a mapping';
    case 'string':
      return 'a string';
    case 'number':
      return `the number ${value}`;
    case 'boolean':
      return `${value}`;
    default:
      return typeof value;
  }
}

function describeExpected(expected: string): string {
  switch (expected) {
    case 'object':
      return 'a mapping';
    case 'array':
      return 'a list';
    case 'int':
      return 'an integer';
    case 'number':
      return 'a number';
    case 'string':
      return 'a string';
    case 'boolean':
      return 'true or false';
    default:
      return expected;
  }
}

function getAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let cur = root;
  for (const key of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[key as string];
  }
  return cur;
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length];
}

function suggest(key: string, allowed: readonly string[]): string | undefined {
  const lower = key.toLowerCase();
  let best: string | undefined;
  let bestDist = Infinity;
  for (const candidate of allowed) {
    const d = candidate.toLowerCase() === lower ? 0 : editDistance(lower, candidate.toLowerCase());
    if (d < bestDist) {
      best = candidate;
      bestDist = d;
    }
  }
  return best !== undefined && bestDist <= Math.max(1, Math.floor(key.length / 3)) ? best : undefined;
}

function bound(n: number | bigint, inclusive: boolean | undefined, op: '>' | '<'): string {
  return `${op}${inclusive === false ? '' : '='} ${n}`;
}

/** Turns zod issues into `{ path, message }` pairs; `raw` is the validated input. */
interface LocatedIssue extends ConfigIssue {
  keys: PropertyKey[];
  unknownKey?: boolean;
}

function formatIssues(issues: readonly z.core.$ZodIssue[], raw: unknown): LocatedIssue[] {
  const out: LocatedIssue[] = [];
  for (const issue of issues) {
    const path = issue.path;
    const value = getAt(raw, path);
    switch (issue.code) {
      case 'unrecognized_keys': {
        const allowed = allowedKeysAt(path, value);
        for (const key of issue.keys) {
          const hint = allowed ? suggest(key, allowed) : undefined;
          const allowedText = allowed ? ` (allowed: ${allowed.join(', ')})` : '';
          out.push({
            keys: [...path, key],
            unknownKey: true,
            path: formatPath([...path, key]),
            message: hint ? `unknown key; did you mean ${hint}?${allowedText}` : `unknown key${allowedText}`,
          });
        }
        break;
      }
      case 'invalid_type':
        out.push({
          keys: path,
          path: formatPath(path),
          message:
            value === undefined
              ? `required (${describeExpected(issue.expected)})`
              : `expected ${describeExpected(issue.expected)}, got ${describeValue(value)}`,
        });
        break;
      case 'invalid_value': {
        const values = issue.values.map(String);
        const got = value === undefined ? 'nothing' : typeof value === 'string' ? JSON.stringify(value) : describeValue(value);
        out.push({
          keys: path,
          path: formatPath(path),
          message:
            value === undefined && values.length === 1
              ? `required (${values[0]})`
              : values.length === 1
                ? `expected ${values[0]}, got ${got}`
                : `expected one of ${values.join('|')}, got ${got}`,
        });
        break;
      }
      case 'invalid_union': {
        if (issue.discriminator !== undefined && 'options' in issue && issue.options) {
          const options = issue.options.map(String);
          const got = value === undefined ? undefined : typeof value === 'string' ? JSON.stringify(value) : describeValue(value);
          out.push({
            keys: path,
            path: formatPath(path),
            message: got === undefined ? `required (one of ${options.join('|')})` : `expected one of ${options.join('|')}, got ${got}`,
          });
        } else {
          out.push({ keys: path, path: formatPath(path), message: issue.message });
        }
        break;
      }
      case 'too_small': {
        const n = issue.minimum;
        let message: string;
        if (issue.origin === 'array') message = `must have at least ${n} ${n === 1 ? 'entry' : 'entries'}`;
        else if (issue.origin === 'string') message = n === 1 ? 'must not be empty' : `must be at least ${n} characters`;
        else message = `must be ${bound(n, issue.inclusive, '>')}${typeof value === 'number' ? `, got ${value}` : ''}`;
        out.push({ keys: path, path: formatPath(path), message });
        break;
      }
      case 'too_big': {
        const n = issue.maximum;
        let message: string;
        if (issue.origin === 'array') message = `must have at most ${n} ${n === 1 ? 'entry' : 'entries'}`;
        else if (issue.origin === 'string') message = `must be at most ${n} characters`;
        else message = `must be ${bound(n, issue.inclusive, '<')}${typeof value === 'number' ? `, got ${value}` : ''}`;
        out.push({ keys: path, path: formatPath(path), message });
        break;
      }
      default:
        out.push({ keys: path, path: formatPath(path), message: issue.message });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// YAML helpers

function lineOfPath(doc: Document, lc: LineCounter, path: readonly PropertyKey[], keyAtEnd: boolean): number | undefined {
  let node: unknown = doc.contents;
  let line: number | undefined = rangeLine(node, lc);
  for (let i = 0; i < path.length; i++) {
    if (!isCollection(node)) break;
    const key = path[i];
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && (isScalar(p.key) ? p.key.value : p.key) === key);
      if (!pair) break;
      if (last && keyAtEnd) return rangeLine(pair.key, lc) ?? line;
      node = pair.value;
      line = rangeLine(pair.value, lc) ?? rangeLine(pair.key, lc) ?? line;
    } else {
      const item = typeof key === 'number' ? node.items[key] : undefined;
      if (item === undefined) break;
      node = item;
      line = rangeLine(item, lc) ?? line;
    }
  }
  return line;
}

function rangeLine(node: unknown, lc: LineCounter): number | undefined {
  const range = (node as YamlNode | null | undefined)?.range;
  if (!range) return undefined;
  return lc.linePos(range[0]).line;
}

function prefix(file: string | undefined): string {
  return file ? `${file}: ` : '';
}

// ---------------------------------------------------------------------------------------------
// Parsing and loading

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Sets raw[section][key] = value when raw[section] is absent or a mapping (left alone otherwise, so validation reports it). */
function setIn(raw: Record<string, unknown>, section: string, key: string, value: string): void {
  const cur = raw[section];
  if (cur === undefined || cur === null) raw[section] = section === 'log' ? { type: 'embedded', [key]: value } : { [key]: value };
  else if (isPlainObject(cur)) cur[key] = value;
}

/**
 * Parses sluice.yaml text into a validated config with every default applied. Throws
 * SluiceError('CONFIG_INVALID') listing every problem as `<path>: <message>`.
 */
export function parseConfig(yamlText: string, opts: ParseConfigOptions = {}): SluiceConfig {
  const env = opts.env ?? process.env;
  const file = opts.file;

  let expanded: string;
  try {
    expanded = expandEnv(yamlText, env);
  } catch (err) {
    if (err instanceof SluiceError) {
      throw new SluiceError('CONFIG_INVALID', `${prefix(file)}${err.message.split('\n').join(`\n${prefix(file)}`)}`, {
        context: { ...err.context, file },
      });
    }
    throw err;
  }

  const lineCounter = new LineCounter();
  const doc = parseDocument(expanded, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    const lines = expanded.split('\n');
    const messages = doc.errors.map((e) => {
      const pos = lineCounter.linePos(e.pos[0]);
      const reason = e.message.split('\n')[0];
      const src = lines[pos.line - 1];
      const snippet = src !== undefined && src.trim() !== '' ? `\n    ${src}\n    ${' '.repeat(Math.max(0, pos.col - 1))}^` : '';
      return `${file ?? 'config'}:${pos.line}:${pos.col}: YAML syntax error at line ${pos.line}, column ${pos.col}: ${reason}${snippet}`;
    });
    throw new SluiceError('CONFIG_INVALID', messages.join('\n'), {
      context: { file, line: lineCounter.linePos(doc.errors[0].pos[0]).line },
    });
  }

  let raw: unknown;
  try {
    raw = doc.toJS();
  } catch (err) {
    throw new SluiceError('CONFIG_INVALID', `${prefix(file)}cannot read YAML: ${(err as Error).message}`, {
      cause: err,
      context: { file },
    });
  }
  if (raw === null || raw === undefined) {
    throw new SluiceError('CONFIG_INVALID', `${prefix(file)}the config is empty (see ${CONFIG_DOC})`, { context: { file } });
  }

  // Overrides: SLUICE_* env, then flags on top. Applied before validation so they are validated too.
  const origins = new Map<string, string>();
  if (isPlainObject(raw)) {
    const apply = (envName: keyof typeof ENV_OVERRIDES, flagValue: string | undefined, flag: string) => {
      const target = ENV_OVERRIDES[envName];
      const [section, key] = target.split('.') as [string, string];
      const envValue = env[envName];
      const value = flagValue !== undefined && flagValue !== '' ? flagValue : envValue !== undefined && envValue !== '' ? envValue : undefined;
      if (value === undefined) return;
      if (section === 'log' && isPlainObject(raw) && isPlainObject(raw.log) && raw.log.type !== undefined && raw.log.type !== 'embedded') return;
      // A URL override means nothing to a DuckDB file destination.
      if (section === 'destination' && isPlainObject(raw) && isPlainObject(raw.destination) && raw.destination.type === 'duckdb') return;
      setIn(raw as Record<string, unknown>, section, key, value);
      origins.set(target, value === flagValue ? flag : envName);
    };
    const o = opts.overrides ?? {};
    apply('SLUICE_SOURCE_URL', o.sourceUrl, 'the sourceUrl override');
    apply('SLUICE_DESTINATION_URL', o.destinationUrl, 'the destinationUrl override');
    apply('SLUICE_LOG_PATH', o.logPath, 'the logPath override');
  }

  const jetstream = isPlainObject(raw) && isPlainObject(raw.log) && raw.log.type === 'jetstream';
  const jetstreamIssue: ConfigIssue = {
    path: 'log.type',
    message: 'jetstream is not available yet; use embedded',
    line: lineOfPath(doc, lineCounter, ['log', 'type'], false),
  };

  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const issues: ConfigIssue[] = formatIssues(result.error.issues, raw).map(({ keys, unknownKey, ...issue }) => {
      const origin = origins.get(issue.path);
      return {
        ...issue,
        message: origin ? `${issue.message} (set by ${origin})` : issue.message,
        line: origin ? undefined : lineOfPath(doc, lineCounter, keys, unknownKey === true),
      };
    });
    if (isPlainObject(raw) && Array.isArray(raw.tables)) {
      for (const d of findDuplicateTables(raw.tables)) {
        const path = formatPath(['tables', d.index, 'name']);
        const message = duplicateTableMessage(d);
        if (!issues.some((i) => i.path === path && i.message === message)) {
          issues.push({ path, message, line: lineOfPath(doc, lineCounter, ['tables', d.index, 'name'], false) });
        }
      }
    }
    if (jetstream && !issues.some((i) => i.path === 'log.type')) issues.push(jetstreamIssue);
    throw configInvalid(file, issues);
  }
  if (jetstream) throw configInvalid(file, [jetstreamIssue]);
  const cfg = result.data;
  // A relative log.path written in the file means "beside the config file", wherever `sluice` runs
  // from; one given as an override (flag, SLUICE_LOG_PATH) is relative to the current directory.
  if (file && cfg.log.type === 'embedded' && !isAbsolute(cfg.log.path) && !origins.has('log.path')) {
    return { ...cfg, log: { ...cfg.log, path: resolve(dirname(file), cfg.log.path) } };
  }
  return cfg;
}

function configInvalid(file: string | undefined, issues: ConfigIssue[]): SluiceError {
  const lines = issues.map((i) => `  ${i.path}: ${i.message}${i.line !== undefined ? ` (line ${i.line})` : ''}`);
  const count = issues.length === 1 ? '1 problem' : `${issues.length} problems`;
  return new SluiceError(
    'CONFIG_INVALID',
    `invalid config${file ? ` ${file}` : ''} (${count}; see ${CONFIG_DOC}):\n${lines.join('\n')}`,
    { context: { file, issues } },
  );
}

/** Reads and parses a config file. A missing file is CONFIG_NOT_FOUND. */
export function loadConfig(file: string, opts: LoadConfigOptions = {}): SluiceConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new SluiceError(
        'CONFIG_NOT_FOUND',
        `config file ${file} not found; pass -c/--config PATH or create one (see ${CONFIG_DOC})`,
        { cause: err, context: { file } },
      );
    }
    throw new SluiceError('CONFIG_INVALID', `cannot read config file ${file}: ${(err as Error).message}`, {
      cause: err,
      context: { file },
    });
  }
  return parseConfig(text, { ...opts, file });
}

// ---------------------------------------------------------------------------------------------
// Redaction

/**
 * Replaces the password in a URL with `***`: `postgres://user:***@host/db`. Also masks a
 * `password=` query parameter. Strings that are not URLs are returned unchanged.
 */
export function redactUrl(url: string): string {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)(.*)$/is.exec(url);
  if (!m) return url;
  const [, scheme, authority, rest] = m;
  let auth = authority;
  const at = authority.lastIndexOf('@');
  if (at >= 0) {
    const userinfo = authority.slice(0, at);
    const colon = userinfo.indexOf(':');
    if (colon >= 0) auth = `${userinfo.slice(0, colon)}:***${authority.slice(at)}`;
  }
  const tail = rest.replace(/([?&]password=)[^&#]*/gi, '$1***');
  return `${scheme}${auth}${tail}`;
}

/** A deep copy of a config (or anything) with URL passwords replaced by `***`, for logging. */
export function redactConfig(cfg: unknown): unknown {
  if (typeof cfg === 'string') return redactUrl(cfg);
  if (Array.isArray(cfg)) return cfg.map(redactConfig);
  if (cfg !== null && typeof cfg === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(cfg)) out[k] = redactConfig(v);
    return out;
  }
  return cfg;
}
