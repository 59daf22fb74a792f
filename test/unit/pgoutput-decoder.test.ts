import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Lsn, type CapturedValue } from '../../src/core/types.js';
import { decodeTuple, encodeTuple } from '../../src/core/tuple-data.js';
import {
  decodeCopyData,
  decodePgoutput,
  decodePgoutputRaw,
  encodeStandbyStatus,
  type PgoutputMessage,
} from '../../src/sources/postgres/pgoutput-decoder.js';

/** Builds protocol bytes by hand, independently of the decoder. */
class Bytes {
  private readonly parts: number[] = [];

  tag(ch: string): this {
    this.parts.push(ch.charCodeAt(0));
    return this;
  }
  u8(v: number): this {
    this.parts.push(v & 0xff);
    return this;
  }
  i16(v: number): this {
    return this.u8(v >> 8).u8(v);
  }
  i32(v: number): this {
    return this.u8(v >>> 24).u8(v >>> 16).u8(v >>> 8).u8(v);
  }
  i64(v: bigint): this {
    const u = BigInt.asUintN(64, v);
    for (let shift = 56n; shift >= 0n; shift -= 8n) this.u8(Number((u >> shift) & 0xffn));
    return this;
  }
  raw(bytes: Iterable<number>): this {
    for (const b of bytes) this.parts.push(b);
    return this;
  }
  /** NUL-terminated UTF-8. */
  cstr(s: string): this {
    return this.raw(new TextEncoder().encode(s)).u8(0);
  }
  /** TupleData column 't': int32 length + UTF-8 text. */
  text(s: string): this {
    const enc = new TextEncoder().encode(s);
    return this.tag('t').i32(enc.length).raw(enc);
  }
  build(): Buffer {
    return Buffer.from(this.parts);
  }
}

const b = (): Bytes => new Bytes();

/** 2024-01-02T03:04:05.678901Z as PostgreSQL microseconds since 2000-01-01. */
const COMMIT_MS = Date.UTC(2024, 0, 2, 3, 4, 5, 678);
const COMMIT_US = (BigInt(COMMIT_MS) - 946_684_800_000n) * 1000n + 901n;

test('Begin', () => {
  const msg = decodePgoutput(b().tag('B').i64(0x1_0000_0010n).i64(COMMIT_US).i32(0xfffffff0).build());
  assert.deepEqual(msg, {
    type: 'begin',
    finalLsn: Lsn.of(0x1_0000_0010n),
    commitTimeMs: COMMIT_MS,
    xid: 0xfffffff0,
  });
});

test('Commit with LSNs above 2^32', () => {
  const msg = decodePgoutput(
    b().tag('C').u8(0).i64(0x1_0000_0010n).i64(0x1_0000_0048n).i64(COMMIT_US).build(),
  );
  assert.deepEqual(msg, {
    type: 'commit',
    flags: 0,
    commitLsn: Lsn.of(0x1_0000_0010n),
    endLsn: Lsn.of(0x1_0000_0048n),
    commitTimeMs: COMMIT_MS,
  });
  assert.equal(Lsn.format((msg as { commitLsn: Lsn }).commitLsn), '1/10');
});

test('Commit time at the PostgreSQL epoch and before it', () => {
  const at = decodePgoutput(b().tag('C').u8(0).i64(1n).i64(2n).i64(0n).build());
  assert.equal((at as { commitTimeMs: number }).commitTimeMs, Date.UTC(2000, 0, 1));
  const before = decodePgoutput(b().tag('C').u8(0).i64(1n).i64(2n).i64(-1n).build());
  assert.equal((before as { commitTimeMs: number }).commitTimeMs, Date.UTC(2000, 0, 1) - 1);
});

test('Origin', () => {
  const msg = decodePgoutput(b().tag('O').i64(0x2_0000_0001n).cstr('node_ä').build());
  assert.deepEqual(msg, { type: 'origin', lsn: Lsn.of(0x2_0000_0001n), name: 'node_ä' });
});

test('Relation', () => {
  const payload = b()
    .tag('R')
    .i32(0x8000_0001) // OIDs are unsigned
    .cstr('public')
    .cstr('tëst_table')
    .tag('d')
    .i16(3)
    .u8(1).cstr('id').i32(20).i32(-1)
    .u8(0).cstr('name').i32(1043).i32(68)
    .u8(0).cstr('blob').i32(17).i32(-1)
    .build();
  assert.deepEqual(decodePgoutput(payload), {
    type: 'relation',
    relationId: 0x8000_0001,
    schema: 'public',
    name: 'tëst_table',
    replicaIdentity: 'd',
    columns: [
      { name: 'id', typeOid: 20, typeMod: -1, isKey: true },
      { name: 'name', typeOid: 1043, typeMod: 68, isKey: false },
      { name: 'blob', typeOid: 17, typeMod: -1, isKey: false },
    ],
  });
});

test('Relation with replica identity full and no columns', () => {
  const msg = decodePgoutput(b().tag('R').i32(7).cstr('s').cstr('t').tag('f').i16(0).build());
  assert.deepEqual(msg, {
    type: 'relation',
    relationId: 7,
    schema: 's',
    name: 't',
    replicaIdentity: 'f',
    columns: [],
  });
});

test('Type', () => {
  const msg = decodePgoutput(b().tag('Y').i32(16385).cstr('public').cstr('mood').build());
  assert.deepEqual(msg, { type: 'type', typeOid: 16385, schema: 'public', name: 'mood' });
});

test('Insert with null, unchanged TOAST, multi-byte UTF-8, empty text and binary', () => {
  const payload = b()
    .tag('I')
    .i32(16384)
    .tag('N')
    .i16(6)
    .text('42')
    .tag('n')
    .tag('u')
    .text('héllo ✓ 日本')
    .text('')
    .tag('b').i32(3).raw([0x00, 0xab, 0xff])
    .build();
  assert.deepEqual(decodePgoutput(payload), {
    type: 'insert',
    relationId: 16384,
    newTuple: ['42', null, false, 'héllo ✓ 日本', '', '\\x00abff'],
  });
});

test('Update without old tuple', () => {
  const msg = decodePgoutput(b().tag('U').i32(5).tag('N').i16(2).text('1').text('x').build());
  assert.deepEqual(msg, { type: 'update', relationId: 5, newTuple: ['1', 'x'] });
  assert.equal('oldKey' in msg, false);
  assert.equal('oldRow' in msg, false);
});

test("Update with 'K' old key", () => {
  const payload = b()
    .tag('U')
    .i32(5)
    .tag('K').i16(2).text('1').tag('n')
    .tag('N').i16(2).text('2').text('x')
    .build();
  const msg = decodePgoutput(payload);
  assert.deepEqual(msg, { type: 'update', relationId: 5, oldKey: ['1', null], newTuple: ['2', 'x'] });
  assert.equal('oldRow' in msg, false);
});

test("Update with 'O' old row", () => {
  const payload = b()
    .tag('U')
    .i32(5)
    .tag('O').i16(2).text('1').text('old')
    .tag('N').i16(2).text('1').tag('u')
    .build();
  const msg = decodePgoutput(payload);
  assert.deepEqual(msg, { type: 'update', relationId: 5, oldRow: ['1', 'old'], newTuple: ['1', false] });
  assert.equal('oldKey' in msg, false);
});

test("Delete with 'K'", () => {
  const msg = decodePgoutput(b().tag('D').i32(9).tag('K').i16(2).text('7').tag('n').build());
  assert.deepEqual(msg, { type: 'delete', relationId: 9, oldKey: ['7', null] });
});

test("Delete with 'O'", () => {
  const msg = decodePgoutput(b().tag('D').i32(9).tag('O').i16(2).text('7').text('z').build());
  assert.deepEqual(msg, { type: 'delete', relationId: 9, oldRow: ['7', 'z'] });
});

test('Truncate with two relations and both flags', () => {
  const msg = decodePgoutput(b().tag('T').i32(2).u8(3).i32(16384).i32(16390).build());
  assert.deepEqual(msg, {
    type: 'truncate',
    cascade: true,
    restartIdentity: true,
    relationIds: [16384, 16390],
  });
  const plain = decodePgoutput(b().tag('T').i32(1).u8(0).i32(1).build());
  assert.deepEqual(plain, { type: 'truncate', cascade: false, restartIdentity: false, relationIds: [1] });
});

test('Message', () => {
  const content = [0x01, 0x02, 0xc3, 0xa9];
  const msg = decodePgoutput(
    b().tag('M').u8(1).i64(0x3_0000_0000n).cstr('sluice').i32(content.length).raw(content).build(),
  );
  assert.deepEqual(msg, {
    type: 'message',
    transactional: true,
    lsn: Lsn.of(0x3_0000_0000n),
    prefix: 'sluice',
    content: Buffer.from(content),
  });
  const nonTx = decodePgoutput(b().tag('M').u8(0).i64(1n).cstr('p').i32(0).build()) as PgoutputMessage & {
    type: 'message';
  };
  assert.equal(nonTx.transactional, false);
  assert.equal(nonTx.content.length, 0);
});

test('pgoutput: unknown tag, truncation and trailing bytes throw', () => {
  assert.throws(() => decodePgoutput(b().tag('Z').i32(1).build()), /unknown message tag 'Z'/);
  assert.throws(() => decodePgoutput(Buffer.alloc(0)), /empty/);
  assert.throws(() => decodePgoutput(b().tag('I').i32(1).tag('N').i16(1).tag('t').i32(10).raw([0x61]).build()));
  assert.throws(() => decodePgoutput(b().tag('Y').i32(1).cstr('public').raw([0x61]).build()), /unterminated/);
  assert.throws(() => decodePgoutput(b().tag('I').i32(1).tag('N').i16(1).tag('x').build()), /column kind/);
  assert.throws(() => decodePgoutput(b().tag('T').i32(1).u8(0).i32(1).u8(0).build()), /trailing/);
});

test('XLogData', () => {
  const frame = b()
    .tag('w')
    .i64(0x1_0000_0010n)
    .i64(0x1_0000_0100n)
    .i64(COMMIT_US)
    .raw([0x42, 0x01, 0x02])
    .build();
  const msg = decodeCopyData(frame);
  assert.equal(msg.type, 'xlogdata');
  if (msg.type !== 'xlogdata') return;
  assert.equal(msg.startLsn, Lsn.of(0x1_0000_0010n));
  assert.equal(msg.endLsn, Lsn.of(0x1_0000_0100n));
  assert.equal(msg.sendTimeUs, COMMIT_US);
  assert.deepEqual(msg.payload, Buffer.from([0x42, 0x01, 0x02]));
});

test('XLogData carrying a pgoutput message', () => {
  const inner = b().tag('I').i32(1).tag('N').i16(1).text('héllo ✓ 日本').build();
  const frame = b().tag('w').i64(1n).i64(2n).i64(3n).raw(inner).build();
  const msg = decodeCopyData(frame);
  assert.equal(msg.type, 'xlogdata');
  if (msg.type !== 'xlogdata') return;
  assert.deepEqual(decodePgoutput(msg.payload), { type: 'insert', relationId: 1, newTuple: ['héllo ✓ 日本'] });
});

test('keepalive: LSN round trip and reply flag', () => {
  const walEnd = Lsn.parse('1A/2B3C4D5E');
  const msg = decodeCopyData(b().tag('k').i64(walEnd).i64(COMMIT_US).u8(1).build());
  assert.deepEqual(msg, { type: 'keepalive', walEnd, sendTimeUs: COMMIT_US, replyRequested: true });
  if (msg.type !== 'keepalive') return;
  assert.equal(Lsn.format(msg.walEnd), '1A/2B3C4D5E');
  const quiet = decodeCopyData(b().tag('k').i64(0xffff_ffff_ffff_fff0n).i64(0n).u8(0).build());
  assert.deepEqual(quiet, {
    type: 'keepalive',
    walEnd: Lsn.of(0xffff_ffff_ffff_fff0n),
    sendTimeUs: 0n,
    replyRequested: false,
  });
});

test('CopyData: unknown tag and short frames throw', () => {
  assert.throws(() => decodeCopyData(b().tag('x').i64(0n).build()), /unknown CopyData message tag 'x'/);
  assert.throws(() => decodeCopyData(Buffer.alloc(0)), /empty/);
  assert.throws(() => decodeCopyData(b().tag('k').i64(1n).build()), /too short/);
  assert.throws(() => decodeCopyData(b().tag('w').i64(1n).build()), /too short/);
});

test('encodeStandbyStatus byte layout', () => {
  const nowMs = Date.UTC(2024, 0, 2, 3, 4, 5, 678);
  const buf = encodeStandbyStatus(
    Lsn.of(0x1_0000_0010n),
    Lsn.of(0x1_0000_0008n),
    Lsn.of(0x0_0000_0001n),
    nowMs,
  );
  const clockUs = (BigInt(nowMs) - 946_684_800_000n) * 1000n;
  const expected = b()
    .tag('r')
    .i64(0x1_0000_0010n)
    .i64(0x1_0000_0008n)
    .i64(1n)
    .i64(clockUs)
    .u8(0)
    .build();
  assert.equal(buf.length, 34);
  assert.equal(buf[0], 'r'.charCodeAt(0));
  assert.deepEqual(buf, expected);
  // Spot-check the clock bytes against a literal: 2024-01-02T03:04:05.678Z = 757_479_845_678_000 µs.
  assert.equal(clockUs, 757_479_845_678_000n);
  assert.equal(buf.subarray(25, 33).toString('hex'), '0002b0ec85204bb0');
  assert.equal(buf[33], 0);

  const reply = encodeStandbyStatus(Lsn.zero, Lsn.zero, Lsn.zero, Date.UTC(2000, 0, 1), true);
  assert.deepEqual(reply, b().tag('r').i64(0n).i64(0n).i64(0n).i64(0n).u8(1).build());
});

// Row changes kept as TupleData bytes (what capture stores in the change log, format 3).

/** decodePgoutputRaw's message with every tuple decoded: must equal decodePgoutput's. */
function rawDecoded(payload: Buffer): unknown {
  const m = decodePgoutputRaw(payload) as unknown as Record<string, unknown>;
  const out: Record<string, unknown> = { ...m };
  for (const k of ['newTuple', 'oldKey', 'oldRow']) if (Buffer.isBuffer(m[k])) out[k] = decodeTuple(m[k] as Buffer);
  return out;
}

test('raw row changes: the tuples decode to what decodePgoutput gives, for every shape', () => {
  const payloads = [
    b().tag('I').i32(16384).tag('N').i16(6).text('42').tag('n').tag('u').text('héllo ✓ 日本').text('').tag('b').i32(3).raw([0x00, 0xab, 0xff]).build(),
    b().tag('U').i32(5).tag('N').i16(2).text('1').text('x').build(),
    b().tag('U').i32(5).tag('K').i16(2).text('1').tag('n').tag('N').i16(2).text('2').text('x').build(),
    b().tag('U').i32(5).tag('O').i16(2).text('1').text('old').tag('N').i16(2).text('1').tag('u').build(),
    b().tag('D').i32(9).tag('K').i16(2).text('7').tag('n').build(),
    b().tag('D').i32(9).tag('O').i16(2).text('7').text('z').build(),
  ];
  for (const p of payloads) assert.deepEqual(rawDecoded(p), decodePgoutput(p));
  // Other messages are decoded as by decodePgoutput.
  const t = b().tag('T').i32(1).u8(0).i32(1).build();
  assert.deepEqual(decodePgoutputRaw(t), decodePgoutput(t));
});

test('raw row changes: truncation, unknown kinds and trailing bytes throw at decode', () => {
  assert.throws(() => decodePgoutputRaw(b().tag('I').i32(1).tag('N').i16(1).tag('t').i32(10).raw([0x61]).build()), /truncated/);
  assert.throws(() => decodePgoutputRaw(b().tag('I').i32(1).tag('N').i16(2).text('a').build()), /truncated/);
  assert.throws(() => decodePgoutputRaw(b().tag('I').i32(1).tag('N').i16(1).tag('x').build()), /column kind/);
  assert.throws(() => decodePgoutputRaw(b().tag('I').i32(1).tag('N').i16(1).text('a').u8(0).build()), /trailing/);
  assert.throws(() => decodePgoutputRaw(b().tag('U').i32(1).tag('Q').build()), /tuple marker/);
  assert.throws(() => decodePgoutputRaw(b().tag('D').i32(1).build()), /truncated/);
});

test('tuple data: encode and decode round trip; decoding only some columns', () => {
  const values: CapturedValue[] = ['42', null, false, 'héllo ✓ 日本', '', 'x'.repeat(70_000)];
  const enc = encodeTuple(values);
  assert.deepEqual(decodeTuple(enc), values);
  assert.deepEqual(decodeTuple(enc, 0, [3, 0, 1, 2]), ['héllo ✓ 日本', '42', null, false]);
  // The same bytes as pgoutput sends for those values.
  const wire = b().i16(3).text('1').tag('n').tag('u').build();
  assert.deepEqual(encodeTuple(['1', null, false]), wire);
  assert.deepEqual(decodeTuple(Buffer.concat([Buffer.from([9, 9]), wire]), 2), ['1', null, false]);
});
