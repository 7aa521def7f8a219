/**
 * Structured logging (pino, JSON lines). Every request gets a child logger carrying
 * `request_id`, `device_id`, `lobby_id` and `session_id`; secrets are redacted wherever they
 * appear in a logged object.
 */
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export function createLogger(level: LevelWithSilent, destination?: pino.DestinationStream): Logger {
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
    // Asynchronous writes keep logging off the request path; pino flushes them on exit.
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
