/**
 * Preloaded into the service child by the memory scenario (d) only:
 * `node --expose-gc --import ./dist/test/bench/gc-on-signal.js dist/src/main.js`. SIGUSR2 then
 * runs a full garbage collection, so that resident memory is measured without the garbage V8
 * keeps until its memory reducer happens to run (15 s or more after a burst, or not at all in
 * a sampling window). The service's own code is unchanged.
 */
const gc = (globalThis as { gc?: () => void }).gc;
if (gc) process.on('SIGUSR2', () => gc());
