/**
 * Structured logging (pino, JSON lines). Every request gets a child logger carrying
 * `request_id`, `device_id`, `lobby_id`, `session_id`, `trace_id` and `span_id`; secrets are
 * redacted wherever they appear in a logged object.
 *
 * For development, `pretty` writes the same lines human-readable (pino-pretty: time, level,
 * message, then the fields on one line); `LOG_PRETTY` turns it on or off, and when unset a
 * terminal on stdout turns it on. JSON otherwise (CI, containers, log shippers).
 */
import { pino, type Logger, type LevelWithSilent } from 'pino';
import pinoPretty from 'pino-pretty';

export type { Logger };

/** Whether logs are pretty: `LOG_PRETTY` when set, else whether stdout is a terminal. */
export function prettyLogs(configured: boolean | undefined, stdoutIsTty = process.stdout.isTTY === true): boolean {
  return configured ?? stdoutIsTty;
}

export function createLogger(level: LevelWithSilent, destination?: pino.DestinationStream, pretty = false): Logger {
  return pino(
    {
      level,
      base: { service: 'lobby' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: {
        paths: ['*.token', '*.password', '*.authToken', '*.credsFile', 'config.nats.token', 'config.nats.password', 'config.http.authToken', 'config.gatewayToken', '*.gatewayToken'],
        censor: '[redacted]',
      },
      // Errors are logged with their stack in the log only, never in a reply.
      serializers: { err: pino.stdSerializers.err },
    },
    pretty
      ? pinoPretty({
          destination: destination ?? 1,
          colorize: destination === undefined && process.stdout.isTTY === true,
          translateTime: 'SYS:HH:MM:ss.l',
          ignore: 'pid,hostname,service',
          singleLine: true,
        })
      : // Asynchronous writes keep logging off the request path; pino flushes them on exit.
        (destination ?? pino.destination({ dest: 1, sync: false })),
  );
}
