/**
 * PostgreSQL's COPY text format (what a source chunk is read in for a DuckDB destination) parsed into
 * rows of text values: one row per line, columns split at tabs, `\N` for NULL, backslash escapes
 * undone. The values are PostgreSQL's text forms, which types.ts converts for DuckDB.
 */
import type { Readable } from 'node:stream';

const ESCAPES: Readonly<Record<string, string>> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\' };

/** One COPY text field: `\N` is NULL; `\b \f \n \r \t \v \\`, octal `\ooo` and hex `\xhh` are undone (bytes, then UTF-8). */
export function copyTextField(field: string): string | null {
  if (field === '\\N') return null;
  if (!field.includes('\\')) return field;
  const bytes: number[] = [];
  let plain = '';
  const flushPlain = () => {
    if (plain) for (const b of Buffer.from(plain, 'utf8')) bytes.push(b);
    plain = '';
  };
  for (let i = 0; i < field.length; i++) {
    const ch = field[i];
    if (ch !== '\\' || i === field.length - 1) {
      plain += ch;
      continue;
    }
    const next = field[i + 1];
    const octal = /^[0-7]{1,3}/.exec(field.slice(i + 1, i + 4));
    const hex = next === 'x' ? /^[0-9a-fA-F]{1,2}/.exec(field.slice(i + 2, i + 4)) : null;
    if (octal) {
      flushPlain();
      bytes.push(parseInt(octal[0], 8) & 0xff);
      i += octal[0].length;
    } else if (hex) {
      flushPlain();
      bytes.push(parseInt(hex[0], 16));
      i += 1 + hex[0].length;
    } else {
      plain += ESCAPES[next] ?? next;
      i += 1;
    }
  }
  flushPlain();
  return Buffer.from(bytes).toString('utf8');
}

/** Every row of a COPY text stream, read to its end. */
export async function readCopyText(stream: Readable): Promise<(string | null)[][]> {
  const rows: (string | null)[][] = [];
  let rest: Buffer = Buffer.alloc(0);
  for await (const chunk of stream) {
    const buf: Buffer = rest.length ? Buffer.concat([rest, chunk as Buffer]) : (chunk as Buffer);
    let start = 0;
    for (let nl = buf.indexOf(10, start); nl !== -1; nl = buf.indexOf(10, start)) {
      rows.push(buf.toString('utf8', start, nl).split('\t').map(copyTextField));
      start = nl + 1;
    }
    rest = buf.subarray(start);
  }
  if (rest.length) rows.push(rest.toString('utf8').split('\t').map(copyTextField));
  return rows;
}
