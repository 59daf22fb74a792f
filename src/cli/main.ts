#!/usr/bin/env node
/** The sluice command line. Exit codes: 0 success; 1 a difference or a failed run; 2 bad usage, config or environment. */
import { Command, Option } from 'commander';
import { backfillCommand, cancelCommand, MODE_HELP, pauseCommand, throttleCommand } from './commands/requests.js';
import { rollbackCommand } from './commands/rollback.js';
import { runCommand } from './commands/run.js';
import { statusCommand } from './commands/status.js';
import { archivesDropCommand, archivesListCommand } from './commands/archives.js';
import { verifyCommand } from './commands/verify.js';
import { demoCommand } from './commands/demo.js';
import {
  inplaceAuditCommand,
  inplaceEnsureFinishedCommand,
  inplacePlanCommand,
  inplaceRequestCommand,
  inplaceRetryFailedCommand,
  inplaceRevertCommand,
  inplaceRunCommand,
  inplaceStatusCommand,
  inplaceThrottleCommand,
  inplaceVerifyCommand,
} from './commands/inplace.js';
import { exitCodeOf, reportError, type GlobalOptions } from './shared.js';
import { VERSION } from '../pipeline/orchestrator.js';

const program = new Command();
program
  .name('sluice')
  .description('Online database backfills alongside change-data-capture (PostgreSQL → PostgreSQL)')
  .version(VERSION)
  .option('-c, --config <path>', 'configuration file', 'sluice.yaml')
  .addOption(new Option('--log-format <format>', 'log format').choices(['pretty', 'json']))
  .option('-v, --verbose', 'debug logging')
  .showHelpAfterError()
  .exitOverride();

function globals(): GlobalOptions {
  return program.opts() as GlobalOptions;
}

let action: Promise<number> | null = null;

program
  .command('run')
  .description('capture changes, backfill the configured tables and apply changes until SIGINT/SIGTERM')
  .option('--http [addr]', "serve the operator's page, API and metrics (default api.listen, else 127.0.0.1:7433; docs/api.md)")
  .action((flags: { http?: string | boolean }) => {
    action = runCommand(globals(), flags);
  });

program
  .command('backfill')
  .description('(re)load tables while change capture keeps running')
  .argument('<table...>', 'tables to backfill (schema.table)')
  .addOption(
    new Option('--mode <mode>', Object.entries(MODE_HELP).map(([m, h]) => `${m}: ${h}`).join('; ')).choices(Object.keys(MODE_HELP)).default('online'),
  )
  .option('--strategy <strategy>', 'keyset: walk the primary key, one reader; interval: integer-key ranges read concurrently; ctid: heap page ranges read concurrently (PostgreSQL 14+); daterange: time ranges of the table\'s dateColumn, read concurrently')
  .option('--where <sql>', 'load only the rows matching this condition (upsert: over the existing rows; truncate: delete the matching rows, then load them)')
  .option('--parallelism <n>', 'chunks of the table read at once (interval, ctid)')
  .option('--keep-archive', 'online: keep the replaced table instead of dropping it after online.archiveRetentionHours')
  .option('--cascade', 'drop: drop the table even when other objects depend on it; foreign keys are added back, views created again, materialized views dropped')
  .option('--wait', 'after the answer, wait until the tables stream again; exit 1 if one fails')
  .option('--answer-timeout <seconds>', "how long to wait for the running pipeline's answer (default 10; 0: do not wait)")
  .option('--json', 'the answers as one JSON object: {answered, running, answers: [{table, outcome, refused}]}')
  .action((tables: string[], flags) => {
    action = backfillCommand(tables, flags, globals());
  });

program
  .command('cancel')
  .description('stop backfills in progress')
  .argument('<table...>', 'tables')
  .option('--reason <text>', 'why, for the audit (_sluice.requests)')
  .option('--answer-timeout <seconds>', "how long to wait for the running pipeline's answer (default 10; 0: do not wait)")
  .option('--json', 'the answers as one JSON object: {answered, running, answers: [{table, outcome, refused}]}')
  .action((tables: string[], flags) => {
    action = cancelCommand(tables, globals(), flags);
  });

for (const kind of ['pause', 'resume'] as const) {
  program
    .command(kind)
    .description(
      kind === 'pause'
        ? 'hold copying in the running pipeline (capture and apply go on); --apply: hold applying (capture keeps filling the change log)'
        : 'let copying (--apply: applying) go on after sluice pause',
    )
    .option('--apply', 'applying changes instead of copying')
    .option('--reason <text>', 'why, for the audit (_sluice.requests)')
    .option('--answer-timeout <seconds>', "how long to wait for the running pipeline's answer (default 10; 0: do not wait)")
    .action((flags) => {
      action = pauseCommand(kind, flags, globals());
    });
}

program
  .command('rollback')
  .description('swap the table an online backfill replaced back in: its archive is brought current by replaying the changes since the swap, then swapped in like an online backfill')
  .argument('<table...>', 'tables')
  .option('--keep-archive', 'keep the table the rollback replaces instead of dropping it after online.archiveRetentionHours')
  .option('--reason <text>', 'why, for the audit (_sluice.requests)')
  .option('--wait', 'after the answer, wait until the tables stream again; exit 1 if one fails')
  .option('--answer-timeout <seconds>', "how long to wait for the running pipeline's answer (default 10; 0: do not wait)")
  .action((tables: string[], flags) => {
    action = rollbackCommand(tables, flags, globals());
  });

program
  .command('throttle')
  .description("change the throttle of the running pipeline (kept across restarts until --reset; 0 turns a limit off)")
  .option('--max-rows-per-second <n>', 'rows/s ceiling across all backfills')
  .option('--max-chunks-per-second <n>', 'chunks/s ceiling across all backfills')
  .option('--max-active-sessions <n>', 'pause while the source has more active sessions (not counting sluice)')
  .option('--max-replica-lag-seconds <n>', 'pause while the replica lags more')
  .option('--max-slot-lag-bytes <n>', "pause while sluice's slot retains more WAL")
  .option('--query <sql>', 'pause while this query on the source returns a number > 0 ("" removes it)')
  .option('--reset', "go back to the config's limits")
  .option('--answer-timeout <seconds>', "how long to wait for the running pipeline's answer (default 10; 0: do not wait)")
  .option('--json', 'the answers as one JSON object: {answered, running, answers: [{table, outcome, refused}]}')
  .action((flags) => {
    action = throttleCommand(flags, globals());
  });

program
  .command('status')
  .description("each table's state, rows copied, rate, lag and last error")
  .option('--json', 'machine-readable output')
  .action((flags) => {
    action = statusCommand(flags, globals());
  });

const archives = program.command('archives').description('the tables online backfills replaced, kept for online.archiveRetentionHours: list and drop them');
archives
  .command('list')
  .description('each archive kept: its table, run, creation, when it is dropped, and its size; the total')
  .option('--json', 'machine-readable output')
  .action((flags) => {
    action = archivesListCommand(flags, globals());
  });
archives
  .command('drop')
  .description('drop archives now (only archive tables, never a live one; safe while `sluice run` runs)')
  .argument('[archive]', 'an archive, as `sluice archives list` names it')
  .option('--table <table>', 'every archive of this table')
  .option('--all-expired', 'every archive past its retention')
  .option('--json', 'machine-readable output')
  .action((archive: string | undefined, flags) => {
    action = archivesDropCommand(archive, flags, globals());
  });

program
  .command('verify')
  .description('compare source and destination: row counts and ordered hashes per key range (exit 0 equal, 1 different)')
  .argument('[table...]', 'tables (default: all configured)')
  .option('--json', 'machine-readable output')
  .option('--attempts <n>', 'checks of a differing range before it is reported (tables keep moving)', '4')
  .option('--range-rows <n>', 'rows per compared key range (also the most rows held in memory to name keys)', '50000')
  .option('--max-rows-per-second <n>', 'ceiling on rows read from the source per second (0: none)', '0')
  .option('--where <sql>', 'compare only the rows matching this condition (e.g. the scope of a backfill)')
  .option('--by <unit:column>', 'compare per day or hour of a timestamp column first (day:created_at), then name the keys of the hours that differ')
  .option('--time-zone <zone>', 'the time zone of --by days and hours (default UTC)')
  .action((tables: string[], flags) => {
    action = verifyCommand(tables, flags, globals());
  });

program
  .command('demo')
  .description('everything embedded: throwaway source and destination clusters, live writes, a backfill, a verify')
  .option('--rows <n>', 'rows in the demo table', '1000000')
  .option('--keep', 'keep the clusters running at the end (Ctrl-C to stop)')
  .option('--http [addr]', "serve the operator's page while the demo runs, and keep it up at the end (Ctrl-C to stop)")
  .option('--destination <type>', 'postgres (a throwaway cluster) or duckdb (a DuckDB file)', 'postgres')
  .action((flags) => {
    action = demoCommand(flags, globals());
  });

/** Commander's collector for a repeatable option. */
function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

const inplace = program
  .command('inplace')
  .description('in-place jobs: chunked, throttled, exactly-once UPDATE/DELETE on a live database, audited (docs/inplace.md)');
inplace
  .command('plan')
  .description('before anything changes: the chunk statement and its plan, triggers, cascades, indexed columns, estimates from sample chunks rolled back')
  .argument('[job]', 'the job file (YAML)')
  .option('--with <key=value>', 'a job key, over the file or instead of one (repeatable; dotted: throttle.maxRowsPerSecond=5000)', collect, [])
  .option('--allow-scan', 'accept a chunk statement that reads the whole table')
  .option('--json', 'machine-readable output')
  .action((job: string | undefined, flags) => {
    action = inplacePlanCommand({ file: job, with: flags.with }, flags, globals());
  });
inplace
  .command('run')
  .description('run the job (or resume its run) until done; SIGINT/SIGTERM stop after the chunk in flight')
  .argument('[job]', 'the job file (YAML)')
  .option('--with <key=value>', 'a job key, over the file or instead of one (repeatable; dotted: throttle.maxRowsPerSecond=5000)', collect, [])
  .option('--again', 'start a new run of a job whose last run is done')
  .option('--allow-scan', 'accept a chunk statement that reads the whole table')
  .option('--reason <text>', "why it runs, for the audit ledger (else the job's reason:)")
  .action((job: string | undefined, flags) => {
    action = inplaceRunCommand({ file: job, with: flags.with }, flags, globals());
  });
inplace
  .command('status')
  .description("the job's last run: state, rows, %, rate, ETA, errors")
  .argument('[job]', 'the job file (YAML)')
  .option('--with <key=value>', 'a job key, over the file or instead of one (repeatable; dotted: throttle.maxRowsPerSecond=5000)', collect, [])
  .option('--json', 'machine-readable output')
  .action((job: string | undefined, flags) => {
    action = inplaceStatusCommand({ file: job, with: flags.with }, flags, globals());
  });
for (const what of ['pause', 'resume', 'cancel'] as const) {
  inplace
    .command(what)
    .description(
      what === 'pause'
        ? 'hold the running job after its chunk in flight'
        : what === 'resume'
          ? 'let a paused job go on'
          : 'end the run after its chunk in flight (committed chunks stay)',
    )
    .argument('[job]', 'the job file (YAML)')
    .option('--with <key=value>', 'a job key, over the file or instead of one (repeatable)', collect, [])
    .action((job: string | undefined, flags) => {
      action = inplaceRequestCommand(what, { file: job, with: flags.with }, globals());
    });
}
inplace
  .command('throttle')
  .description('retune the running job (applied before its next chunk)')
  .argument('[job]', 'the job file (YAML)')
  .option('--with <key=value>', 'a job key, over the file or instead of one (repeatable; dotted: throttle.maxRowsPerSecond=5000)', collect, [])
  .option('--max-rows-per-second <n>', 'rows/s ceiling')
  .option('--max-wal-bytes-per-second <n>', "budget for the job's WAL")
  .option('--max-active-sessions <n>', 'hold while more sessions are active')
  .option('--max-replica-lag-seconds <n>', 'hold while a standby lags more')
  .option('--max-slot-retained-bytes <n>', 'hold while a sluice replication slot retains more WAL')
  .option('--query <sql>', 'hold while this query returns a number > 0')
  .option('--reset', "back to the job file's throttle")
  .action((job: string | undefined, flags) => {
    action = inplaceThrottleCommand({ file: job, with: flags.with }, flags, globals());
  });
inplace
  .command('verify')
  .description("post-check: rows of the committed key ranges that still match the job's where (exit 0 none and done, 1 otherwise)")
  .argument('[job]', 'the job file (YAML)')
  .option('--with <key=value>', 'a job key, over the file or instead of one (repeatable; dotted: throttle.maxRowsPerSecond=5000)', collect, [])
  .option('--json', 'machine-readable output')
  .action((job: string | undefined, flags) => {
    action = inplaceVerifyCommand({ file: job, with: flags.with }, flags, globals());
  });
inplace
  .command('revert')
  .description('restore the rows an update run with undo: true changed, chunk by chunk under the throttle; rows changed since are left and named')
  .argument('[job]', 'the job file (YAML)')
  .option('--with <key=value>', 'a job key, over the file or instead of one (repeatable; dotted: throttle.maxRowsPerSecond=5000)', collect, [])
  .option('--run <id>', "the run to revert (default: the job's last run)")
  .option('--reason <text>', 'why, for the audit ledger')
  .action((job: string | undefined, flags) => {
    action = inplaceRevertCommand({ file: job, with: flags.with }, flags, globals());
  });
inplace
  .command('retry-failed')
  .description("once the cause is fixed: try the rows the job's last run sent to the dead-letter table again (exit 1 if some fail again)")
  .argument('[job]', 'the job file (YAML)')
  .option('--with <key=value>', 'a job key, over the file or instead of one (repeatable; dotted: throttle.maxRowsPerSecond=5000)', collect, [])
  .action((job: string | undefined, flags) => {
    action = inplaceRetryFailedCommand({ file: job, with: flags.with }, globals());
  });
inplace
  .command('ensure-finished')
  .description("exit 0 only when the job's last run is done (for deploy pipelines)")
  .argument('[job]', 'the job file (YAML)')
  .option('--with <key=value>', 'a job key, over the file or instead of one (repeatable; dotted: throttle.maxRowsPerSecond=5000)', collect, [])
  .action((job: string | undefined, flags) => {
    action = inplaceEnsureFinishedCommand({ file: job, with: flags.with }, globals());
  });
inplace
  .command('audit')
  .description("the job's runs from the ledger: who, why, what, when; --check verifies the whole ledger's hash chain")
  .argument('[job]', 'the job file (YAML)')
  .option('--with <key=value>', 'a job key, over the file or instead of one (repeatable; dotted: throttle.maxRowsPerSecond=5000)', collect, [])
  .option('--check', 'verify the hash chain and the chunk totals (exit 1 when edited)')
  .option('--json', 'machine-readable output')
  .action((job: string | undefined, flags) => {
    action = inplaceAuditCommand({ file: job, with: flags.with }, flags, globals());
  });

async function main(): Promise<void> {
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    const e = err as { code?: string; exitCode?: number };
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') process.exit(0);
    process.exit(typeof e.exitCode === 'number' && e.exitCode !== 0 ? 2 : 0);
  }
  if (!action) {
    program.outputHelp();
    process.exit(2);
  }
  try {
    const code = await action;
    process.exit(code);
  } catch (err) {
    reportError(err);
    process.exit(exitCodeOf(err));
  }
}

void main();
