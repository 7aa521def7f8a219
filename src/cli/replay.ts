/**
 * `npm run replay -- --lobby <lobby_id> [--from <id>] [--json]` or `-- --rebuild-stream`: a
 * lobby's history from the JetStream stream, or the stream rebuilt from the event log.
 * Everything is in src/replay/cli.ts (usage there, or `--help`).
 */
import { replayCli } from '../replay/cli.js';

process.exit(await replayCli(process.argv.slice(2), { env: process.env, stdout: process.stdout, stderr: process.stderr }));
