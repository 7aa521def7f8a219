/**
 * `npm run bench [-- options]` (see options.ts for the list, `-- --help`): builds, then runs the
 * benchmark scenarios against the service as a child process and prints a table of each
 * figure beside its floor measured in the same run; writes the same as JSON.
 *
 * Exit code: non-zero only when a scenario could not run at all (an error, sessions failing);
 * never because a figure missed its goal (the machine's speed drifts; CI runs `--smoke`).
 */
import { runBench } from './bench.js';
import { parseOptions } from './options.js';
import { table, writeJson } from './report.js';

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const report = await runBench(opts);
  console.log(`\n${table(report.rows)}`);
  for (const e of report.errors) console.log(`\nscenario (${e.scenario}) FAILED: ${e.message}`);
  writeJson(opts.json, report);
  console.log(`\n${(report.meta.seconds as number).toFixed(1)} s; figures written to ${opts.json}`);
  // Exit now: a stray handle (a socket in TIME_WAIT, a timer of a library) must not hold CI.
  process.exit(report.errors.length ? 1 : 0);
}

main().catch((err) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
});
