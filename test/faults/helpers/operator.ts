/**
 * A nats-server in operator (decentralised JWT) mode without `nsc`: an operator, a system
 * account and a JetStream-enabled account signed with @nats-io/jwt, preloaded into the
 * server's memory resolver, and a user of that account as a `.creds` file (what NATS_CREDS
 * names).
 */
import { createAccount, createOperator, createUser, encodeAccount, encodeOperator, encodeUser, fmtCreds } from '@nats-io/jwt';

export interface OperatorSetup {
  /** The server configuration for a client port and a JetStream store. */
  conf(port: number, storeDir: string): string;
  /** A `.creds` file's content for a user of the JetStream account. */
  creds: Uint8Array;
  /** The user's seed (the secret inside `creds`), to check it never reaches a log. */
  userSeed: string;
}

export async function operatorSetup(): Promise<OperatorSetup> {
  const operator = createOperator();
  const system = createAccount();
  const account = createAccount();
  const user = createUser();
  const operatorJwt = await encodeOperator('lobby-test', operator, { system_account: system.getPublicKey() });
  const systemJwt = await encodeAccount('SYS', system, {}, { signer: operator });
  // -1: unlimited. Limits left out are 0 for this library: no connections, and a JetStream
  // limit of 0 leaves JetStream disabled for the account.
  const accountJwt = await encodeAccount(
    'LOBBY',
    account,
    {
      limits: {
        conn: -1,
        subs: -1,
        data: -1,
        payload: -1,
        leaf: -1,
        imports: -1,
        exports: -1,
        wildcards: true,
        mem_storage: -1,
        disk_storage: -1,
        streams: -1,
        consumer: -1,
      },
    },
    { signer: operator },
  );
  const userJwt = await encodeUser('lobby-service', user, account);
  return {
    conf: (port, storeDir) =>
      [
        `listen: 127.0.0.1:${port}`,
        `operator: ${operatorJwt}`,
        `system_account: ${system.getPublicKey()}`,
        'resolver: MEMORY',
        'resolver_preload: {',
        `  ${system.getPublicKey()}: ${systemJwt}`,
        `  ${account.getPublicKey()}: ${accountJwt}`,
        '}',
        `jetstream { store_dir: ${JSON.stringify(storeDir)} }`,
        '',
      ].join('\n'),
    creds: fmtCreds(userJwt, user),
    userSeed: new TextDecoder().decode(user.getSeed()),
  };
}
