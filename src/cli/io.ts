/**
 * What the operator CLIs (`timeline`, `replay`) share: their view of the process (so tests run
 * them in-process) and read access to the service's database without booting the service.
 */
import { MikroORM } from '@mikro-orm/core';
import { ConfigError, type DatabaseTarget } from '../config.js';
import { ormOptions } from '../db/orm.js';
import { Sql } from '../db/sql.js';

/** Where a CLI writes and what it reads of its environment. */
export interface CliIo {
  env: Record<string, string | undefined>;
  stdout: { write(s: string): unknown; isTTY?: boolean };
  stderr: { write(s: string): unknown };
}

/** A failure for the operator to fix: printed as its message, no stack; exit code 1. */
export class CliRefusal extends Error {}

/**
 * Runs a CLI's body and resolves with its exit code. A refusal (`CliRefusal`, a bad setting,
 * or what `refused` recognises) is printed as its message; anything else with its stack.
 */
export async function runCli(name: string, io: CliIo, body: () => Promise<number>, refused: (err: unknown) => boolean = () => false): Promise<number> {
  try {
    return await body();
  } catch (err) {
    const plain = err instanceof CliRefusal || err instanceof ConfigError || refused(err);
    io.stderr.write(`${name}: ${plain ? (err as Error).message : err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 1;
  }
}

/**
 * Runs `fn` with statements on the database of `target`, through MikroORM's pool as the service
 * does, but without migrations: these tools never change the schema. An embedded (`pglite:`)
 * database serves one process: only while its service is stopped.
 */
export async function withSql<T>(target: DatabaseTarget, fn: (sql: Sql) => Promise<T>): Promise<T> {
  if (target.kind === 'embedded' && target.dir === null) throw new CliRefusal('DATABASE_URL=memory: holds nothing to read');
  const orm = await MikroORM.init(ormOptions(target));
  try {
    return await fn(new Sql(orm));
  } finally {
    await orm.close(true);
  }
}
