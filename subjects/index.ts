/**
 * The wire contract as code; `subjects/README.md` is the same contract in words (cited as
 * "CONTRACT section N" in comments). Handlers, transports, tests, tools and other services import
 * subject names, schemas and error codes from here and nowhere else.
 */
export * from './errors.js';
export * from './objects.js';
export * from './commands.js';
export * from './events.js';
export * from './headers.js';
export * from './internal.js';
export * from './http.js';
export * from './timeline.js';
