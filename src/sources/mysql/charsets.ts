/**
 * Text decoding of binlog strings by collation id (TABLE_MAP's charset metadata). The ids of the
 * charsets sluice meets are listed here; others come from the server (INFORMATION_SCHEMA.COLLATIONS,
 * passed in by the client) and are decoded when Node's TextDecoder knows the charset. 63 is binary:
 * such values stay bytes. MySQL's latin1 is Windows-1252 (the WHATWG decoder of that name).
 */
import { TextDecoder } from 'node:util';

export const BINARY_COLLATION = 63;

/** Collation id → charset name, for the common ids of MariaDB 10.x and MySQL 8. */
const KNOWN: ReadonlyMap<number, string> = (() => {
  const m = new Map<number, string>();
  const add = (charset: string, ids: number[]) => ids.forEach((id) => m.set(id, charset));
  add('latin1', [5, 8, 15, 31, 47, 48, 49, 94, 1029, 1032, 1039, 1055, 1071, 1072, 1073, 1118]);
  add('ascii', [11, 65, 1035, 1089]);
  add('utf8mb3', [33, 83, ...range(192, 215), 223, 576, 577, 1057, 1107, ...range(2048, 2092)]);
  add('utf8mb4', [45, 46, ...range(224, 247), ...range(255, 323), 1069, 1070, 1246, ...range(2304, 2352)]);
  add('binary', [63]);
  add('ucs2', [35, 90, ...range(128, 151), 159]);
  add('utf16', [54, 55, ...range(101, 124), 122]);
  add('utf16le', [56, 62]);
  add('utf32', [60, 61, ...range(160, 183)]);
  add('cp1250', [26, 34, 44, 66, 99]);
  add('cp1251', [14, 23, 50, 51, 52]);
  add('cp1256', [57, 67]);
  add('cp1257', [29, 58, 59]);
  add('latin2', [9, 21, 27, 77]);
  add('greek', [25, 70]);
  add('hebrew', [16, 71]);
  add('koi8r', [7, 74]);
  add('sjis', [13, 88]);
  add('cp932', [95, 96]);
  add('ujis', [12, 91]);
  add('eucjpms', [97, 98]);
  add('gbk', [28, 87]);
  add('gb2312', [24, 86]);
  add('big5', [1, 84]);
  add('euckr', [19, 85]);
  return m;
})();

function range(from: number, to: number): number[] {
  const out: number[] = [];
  for (let i = from; i <= to; i++) out.push(i);
  return out;
}

/** The WHATWG encoding label of a MySQL charset, or null when TextDecoder has none. */
const LABELS: Readonly<Record<string, string>> = {
  utf8mb4: 'utf-8',
  utf8mb3: 'utf-8',
  utf8: 'utf-8',
  latin1: 'windows-1252',
  ascii: 'windows-1252',
  ucs2: 'utf-16be',
  utf16: 'utf-16be',
  utf16le: 'utf-16le',
  cp1250: 'windows-1250',
  cp1251: 'windows-1251',
  cp1256: 'windows-1256',
  cp1257: 'windows-1257',
  latin2: 'iso-8859-2',
  greek: 'iso-8859-7',
  hebrew: 'iso-8859-8',
  koi8r: 'koi8-r',
  sjis: 'shift_jis',
  cp932: 'shift_jis',
  ujis: 'euc-jp',
  eucjpms: 'euc-jp',
  gbk: 'gbk',
  gb2312: 'gbk',
  big5: 'big5',
  euckr: 'euc-kr',
};

const decoders = new Map<string, TextDecoder>();

/** Decodes text bytes of a charset into a string; throws for a charset Node cannot decode. */
export function decodeText(charset: string, bytes: Buffer): string {
  if (charset === 'utf8mb4' || charset === 'utf8mb3' || charset === 'utf8') return bytes.toString('utf8');
  let d = decoders.get(charset);
  if (!d) {
    const label = LABELS[charset];
    if (!label) throw new Error(`binlog: cannot decode text in charset ${charset}`);
    d = new TextDecoder(label, { fatal: false });
    decoders.set(charset, d);
  }
  return d.decode(bytes);
}

/** The charset of a collation id, from `extra` (the server's own list, first) or the known list; null when unknown. */
export function charsetOf(collationId: number, extra?: ReadonlyMap<number, string>): string | null {
  return extra?.get(collationId) ?? KNOWN.get(collationId) ?? null;
}
