/**
 * The running pipeline's answer to a request (`backfill`, `cancel`, `throttle`): the CLI waits for it
 * and prints it. With no pipeline running (nobody holds its lock) it says so at once: the request is
 * recorded and acted on at the next start.
 */
import { DEFAULT_ANSWER_TIMEOUT_S, isRefusal, type Answers } from '../../control/answers.js';

export { awaitAnswers, DEFAULT_ANSWER_TIMEOUT_S, isRefusal } from '../../control/answers.js';

/**
 * Prints the answers (refusals to stderr) and returns the exit code: 0, or 2 when the pipeline refused.
 * `json`: one object on stdout instead, `{answered, running, answers: [{table, outcome, refused}]}`.
 */
export function printAnswers(a: Answers, timeoutS: number, label = (t: string) => `${t}: `, json = false): number {
  const refused = a.rows.some((r) => isRefusal(r.outcome));
  if (json) {
    const answers = a.rows.map((r) => ({ table: r.table_name, outcome: r.outcome, refused: isRefusal(r.outcome) }));
    process.stdout.write(JSON.stringify({ answered: a.answered, running: a.running, answers }, null, 2) + '\n');
    return refused ? 2 : 0;
  }
  let code = 0;
  for (const row of a.rows) {
    const line = `${label(row.table_name)}${row.outcome}\n`;
    if (isRefusal(row.outcome)) {
      code = 2;
      process.stderr.write(line);
    } else process.stdout.write(line);
  }
  if (!a.answered) {
    process.stdout.write(
      a.running
        ? `recorded; the running pipeline has not answered within ${timeoutS} s: it acts on the request when it reads it (see sluice status)\n`
        : 'recorded; no pipeline is running, it is acted on at the next start\n',
    );
  }
  return code;
}

export function answerTimeout(flag: string | undefined): number {
  if (flag === undefined) return DEFAULT_ANSWER_TIMEOUT_S;
  const n = Number(flag);
  if (!Number.isFinite(n) || n < 0) return NaN;
  return n;
}
