/**
 * `npm run timeline -- <session_id> [--url URL] [--json]`: a session's sequence chart in the
 * terminal. Everything is in src/timeline/cli.ts (usage there, or `--help`).
 */
import { timelineCli } from '../timeline/cli.js';

// exit at once: an idle keep-alive socket of fetch would hold the process for seconds.
process.exit(await timelineCli(process.argv.slice(2), { env: process.env, stdout: process.stdout, stderr: process.stderr }));
