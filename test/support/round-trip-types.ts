/**
 * The table of the type round-trip tests (integration/types.test.ts for a PostgreSQL destination,
 * integration/duckdb-types.test.ts for DuckDB): every common built-in type plus an enum, a domain with
 * a CHECK and an array of the enum; hand-written edge rows and generated rows.
 */
export const DDL = `
  CREATE SCHEMA extra;
  CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy', 'very "happy", really');
  CREATE DOMAIN extra.posint AS integer CHECK (VALUE > 0);
  CREATE TABLE public.types (
    id            int PRIMARY KEY,
    c_smallint    smallint,
    c_int         integer,
    c_bigint      bigint,
    c_numeric     numeric,
    c_numeric_p   numeric(12, 3),
    c_real        real,
    c_double      double precision,
    c_text        text,
    c_varchar     varchar(20),
    c_char        char(5),
    c_bytea       bytea,
    c_bool        boolean,
    c_date        date,
    c_time        time,
    c_timetz      timetz,
    c_timestamp   timestamp,
    c_timestamptz timestamptz,
    c_interval    interval,
    c_uuid        uuid,
    c_json        json,
    c_jsonb       jsonb,
    c_int_arr     int[],
    c_text_arr    text[],
    c_int_2d      int[][],
    c_enum        public.mood,
    c_domain      extra.posint,
    c_enum_arr    public.mood[],
    c_inet        inet,
    c_cidr        cidr,
    c_macaddr     macaddr,
    c_int4range   int4range,
    c_tstzrange   tstzrange,
    c_bit         bit(8),
    c_varbit      varbit,
    c_money       money,
    c_xml         xml,
    c_tsvector    tsvector,
    c_point       point,
    c_notnull     text NOT NULL DEFAULT 'x'
  );
`;

export const COLUMNS = [
  'id', 'c_smallint', 'c_int', 'c_bigint', 'c_numeric', 'c_numeric_p', 'c_real', 'c_double', 'c_text', 'c_varchar', 'c_char',
  'c_bytea', 'c_bool', 'c_date', 'c_time', 'c_timetz', 'c_timestamp', 'c_timestamptz', 'c_interval', 'c_uuid', 'c_json', 'c_jsonb',
  'c_int_arr', 'c_text_arr', 'c_int_2d', 'c_enum', 'c_domain', 'c_enum_arr', 'c_inet', 'c_cidr', 'c_macaddr', 'c_int4range',
  'c_tstzrange', 'c_bit', 'c_varbit', 'c_money', 'c_xml', 'c_tsvector', 'c_point', 'c_notnull',
];

/** Hand-written edge rows, one SQL row expression each (in COLUMNS order). `$ID` is replaced by the id. */
export const EDGE_ROWS = [
  // extremes and specials
  `($ID, 32767, 2147483647, 9223372036854775807, 'NaN', 123456789.123, 'Infinity', 'Infinity',
    E'tab\\there\\nnew line\\r\\nback\\\\slash é 中文 😀 \\\\N', 'varchar ✓', 'ab', '\\x00ff00', true,
    'infinity', '23:59:59.999999', '23:59:59.999999+14', '2024-02-29 12:34:56.123456', 'infinity',
    '1 year 2 mons 3 days 04:05:06.789012', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    E'{"a": 1,  "a" : 2,\\n "b":[1, 2 ,3] }', '{"k": [1, {"x": null}], "s": "q\\"uote"}',
    '{1,2,NULL,-3}', ARRAY['a,b', 'c"d', E'e\\\\f', NULL, '', 'NULL', ' sp ', '{}'], '{{1,2},{3,4}}',
    'very "happy", really', 1, ARRAY['sad', 'very "happy", really', NULL]::public.mood[],
    '192.168.1.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', '[1,10)', 'empty',
    B'10101010', B'1', '92233720368547758.07', '<a b="1">x &amp; y</a>', 'a fat cat:1A sat:2,3', '(1.5,-2.25)', E'n\\tn')`,
  `($ID, -32768, -2147483648, -9223372036854775808, '-123456789012345678901234567890.000000000000000000000000000001',
    -999999999.999, '-Infinity', '-Infinity', '', '', '', '', false,
    '-infinity', '00:00:00', '00:00:00-15:59', '0044-03-15 12:00:00 BC', '-infinity',
    '-1 mons -2 days +03:00:00.000001', '00000000-0000-0000-0000-000000000000',
    '[]', '{}', '{}', '{}', '{}', 'sad', 2147483647, '{}', '::1', '::/0', 'ff:ff:ff:ff:ff:ff', '(,5]', '[2024-01-01 00:00:00+00,infinity)',
    B'00000000', B'', '-92233720368547758.08', 'text <b/> more', '', '(0,0)', '')`,
  `($ID, 0, 0, 0, 0, 0, 'NaN', 'NaN', 'plain', 'x', 'abcde', '\\x', NULL, '2000-02-29', '12:00', '12:00+00', '1970-01-01 00:00:00',
    '1999-12-31 23:59:59.5+00', '0', 'ffffffff-ffff-ffff-ffff-ffffffffffff', 'null', 'null', '{0}', '{"\\\\"}', '{{NULL}}', 'ok', 3,
    '{ok}', '0.0.0.0', '0.0.0.0/0', '00:00:00:00:00:00', '[-5,-5]', '(2024-01-01 00:00:00+00,2024-01-02 00:00:00+00]', B'11111111',
    B'0101010101010101010101', '0', '<?xml version="1.0"?><r/>', 'x:1', '(1e-300,-1e300)', 'z')`,
  `($ID, 1, 1, 1, 'Infinity', 0.001, '-0', '-0', 'NULL', 'NULL', 'NULL', '\\x5c4e', true, '2024-01-01', '00:00:00.000001',
    '01:02:03.456789-07:30', '2000-01-01 00:00:00.000001', '2000-01-01 00:00:00.000001+00', '-178000000 years',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', '"\\u00e9 \\\\ \\n"', '"\\u00e9 \\\\ \\n"', '[0:2]={7,8,9}', '{NULL}', '{}', 'happy', 4,
    '{NULL}', '2001:db8::1/64', '2001:db8::/32', '01:23:45:67:89:ab', '(,)', '(,)', B'00000001', B'10', '1.5', '', 'ab:1,2,3 ''x y'':4',
    '(-0,1e-5)', 'z')`,
  `($ID, 2, 2, 2, '-Infinity', -0.0005, 3.4028235e38, 1e-300, repeat('é', 3), repeat('x', 20), 'é', '\\x000000', false, '4713-01-01 BC',
    '24:00:00', '24:00:00-12', '294276-12-31 23:59:59.999999', '294276-12-31 23:59:59.999999+00', '-0.000001 seconds',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a13', ' { "a" : [ ] } ', '{"a": "\\u00e9", "b": 1e2}', '{}', '{"x y","\\"",","}',
    '{{-1,-2,-3},{4,5,6}}', 'sad', 5, '{happy,happy}', '255.255.255.255/32', '192.168.0.0/16', '0a:0b:0c:0d:0e:0f', '[3,4)',
    '[2024-06-01 10:00:00.123456+00,2024-06-01 10:00:00.123457+00)', B'01010101', B'1111111111111111111111111111111111111111111',
    '-0.01', '<a><![CDATA[<x>]]></a>', 'b:1B c:2C d:3D', '(1.401298464324817e-45,3.4028234663852886e+38)', 'z')`,
  // a huge numeric and 1.4e-45 as a real, a long (TOASTed) text, and its own key change partner
  `($ID, 3, 3, 3, ('1' || repeat('0', 990) || '.' || repeat('9', 300))::numeric, NULL, 1.4e-45, -1e-300,
    (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 6000) i), NULL, NULL,
    (SELECT decode(string_agg(md5(i::text), ''), 'hex') FROM generate_series(1, 3000) i),
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, 'toast')`,
  // NULL in every nullable column
  `($ID, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, DEFAULT)`,
];

/** ~1000 generated rows: every column varies with i, and each nullable column is NULL in some rows. */
export function generatedRowsSql(from: number, to: number): string {
  const n = (mod: number, expr: string) => `CASE WHEN i % ${mod} = 0 THEN NULL ELSE ${expr} END`;
  return `
  INSERT INTO public.types (${COLUMNS.join(', ')})
  SELECT i,
    ${n(11, `(i % 65536 - 32768)::smallint`)},
    ${n(13, `(i * 2654435761 % 4294967296 - 2147483648)::int`)},
    ${n(17, `(i::bigint * 922337203685477 - 4611686018427387904)`)},
    ${n(19, `(i::numeric * 1.000000000001 - 500) ^ 3`)},
    ${n(23, `round((i * 3.14159)::numeric, 3)`)},
    ${n(29, `(i * 1.1 - 500)::real / 7`)},
    ${n(31, `(i - 500)::float8 / 3 * 1e10`)},
    ${n(37, `'row ' || i || E'\\t' || repeat(chr(1000 + i % 200), i % 7) || E'\\n\\\\'`)},
    ${n(41, `left('v' || md5(i::text), 20)`)},
    ${n(43, `left(md5(i::text), i % 6)`)},
    ${n(47, `decode(lpad(to_hex(i), 8, '0') || '00', 'hex')`)},
    ${n(53, `i % 2 = 0`)},
    ${n(59, `date '2000-01-01' + (i * 37 - 20000)`)},
    ${n(61, `time '00:00' + i * interval '83.123457 seconds'`)},
    ${n(67, `(time '00:00' + i * interval '83.5 seconds')::timetz`)},
    ${n(71, `timestamp '2000-01-01' + i * interval '1 day 1.000001 second'`)},
    ${n(73, `timestamptz '2000-01-01 00:00:00+00' + i * interval '7 hours 0.000123 seconds'`)},
    ${n(79, `make_interval(months => i % 30 - 15, days => i % 40 - 20, secs => (i % 1000) / 1000000.0 - 0.0003)`)},
    ${n(83, `md5(i::text)::uuid`)},
    ${n(89, `('{"i": ' || i || ', "i": ' || -i || ',   "s": "' || repeat('x', i % 5) || '"}')::json`)},
    ${n(97, `jsonb_build_object('i', i, 'arr', jsonb_build_array(i, i::text, i % 2 = 0, NULL), 'f', i / 7.0)`)},
    ${n(101, `ARRAY[i, -i, NULL, i * 1000]`)},
    ${n(103, `ARRAY['e' || i, NULL, 'q"' || i, 'c,' || i, E'b\\\\' || i, '']`)},
    ${n(107, `ARRAY[ARRAY[i, i + 1], ARRAY[NULL, i + 3]]`)},
    ${n(109, `(enum_range(NULL::public.mood))[1 + i % 4]`)},
    ${n(113, `(i + 1)::extra.posint`)},
    ${n(127, `ARRAY[(enum_range(NULL::public.mood))[1 + i % 4], NULL, 'ok']::public.mood[]`)},
    ${n(131, `('10.' || (i % 256) || '.' || (i / 256) || '.1/' || (8 + i % 25))::inet`)},
    ${n(137, `('10.' || (i % 256) || '.0.0/16')::cidr`)},
    ${n(139, `('08:00:2b:' || lpad(to_hex(i % 256), 2, '0') || ':' || lpad(to_hex(i / 256), 2, '0') || ':0a')::macaddr`)},
    ${n(149, `CASE WHEN i % 5 = 0 THEN 'empty'::int4range ELSE int4range(i, i + i % 10 + 1) END`)},
    ${n(151, `CASE WHEN i % 6 = 0 THEN 'empty'::tstzrange ELSE tstzrange(timestamptz '2020-01-01 00:00:00.000001+00' + i * interval '1 hour', NULL) END`)},
    ${n(157, `(i % 256)::bit(8)`)},
    ${n(163, `substring((i::bit(32))::text from 1 + i % 30)::varbit`)},
    ${n(167, `(i * 12.34 - 5000)::numeric::money`)},
    ${n(173, `('<r i="' || i || '">' || repeat('&lt;', i % 3) || '</r>')::xml`)},
    ${n(179, `to_tsvector('simple', 'word' || i || ' other ' || (i % 7))`)},
    ${n(181, `point(i / 3.0, -i * 1e-7)`)},
    'gen ' || i
  FROM generate_series(${from}, ${to}) i`;
}
