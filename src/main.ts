/**
 * Process entry point: `npm start`. Runs the service in the foreground until SIGTERM/SIGINT,
 * then shuts down gracefully (a second signal exits at once).
 */
import { ConfigError, loadConfig } from './config.js';
import { startApp } from './app.js';
import { startDevNatsIfNeeded } from './dev-nats.js';
import { createLogger } from './log.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.logLevel);
  // Logs are written asynchronously: flush them before the process goes.
  const exit = (code: number) => log.flush(() => process.exit(code));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));

  const stopDevNats = await startDevNatsIfNeeded(process.env, log);
  const app = await startApp(config, log);
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (++signals > 1) {
      log.warn({ signal }, 'second signal: exiting now');
      exit(1);
      return;
    }
    log.info({ signal }, 'signal received');
    app
      .stop()
      .then(() => stopDevNats?.())
      .then(
        () => exit(0),
        (err) => {
          log.error({ err }, 'shutdown failed');
          exit(1);
        },
      );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

main().catch((err) => {
  process.stderr.write(`lobby service failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
