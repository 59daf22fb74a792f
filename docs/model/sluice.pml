/*
 * sluice's correctness contract 1-4 and 6 (docs/architecture.md) as a Promela model, checked by spin.
 * docs/model/README.md says what is modelled, what is abstracted, the bounds, and how to run it.
 *
 * One table T with K keys; NW single-row writer transactions on the source; one sluice process whose
 * threads (capture, backfill, applier, purge, swap) are interleaved step by step and which may crash
 * between any two steps (at most MAXCRASH times). A crash loses sluice's volatile state; the source,
 * the slot's confirmed position, the change log's flushed part and the destination (tables, cursors,
 * table state with L0 and chunk progress) remain, and the restarted process resumes from them.
 *
 * Switches (spin -D...):
 *   NO_INFLIGHT_WAIT  the first chunk is read right after L0, without waiting out the transactions in
 *                     flight at L0: must end in an assertion violation (a lost change).
 *   ACK_BEFORE_FLUSH  the slot is acknowledged up to what was decoded, before the log flush: must
 *                     violate contract 1.
 *   NONATOMIC_SWAP    live → archive and staging → live commit as two transactions: a reader must be
 *                     able to find the table missing.
 *   K=n, MAXCRASH=n   the bounds (defaults 2 and 2).
 */

#ifndef K
#define K 2                 /* keys of T: 0 .. K-1 */
#endif
#ifndef MAXCRASH
#define MAXCRASH 2          /* crashes of sluice per run */
#endif
#define NW 2                /* writer transactions; each commits once, so LSNs are 1 .. NW */

#define NONE    255
#define ABSENT  0           /* a row value of 0: the key is not in the table */
#define INIT    3           /* every key's value in the source at the start */
#define STALE   4           /* every key's value in the destination's (drifted) live table at the start */

mtype = { QUEUED, BACKFILLING, CATCHING_UP, STREAMING };

/* ---- source database (durable) ---- */
byte src[K];                /* committed, visible rows (what a READ COMMITTED chunk sees) */
bool pub;                   /* T is in the publication */
byte rowLock[K];            /* writer+1 holding the row lock, 0 when free */
byte inflight;              /* bit w: writer w has an xid and has not ended (is in the ProcArray) */
byte walLen;                /* LSN of the last commit record; pg_current_wal_lsn() */
byte walKey[NW + 1];        /* commit record at LSN l (index l): the row it wrote ... */
byte walVal[NW + 1];        /* ... the new value (ABSENT: a delete) ... */
bool walDec[NW + 1];        /* ... and whether pgoutput decodes it for T (T was published when it was written) */
byte ended;                 /* writers that have ended */

/* ---- replication slot (durable) ---- */
byte confirmed;             /* confirmed_flush: decoding restarts after it */

/* ---- change log (durable part: what a flush made durable) ---- */
byte logm;                  /* bit l: T's change with LSN l is in the log (and not purged) */
byte logHead;               /* LSN up to which the log is durable (every commit up to it was processed) */

/* ---- destination (durable): two table slots, their apply cursors, and _sluice.tables ---- */
byte tab[2 * K];            /* slot t's row k is tab[t*K + k] */
byte cur[2];                /* apply cursor of slot t: LSN of the last change applied (NONE: no cursor) */
byte live;                  /* slot under T's name (NONE: no table of that name) */
byte stg = NONE;            /* staging slot of the online backfill */
mtype tstate = QUEUED;      /* table state */
byte L0d;                   /* L0 recorded with the backfill */
byte chunks;                /* chunk progress: keyset chunk c copies key c; chunks done */

/* ---- sluice, volatile (lost on a crash) ---- */
byte rd;                    /* capture: LSN of the last commit record decoded */
byte bufm;                  /* capture: decoded changes not yet flushed (bit l: LSN l) */
byte ackable;               /* capture: position it may acknowledge */
byte bphase;                /* backfill: 0 start, 1 published, 2 L0 read, 3 in-flight wait over */
byte L0v;                   /* backfill: L0 as read, before it is recorded in the destination */
byte waitmask;              /* backfill: transactions in flight when L0 was read */
bool cpending;              /* backfill: a chunk has been read and not yet committed */
byte cval;                  /* backfill: the row that chunk read */
byte crashes;

/* scratch for d_step sequences only (a hidden variable is not restored when the search backtracks) */
hidden byte i, seen;

/* every change in the log with an LSN past slot t's cursor has been applied to it */
#define DRAINED(t)       ((logm >> (cur[t] + 1)) == 0)
#define MIN(a, b)        ((a) < (b) -> (a) : (b))
/* the change log keeps every change past this position: every cursor's, and every pending backfill's L0 */
#define KEEP_AFTER       MIN(cur[live], MIN((tstate == CATCHING_UP -> cur[stg] : NONE), \
                             MIN((tstate == BACKFILLING -> L0d : NONE), \
                                 ((tstate == QUEUED && bphase >= 2) -> L0v : NONE))))

/*
 * A source transaction writing one row of T: it takes the row lock and an xid and writes (the change is
 * decoded for T only if T is in the publication now), writes its commit record (gets its LSN), and only
 * then becomes visible and releases its lock (PostgreSQL: XLogInsert of the commit, then
 * ProcArrayEndTransaction). Between those two steps its commit is before pg_current_wal_lsn() but no
 * snapshot sees it.
 */
proctype writer(byte w) {
  byte k, v;
  bool dec;
  select(k : 0 .. K - 1);
  if
  :: v = w + 1              /* insert or update to a value only this writer writes */
  :: v = ABSENT             /* delete */
  fi;
  atomic { rowLock[k] == 0 -> rowLock[k] = w + 1; inflight = inflight | (1 << w); dec = pub };
  atomic { walLen++; walKey[walLen] = k; walVal[walLen] = v; walDec[walLen] = dec };
  atomic { src[k] = v; inflight = inflight & ~(1 << w); rowLock[k] = 0; ended++; k = 0; v = 0; dec = false }
}

/*
 * Applies a batch to slot t when `when` holds (contract 2): the changes past its cursor up to a batch
 * end e chosen freely (a batch ends at a change), compacted per key (only the last image of a key in
 * the batch is applied), in one destination transaction with the cursor.
 */
inline applyBatch(when, t) {
  atomic {
    when && (logm >> (cur[t] + 1)) != 0;
    e = cur[t] + 1;
    do
    :: ((logm >> e) & 1) -> break          /* the batch ends at this change */
    :: (logm >> (e + 1)) != 0 -> e++       /* or reads further */
    od;
    d_step {
      seen = 0;
      i = e;
      do
      :: i > cur[t] ->
        if
        :: ((logm >> i) & 1) && !((seen >> walKey[i]) & 1) ->
          tab[t * K + walKey[i]] = walVal[i];
          seen = seen | (1 << walKey[i])
        :: else -> skip
        fi;
        i--
      :: else -> break
      od;
      cur[t] = e;
      i = 0; e = 0; seen = 0
    }
  }
}

proctype sluice() {
  byte e;                   /* batch end of applyBatch; 0 between steps */
  do
  /* ---- capture (contract 1) ---- */
  :: atomic {                               /* decode the next commit record from the slot */
      rd < walLen ->
      rd++;
      if
      :: rd <= logHead -> ackable = rd      /* at or below the log's head: already durable, skipped */
      :: rd > logHead && walDec[rd] -> bufm = bufm | (1 << rd)
      :: else -> skip                       /* not a change of T */
      fi
    }
  :: atomic {                               /* flush: one SQLite transaction, fsync */
      rd > logHead ->
      logm = logm | bufm; bufm = 0; logHead = rd; ackable = rd
    }
  :: atomic {                               /* acknowledge the slot */
#ifdef ACK_BEFORE_FLUSH
      confirmed < rd -> confirmed = rd
#else
      confirmed < ackable -> confirmed = ackable
#endif
    }

  /* ---- backfill of T, online mode (contract 3, 4) ---- */
  :: atomic { tstate == QUEUED && bphase == 0 -> pub = true; bphase = 1 }          /* ALTER PUBLICATION ADD TABLE */
  :: atomic { bphase == 1 -> L0v = walLen; waitmask = inflight; bphase = 2 }      /* L0 and xmax together */
#ifdef NO_INFLIGHT_WAIT
  :: atomic { bphase == 2 -> bphase = 3 }
#else
  :: atomic { bphase == 2 && (inflight & waitmask) == 0 -> bphase = 3 }           /* xmin passed xmax */
#endif
  :: atomic {                               /* prepare: staging table, run, L0, state: one transaction */
      bphase == 3 && tstate == QUEUED ->
      stg = 1 - live;
      d_step { i = 0; do :: i < K -> tab[stg * K + i] = ABSENT; i++ :: else -> i = 0; break od };
      cur[stg] = NONE; L0d = L0v; chunks = 0; tstate = BACKFILLING
    }
  :: atomic {                               /* read a chunk: one READ COMMITTED statement */
      tstate == BACKFILLING && !cpending && chunks < K ->
      cval = src[chunks]; cpending = true
    }
  :: atomic {                               /* commit the chunk's rows with its progress */
      cpending ->
      tab[stg * K + chunks] = cval; chunks++; cpending = false; cval = 0
    }
  :: atomic {                               /* last chunk committed: the staging cursor goes to L0 */
      tstate == BACKFILLING && chunks == K && !cpending ->
      cur[stg] = L0d; tstate = CATCHING_UP
    }

  /* ---- applier: one mechanism for streaming, replay and catch-up (contract 2, 3) ---- */
  :: applyBatch(live != NONE, live)
  :: applyBatch(tstate == CATCHING_UP, stg)

  /* ---- the change log drops what every cursor and pending L0 has passed ---- */
  :: atomic {
      live != NONE && (logm & ((2 << KEEP_AFTER) - 1)) != 0 ->
      logm = logm & ~((2 << KEEP_AFTER) - 1)
    }

  /* ---- online swap (contract 6): both tables at the log's head, then one transaction ---- */
#ifdef NONATOMIC_SWAP
  :: atomic { tstate == CATCHING_UP && live != NONE && DRAINED(live) && DRAINED(stg) -> cur[live] = 0; live = NONE }
  :: atomic { tstate == CATCHING_UP && live == NONE -> cur[stg] = logHead; live = stg; stg = NONE; tstate = STREAMING }
#else
  :: atomic {
      tstate == CATCHING_UP && DRAINED(live) && DRAINED(stg) ->
      cur[live] = 0; cur[stg] = logHead; live = stg; stg = NONE; tstate = STREAMING
    }
#endif

  /* ---- a crash: volatile state is gone, the process restarts from durable state ---- */
  :: atomic {
      crashes < MAXCRASH ->
      crashes++;
      rd = confirmed; bufm = 0; ackable = confirmed;
      bphase = 0; L0v = 0; waitmask = 0; cpending = false; cval = 0
    }

  /* ---- quiescent: writers done, everything captured, acknowledged, swapped and applied ---- */
  :: atomic {
      ended == NW && rd == walLen && logHead == walLen && confirmed == walLen &&
      tstate == STREAMING && live != NONE && DRAINED(live) -> break
    }
  od;
  /* property 2: the destination equals the source */
  atomic {
    skip;
    d_step {
      i = 0;
      do
      :: i < K -> assert(tab[live * K + i] == src[i]); i++
      :: else -> i = 0; break
      od
    }
  }
}

/*
 * Invariants checked in every reachable state:
 * property 1: the slot is never acknowledged past what is durable in the change log;
 * property 3: T's name always resolves to a table (the swap is atomic).
 */
active proctype monitor() {
end:
  atomic { !(confirmed <= logHead) || live == NONE -> assert(confirmed <= logHead); assert(live != NONE) }
}

init {
  atomic {
    d_step { i = 0; do :: i < K -> src[i] = INIT; tab[i] = STALE; i++ :: else -> i = 0; break od };
    live = 0; cur[0] = 0; cur[1] = NONE;
    run writer(0); run writer(1); run sluice()
  }
}
