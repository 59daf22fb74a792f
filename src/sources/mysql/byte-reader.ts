/**
 * A cursor over one binlog event's bytes: the little-endian integers, length-encoded integers and
 * strings of the MySQL/MariaDB protocol, and the big-endian integers of packed temporal values.
 * Reading past the end throws (a truncated event is corrupt, never silently short).
 */
export class ByteReader {
  pos: number;

  constructor(
    readonly buf: Buffer,
    pos = 0,
    readonly end = buf.length,
  ) {
    this.pos = pos;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  private need(n: number): number {
    const at = this.pos;
    if (at + n > this.end) throw new Error(`binlog event truncated: need ${n} bytes at offset ${at}, have ${this.end - at}`);
    this.pos += n;
    return at;
  }

  u8(): number {
    return this.buf[this.need(1)];
  }
  u16(): number {
    return this.buf.readUInt16LE(this.need(2));
  }
  u24(): number {
    return this.buf.readUIntLE(this.need(3), 3);
  }
  u32(): number {
    return this.buf.readUInt32LE(this.need(4));
  }
  u48(): number {
    return this.buf.readUIntLE(this.need(6), 6);
  }
  u64(): bigint {
    return this.buf.readBigUInt64LE(this.need(8));
  }
  /** An unsigned integer of `n` (1-8) little-endian bytes. */
  uintLE(n: number): number {
    return n <= 6 ? this.buf.readUIntLE(this.need(n), n) : Number(this.u64());
  }
  /** An unsigned integer of `n` (1-8) big-endian bytes, as a bigint. */
  uintBE(n: number): bigint {
    const at = this.need(n);
    let v = 0n;
    for (let i = 0; i < n; i++) v = (v << 8n) | BigInt(this.buf[at + i]);
    return v;
  }

  bytes(n: number): Buffer {
    const at = this.need(n);
    return this.buf.subarray(at, at + n);
  }
  rest(): Buffer {
    return this.bytes(this.remaining);
  }
  skip(n: number): void {
    this.need(n);
  }

  /** A length-encoded integer (1, 3, 4 or 9 bytes). */
  lenenc(): number {
    const first = this.u8();
    if (first < 0xfb) return first;
    if (first === 0xfc) return this.u16();
    if (first === 0xfd) return this.u24();
    if (first === 0xfe) return Number(this.u64());
    throw new Error(`binlog event: bad length-encoded integer prefix 0x${first.toString(16)} at offset ${this.pos - 1}`);
  }
  lenencBytes(): Buffer {
    return this.bytes(this.lenenc());
  }
  lenencString(): string {
    return this.lenencBytes().toString('utf8');
  }

  /** A bitmap of `bits` bits, least significant bit first in each byte (row events' column sets). */
  bitmap(bits: number): boolean[] {
    const raw = this.bytes((bits + 7) >> 3);
    const out: boolean[] = [];
    for (let i = 0; i < bits; i++) out.push((raw[i >> 3] & (1 << (i & 7))) !== 0);
    return out;
  }
}
