/**
 * App-like phones for tests, benchmarks and `npm run simulate`: one phone model (CONTRACT
 * section 8), a scenario driver, step timings and their summary, and the NATS transport.
 */
export * from './transport.js';
export * from './checks.js';
export * from './device.js';
export * from './phone.js';
export * from './timings.js';
export * from './measurement.js';
export * from './summary.js';
export * from './progress.js';
export * from './narration.js';
export * from './nats-transport.js';
