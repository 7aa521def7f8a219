/**
 * The embedded database driver: mikro-orm-pglite with one fix.
 *
 * MikroORM inlines parameters into the SQL it sends, and the PGlite knex dialect decides that a
 * statement is "several statements" (and runs it with `exec`, returning an array of results)
 * whenever the text contains a `;` — including a `;` inside a quoted value such as a JSON
 * payload. MikroORM then cannot read the result and the transaction fails. Here the `;` test
 * ignores quoted literals and identifiers, so only real multi-statement SQL goes to `exec`.
 */
import { AbstractSqlDriver, PostgreSqlPlatform, type Configuration } from '@mikro-orm/postgresql';
import { PGliteConnection, PGliteKnexDialect } from 'mikro-orm-pglite';

type QueryArgs = Parameters<PGliteKnexDialect['_query']>;

/** Whether `sql` holds more than one statement, looking only outside quotes. */
export function isMultiStatement(sql: string): boolean {
  const bare = sql.replace(/'(?:[^']|'')*'/g, "''").replace(/"(?:[^"]|"")*"/g, '""');
  return bare.split(';').filter((s) => s.trim().length > 0).length > 1;
}

class SafePGliteKnexDialect extends PGliteKnexDialect {
  override async _query(connection: QueryArgs[0], obj: QueryArgs[1]): Promise<QueryArgs[1]> {
    if (!obj.sql) throw new Error('The query is empty');
    obj.response =
      obj.method === 'raw' && isMultiStatement(obj.sql)
        ? await connection.exec(obj.sql)
        : await connection.query(obj.sql, obj.bindings ?? []);
    return obj;
  }
}

class SafePGliteConnection extends PGliteConnection {
  override createKnex(): void {
    // Same as PGliteConnection.createKnex, with the fixed dialect.
    const self = this as unknown as {
      client: unknown;
      createKnexClient(d: unknown): unknown;
      getKnex(): { client: Record<string, unknown> };
      config: unknown;
      dialectDataSource: unknown;
      connected: boolean;
    };
    self.client = self.createKnexClient(SafePGliteKnexDialect);
    const dialect = self.getKnex().client;
    dialect.ormConfig = self.config;
    dialect.driver = self.dialectDataSource;
    self.connected = true;
  }
}

export class SafePGliteDriver extends AbstractSqlDriver<SafePGliteConnection> {
  constructor(config: Configuration) {
    super(config, new PostgreSqlPlatform(), SafePGliteConnection, ['knex', '@electric-sql/pglite', '@harryplusplus/knex-pglite']);
  }
}
