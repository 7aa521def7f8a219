/**
 * Process entry point: `npm start`. Runs the service in the foreground until SIGTERM/SIGINT,
 * then shuts down gracefully:
 * - exit 0 once every request in flight is answered and the outbox is flushed;
 * - exit 1 at SHUTDOWN_TIMEOUT_MS after the signal if that is not done by then;
 * - exit 1 at once on a second signal.
 * Each of these ends with one log line saying which it was.
 */
import { ConfigError, loadConfig } from './config.js';
import { startApp, type App } from './app.js';
import { startDevNatsIfNeeded } from './dev-nats.js';
import { createLogger, prettyLogs } from './log.js';
import { NatsAuthError } from './transport/nats.js';

/**
 * The app's own steps give up at SHUTDOWN_TIMEOUT_MS; this much later the process exits
 * regardless (a step that ignores its deadline, e.g. a hung database close).
 */
const EXIT_GRACE_MS = 250;

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
  const log = createLogger(config.logLevel, undefined, prettyLogs(config.logPretty));
  // Logs are written asynchronously: flush them before the process goes.
  const exit = (code: number) => log.flush(() => process.exit(code));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
  // Node prints its warnings (deprecations, listener leaks) to stderr: into the log instead.
  process.removeAllListeners('warning');
  process.on('warning', (w) => log.warn({ warning: w.name, reason: w.message }, 'node warning'));

  let app: App;
  let stopDevNats: (() => Promise<void>) | undefined;
  try {
    stopDevNats = await startDevNatsIfNeeded(process.env, log);
    app = await startApp(config, log);
  } catch (err) {
    // Refused credentials are an expected, operator-fixable failure: one line, no stack.
    if (err instanceof NatsAuthError) log.fatal({ reason: err.message }, 'lobby service failed to start');
    else log.fatal({ err }, 'lobby service failed to start');
    await stopDevNats?.().catch(() => undefined);
    exit(1);
    return;
  }

  let signalledAt: number | undefined;
  let finished = false;
  const shutdown = (code: number) => {
    signalledAt = performance.now();
    const started = signalledAt;
    const end = (clean: boolean) => {
      if (finished) return;
      finished = true;
      if (!clean) {
        log.error(
          { timeout_ms: config.shutdownTimeoutMs, ...app.shutdownProgress() },
          'shutdown timed out (SHUTDOWN_TIMEOUT_MS): exiting with work unfinished',
        );
      }
      log.info({ shutdown_ms: Math.round(performance.now() - started) }, 'exiting');
      exit(clean ? code : 1);
    };
    // The hard limit: whatever still runs (a request stuck on a dependency), the process ends.
    const timer = setTimeout(() => end(false), config.shutdownTimeoutMs + EXIT_GRACE_MS);
    app
      .stop()
      .then(async (clean) => {
        await stopDevNats?.();
        clearTimeout(timer);
        end(clean);
      })
      .catch((err) => {
        log.error({ err }, 'shutdown failed');
        exit(1);
      });
  };

  const onSignal = (signal: NodeJS.Signals) => {
    if (signalledAt !== undefined) {
      log.warn(
        { signal, since_first_ms: Math.round(performance.now() - signalledAt), ...app.shutdownProgress() },
        'second signal: exiting now, without finishing the shutdown',
      );
      exit(1);
      return;
    }
    log.info({ signal }, 'signal received');
    shutdown(0);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  // The client gives up only on refused credentials (e.g. rotated while running); reconnecting
  // would never work again, so stop rather than linger without NATS.
  void app.nc.closed().then((err) => {
    if (signalledAt !== undefined) return;
    log.fatal({ reason: err instanceof Error ? err.message : 'closed' }, 'NATS connection closed for good');
    shutdown(1);
  });
}

main().catch((err) => {
  process.stderr.write(`lobby service failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
