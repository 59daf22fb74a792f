/**
 * Whether a column type change can be carried to a destination column by itself. Pure: the input
 * is two `format_type()` texts of PostgreSQL's built-in types (e.g. `character varying(120)`,
 * `numeric(12,2)`, `timestamp(3) without time zone`, `integer[]`), the output a verdict.
 *
 * A change is a widening when every value of the old type converts to the new one without loss
 * and without fail (so `ALTER … TYPE` on a table holding any such values succeeds and changes no
 * value beyond what the source's own ALTER did). Anything else is a narrowing (some values no longer
 * fit) or incompatible (the values' meaning changes: text → integer, timestamp → timestamptz,
 * whose conversion depends on the session's time zone).
 */

export type TypeChange =
  | { readonly kind: 'same' }
  | { readonly kind: 'widen' }
  | { readonly kind: 'narrow'; readonly why: string }
  | { readonly kind: 'incompatible'; readonly why: string };

interface ParsedType {
  /** The type's name without its modifiers, e.g. `character varying`, `timestamp without time zone`. */
  readonly name: string;
  readonly mods: readonly number[];
  readonly arrayDims: number;
}

/** Parses `format_type()` output: modifiers may stand in the middle (`time(3) with time zone`). */
export function parseType(formatted: string): ParsedType {
  let s = formatted.trim().toLowerCase().replace(/\s+/g, ' ');
  let arrayDims = 0;
  while (s.endsWith('[]')) {
    arrayDims++;
    s = s.slice(0, -2).trimEnd();
  }
  let mods: number[] = [];
  const m = /\(\s*(-?\d+)\s*(?:,\s*(-?\d+)\s*)?\)/.exec(s);
  if (m) {
    mods = m[2] === undefined ? [Number(m[1])] : [Number(m[1]), Number(m[2])];
    s = `${s.slice(0, m.index)}${s.slice(m.index + m[0].length)}`.replace(/\s+/g, ' ').trim();
  }
  return { name: ALIASES[s] ?? s, mods, arrayDims };
}

const ALIASES: Record<string, string> = {
  varchar: 'character varying',
  int2: 'smallint',
  int4: 'integer',
  int: 'integer',
  int8: 'bigint',
  float4: 'real',
  float8: 'double precision',
  timestamp: 'timestamp without time zone',
  timestamptz: 'timestamp with time zone',
  time: 'time without time zone',
  timetz: 'time with time zone',
  varbit: 'bit varying',
  char: 'character',
  decimal: 'numeric',
};

/** Decimal digits every value of an integer type needs. */
const INT_DIGITS: Record<string, number> = { smallint: 5, integer: 10, bigint: 19 };
const INT_RANK: Record<string, number> = { smallint: 1, integer: 2, bigint: 3 };
/** Integer types whose every value a float type holds exactly (24- and 53-bit mantissas). */
const FLOAT_HOLDS: Record<string, readonly string[]> = { real: ['smallint'], 'double precision': ['smallint', 'integer', 'real'] };
const STRINGS = new Set(['character varying', 'text', 'character', 'bpchar']);
const PRECISION_TYPES = new Set(['timestamp without time zone', 'timestamp with time zone', 'time without time zone', 'time with time zone', 'interval']);

/** The verdict on changing a column of type `from` to type `to`. */
export function typeChange(from: string, to: string): TypeChange {
  const a = parseType(from);
  const b = parseType(to);
  if (a.name === b.name && a.arrayDims === b.arrayDims && a.mods.join(',') === b.mods.join(',')) return { kind: 'same' };
  const verdict = (kind: 'narrow' | 'incompatible', why: string): TypeChange => ({ kind, why: `${from} → ${to}: ${why}` });
  if (a.arrayDims !== b.arrayDims) return verdict('incompatible', 'an array and a non-array');
  return elementChange(a, b, verdict);
}

function elementChange(a: ParsedType, b: ParsedType, verdict: (kind: 'narrow' | 'incompatible', why: string) => TypeChange): TypeChange {
  const widen: TypeChange = { kind: 'widen' };
  // Character strings: a length limit that grows or goes.
  if (STRINGS.has(a.name) && STRINGS.has(b.name)) {
    const limit = (t: ParsedType) => (t.name === 'text' || t.name === 'bpchar' || t.mods.length === 0 ? Infinity : t.mods[0]);
    const fromPadded = a.name === 'character' || a.name === 'bpchar';
    const toPadded = b.name === 'character' || b.name === 'bpchar';
    if (!fromPadded && toPadded) return verdict('incompatible', 'a blank-padded character type changes the values');
    return limit(b) >= limit(a) ? widen : verdict('narrow', 'the length limit shrinks');
  }
  if (a.name === 'bit varying' || (a.name === 'bit' && b.name === 'bit varying')) {
    if (b.name !== 'bit varying') return verdict('incompatible', 'a fixed-length bit string');
    const limit = (t: ParsedType) => (t.mods.length === 0 ? Infinity : t.mods[0]);
    return limit(b) >= limit(a) ? widen : verdict('narrow', 'the length limit shrinks');
  }
  // Numbers: every value must stay exactly representable.
  if (a.name in INT_RANK) {
    if (b.name in INT_RANK) return INT_RANK[b.name] >= INT_RANK[a.name] ? widen : verdict('narrow', 'a smaller integer type');
    if (b.name === 'numeric') {
      if (b.mods.length === 0) return widen;
      const [p, s = 0] = b.mods;
      return p - s >= INT_DIGITS[a.name] ? widen : verdict('narrow', `${p - s} integer digits cannot hold every ${a.name}`);
    }
    if (b.name in FLOAT_HOLDS) return FLOAT_HOLDS[b.name].includes(a.name) ? widen : verdict('narrow', 'the float type rounds large integers');
    return verdict('incompatible', 'a number becomes another kind of value');
  }
  if (a.name === 'numeric' && b.name === 'numeric') {
    if (b.mods.length === 0) return widen;
    if (a.mods.length === 0) return verdict('narrow', 'an unconstrained numeric gets a precision');
    const [p1, s1 = 0] = a.mods;
    const [p2, s2 = 0] = b.mods;
    if (s2 < s1) return verdict('narrow', 'the scale shrinks (values are rounded)');
    if (p2 - s2 < p1 - s1) return verdict('narrow', `integer digits shrink from ${p1 - s1} to ${p2 - s2}`);
    return widen;
  }
  if (a.name === 'numeric' && (b.name in INT_RANK || b.name in FLOAT_HOLDS)) return verdict('narrow', 'numeric values may not fit');
  if (a.name in FLOAT_HOLDS && b.name in FLOAT_HOLDS) {
    return FLOAT_HOLDS[b.name].includes(a.name) ? widen : verdict('narrow', 'a smaller float type');
  }
  // Date and time: fractional-second precision (6 when none is given) may grow; the kind must stay.
  if (PRECISION_TYPES.has(a.name) && a.name === b.name) {
    const p = (t: ParsedType) => (t.mods.length === 0 ? 6 : t.mods[0]);
    return p(b) >= p(a) ? widen : verdict('narrow', 'fractional seconds are rounded');
  }
  if (a.name === 'date' && b.name === 'timestamp without time zone') return widen;
  if (a.name === b.name) return verdict('incompatible', 'sluice does not know what these type modifiers mean');
  return verdict('incompatible', 'the values change meaning or representation');
}

export type ColumnAction =
  /** The destination column stays as it is. */
  | { readonly action: 'keep' }
  /** `ALTER … TYPE` the destination column to the source's new type. */
  | { readonly action: 'alter' }
  /** The table stops: `why` says what changed. */
  | { readonly action: 'stop'; readonly why: string };

/**
 * What to do with a destination column of type `dest` when the source's column went from `from`
 * to `to` (`from` null: the earlier type is not known, only that the source's is `to` now).
 * - the destination already has `to`, or holds every value of it (made wider on purpose): keep;
 * - a known narrowing or incompatible change of the source: stop (sluice never narrows a
 *   destination column: it may hold values of rows the source has changed since);
 * - a destination column that `to` widens: alter;
 * - anything else: stop when the source's change is known, keep otherwise (a destination column its
 *   owner made another way, as before).
 */
export function columnAction(from: string | null, to: string, dest: string): ColumnAction {
  if (typeChange(dest, to).kind === 'same') return { action: 'keep' };
  if (from !== null) {
    const change = typeChange(from, to);
    if (change.kind === 'narrow') return { action: 'stop', why: `narrowed (${change.why})` };
    if (change.kind === 'incompatible') return { action: 'stop', why: `changed type (${change.why})` };
  }
  const holds = typeChange(to, dest).kind;
  if (holds === 'same' || holds === 'widen') return { action: 'keep' };
  if (typeChange(dest, to).kind === 'widen') return { action: 'alter' };
  if (from === null) return { action: 'keep' };
  return { action: 'stop', why: `is ${to} in the source, and the destination column is ${dest}, which sluice cannot widen to it` };
}
