/**
 * `npm run profile [-- options]`: runs the bench (default scenarios a and b; any bench option
 * works, e.g. `--only c --smoke`) with every service child under
 * `node --cpu-prof --cpu-prof-dir=<dir>`, stops it with SIGTERM so the profile is written,
 * then prints for each profile its self time by category and its top functions.
 *
 * `--analyze <file.cpuprofile | dir>` only prints the summary of existing profiles;
 * `--top N` sets the number of functions (default 20).
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { runBench } from './bench.js';
import { formatSummary, sourceMapLocator, summarizeProfile, type CpuProfile } from './cpuprofile.js';
import { parseOptions } from './options.js';
import { table, writeJson } from './report.js';
import { ROOT, launched } from './service.js';

/** Takes `--name value` out of argv (parseOptions knows only the bench's own options). */
function take(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  if (i < 0) return undefined;
  const [, value] = argv.splice(i, 2);
  if (value === undefined) throw new Error(`${name} needs a value`);
  return value;
}

/** The file itself, or every .cpuprofile under a directory (oldest run first). */
function profilesIn(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.cpuprofile'))
    .sort()
    .map((f) => join(path, f));
}

const READY_FILE = 'service-processes.json';

/** Per pid, when each service of a profile run first answered (empty when not recorded). */
function readyTimes(dir: string): Map<number, number> {
  const file = join(dir, READY_FILE);
  if (!existsSync(file)) return new Map();
  const list = JSON.parse(readFileSync(file, 'utf8')) as { pid: number; readyAtUs: number }[];
  return new Map(list.map((l) => [l.pid, l.readyAtUs]));
}

/** `readyAt`: per pid, when that service first answered (its start-up is reported apart). */
function printProfiles(files: string[], top: number, readyAt = new Map<number, number>()): void {
  const locate = sourceMapLocator(ROOT);
  for (const file of files) {
    const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
    // Node names them CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile.
    const pid = Number(/CPU\.\d+\.\d+\.(\d+)\./.exec(file)?.[1]);
    console.log(`\n=== ${file}\n    (open in Chrome DevTools: Performance panel > Load profile; or in VS Code)\n`);
    console.log(formatSummary(summarizeProfile(profile, locate, readyAt.get(pid)), top));
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const analyze = take(argv, '--analyze');
  const top = Number(take(argv, '--top') ?? 20);
  if (analyze) {
    const files = profilesIn(resolve(analyze));
    printProfiles(files, top, new Map(files.flatMap((f) => [...readyTimes(dirname(f))])));
    return;
  }
  const dir = join(ROOT, 'bench-profiles', new Date().toISOString().replace(/[:.]/g, '-'));
  mkdirSync(dir, { recursive: true });
  const opts = parseOptions(argv, {
    only: ['a', 'b'],
    json: 'profile-results.json',
    nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`],
  });
  const report = await runBench(opts);
  console.log(`\n${table(report.rows)}\n(figures measured under the profiler: slower than npm run bench)`);
  for (const e of report.errors) console.log(`\nscenario (${e.scenario}) FAILED: ${e.message}`);
  writeJson(opts.json, report);
  const files = profilesIn(dir);
  if (files.length === 0) throw new Error(`no .cpuprofile written in ${dir}`);
  console.log(`\none profile per service process started (in scenario order): ${dir}`);
  // Kept beside the profiles, so that --analyze can split off the start-up later too.
  writeFileSync(join(dir, READY_FILE), `${JSON.stringify(launched, null, 2)}\n`);
  printProfiles(files, top, readyTimes(dir));
  process.exit(report.errors.length ? 1 : 0);
}

main().catch((err) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
});
