/**
 * Small numeric helpers of the benchmark: percentiles of latency samples and a worker pool
 * that keeps N callers busy. Pure, so they are unit-tested (test/unit/bench-stats.test.ts).
 */

/** Latency samples in milliseconds, summarised. */
export interface Summary {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

/**
 * The `p`-th percentile (0-100) by the nearest-rank method: the smallest sample such that at
 * least p% of the samples are <= it. NaN for no samples (a figure that was not measured).
 */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1]!;
}

export function summarize(samples: readonly number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (p: number) => percentile(sorted, p);
  const total = sorted.reduce((a, b) => a + b, 0);
  return {
    count: sorted.length,
    p50: at(50),
    p95: at(95),
    p99: at(99),
    max: sorted.length ? sorted[sorted.length - 1]! : Number.NaN,
    mean: sorted.length ? total / sorted.length : Number.NaN,
  };
}

/**
 * Runs `task(i)` for i = 0..count-1 with at most `concurrency` in flight (each worker takes
 * the next index when its previous task ends, like `concurrency` independent callers).
 * Rejects with the first error once every started task has settled.
 */
export async function pool(count: number, concurrency: number, task: (i: number, worker: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: { error: unknown } | undefined;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async (_, worker) => {
      while (!failed && next < count) {
        const i = next++;
        try {
          await task(i, worker);
        } catch (error) {
          failed ??= { error };
        }
      }
    }),
  );
  if (failed) throw failed.error;
}

/** Milliseconds since `t0` (a `performance.now()` value). */
export const since = (t0: number): number => performance.now() - t0;
