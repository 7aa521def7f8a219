import { describe, expect, it } from 'vitest';
import { ErrorBody, ErrorStatus, errorCodes } from '../../subjects/index.js';
import {
  DatabaseUnreachable,
  ServiceError,
  UnavailableError,
  classifyError,
  fail,
  failureFields,
  normalizeError,
  reasonOf,
  retriedFailure,
  toWire,
} from '../../src/errors.js';

/** CONTRACT section 2, copied by hand: a disagreement with `subjects/errors.ts` fails here. */
const CONTRACT_TABLE: Record<string, number> = {
  invalid_request: 400,
  unauthorized: 401,
  forbidden: 403,
  lobby_not_found: 404,
  session_not_found: 404,
  participant_not_found: 404,
  lobby_not_open: 409,
  lobby_full: 409,
  slot_taken: 409,
  role_mismatch: 409,
  session_active: 409,
  wrong_phase: 409,
  session_finished: 409,
  payload_too_large: 413,
  rate_limited: 429,
  unavailable: 503,
  internal: 500,
};

describe('errors', () => {
  it('errors - every code and status matches the contract table, no more, no less', () => {
    expect({ ...ErrorStatus }).toEqual(CONTRACT_TABLE);
    expect([...errorCodes].sort()).toEqual(Object.keys(CONTRACT_TABLE).sort());
    for (const code of errorCodes) expect(new ServiceError(code, 'x').status).toBe(CONTRACT_TABLE[code]);
  });

  it('errors - a ServiceError passes through normalizeError unchanged', () => {
    const e = new ServiceError('lobby_full', 'the lobby is full', { max_participants: 5 });
    expect(normalizeError(e)).toBe(e);
    const u = new UnavailableError('db down', new Error('x'));
    expect(normalizeError(u)).toBe(u);
    expect(u.code).toBe('unavailable');
    expect(u.status).toBe(503);
  });

  it('errors - connection failures become unavailable, keeping the cause', () => {
    const cases: unknown[] = [
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
      Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }),
      Object.assign(new Error('too many clients'), { code: '53300' }),
      Object.assign(new Error('Knex: Timeout acquiring a connection'), { name: 'KnexTimeoutError' }),
      Object.assign(new Error('getaddrinfo EAI_AGAIN postgres'), { code: 'EAI_AGAIN' }),
      Object.assign(new Error('the database system is starting up'), { code: '57P03' }),
      Object.assign(new Error('connection failure'), { code: '08006' }),
      // src/db/sql.ts saw the connection die under the statement: no code, no known message.
      new DatabaseUnreachable('the connection to the database was lost', { cause: new Error('Client has encountered a connection error and is not queryable') }),
      // Wrapped by the ORM: the driver error is the cause.
      new Error('query failed', { cause: Object.assign(new Error('reset'), { code: 'ECONNRESET' }) }),
    ];
    for (const err of cases) {
      const n = normalizeError(err);
      expect(n.code, String(err)).toBe('unavailable');
      expect(n.status).toBe(503);
      expect(n.cause).toBe(err);
      expect(n.message).not.toMatch(/ECONN|5432|Knex|terminat/);
    }
  });

  it('errors - anything else is internal with a generic message and the cause kept', () => {
    const secret = new Error('duplicate key value violates unique constraint "x" password=hunter2');
    const cases: unknown[] = [
      secret,
      new TypeError('cannot read x of undefined'),
      'a string',
      42,
      null,
      undefined,
      { code: 'XX000' },
      // Data-class SQLSTATEs: the server was reached and refused the statement itself.
      Object.assign(new Error('invalid input syntax for type uuid'), { code: '22P02' }),
      Object.assign(new Error('deadlock detected'), { code: '40P01' }),
      // Message texts alone classify nothing: without the connection's state, only the
      // health monitor (classifyError) can tell.
      new Error('Connection terminated unexpectedly'),
    ];
    for (const err of cases) {
      const n = normalizeError(err);
      expect(n).toBeInstanceOf(ServiceError);
      expect(n.code).toBe('internal');
      expect(n.status).toBe(500);
      expect(n.message).toBe('internal error');
      expect(n.details).toBeUndefined();
      expect(n.cause).toBe(err);
      const wire = JSON.stringify(toWire(n).body);
      expect(wire).not.toMatch(/hunter2|constraint|undefined|XX000|stack/);
    }
  });

  it('errors - toWire gives the status and {error: {code, message, details?}}', () => {
    const plain = toWire(fail.forbidden('only the lobby admin may do this'));
    expect(plain).toEqual({ status: 403, body: { error: { code: 'forbidden', message: 'only the lobby admin may do this' } } });
    expect('details' in plain.body.error).toBe(false);

    const detailed = toWire(fail.invalid('bad', [{ path: 'role', message: 'Invalid option' }]));
    expect(detailed).toEqual({
      status: 400,
      body: { error: { code: 'invalid_request', message: 'bad', details: { issues: [{ path: 'role', message: 'Invalid option' }] } } },
    });
    for (const w of [plain, detailed]) expect(ErrorBody.safeParse(w.body).success).toBe(true);
    expect(toWire(new ServiceError('rate_limited', 'slow down', { retry_after_ms: 250 })).status).toBe(429);
  });

  it('errors - classifyError asks the health monitor only about what would be internal', async () => {
    const asked: unknown[] = [];
    const judge = (verdict: boolean) => ({
      explains: async (err: unknown) => {
        asked.push(err);
        return verdict;
      },
    });
    const odd = new Error('Received unexpected commandComplete message from backend.');
    expect((await classifyError(odd, judge(true))).code).toBe('unavailable');
    expect((await classifyError(odd, judge(true))).cause).toBe(odd);
    expect((await classifyError(odd, judge(false))).code).toBe('internal');
    expect((await classifyError(odd)).code).toBe('internal');
    asked.length = 0;
    expect((await classifyError(fail.lobbyNotFound(), judge(true))).code).toBe('lobby_not_found');
    expect((await classifyError(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }), judge(false))).code).toBe('unavailable');
    expect(asked).toEqual([]);
  });

  it('errors - expected failures are logged as one reason without a stack, others with their error', () => {
    const refused = new Error('no connection to the database', {
      cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
    });
    const db = new DatabaseUnreachable('no connection to the database', { cause: refused.cause });
    expect(failureFields(db)).toEqual({ reason: 'no connection to the database: connect ECONNREFUSED 127.0.0.1:5432' });
    const fetchFailed = new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) });
    expect(failureFields(fetchFailed)).toEqual({ reason: 'fetch failed: connect ECONNREFUSED' });
    const sink = Object.assign(new Error('the Gateway answered 502'), { name: 'SinkRefused' });
    expect(failureFields(sink)).toEqual({ reason: 'the Gateway answered 502' });
    expect(reasonOf(Object.assign(new Error('the database system is starting up'), { code: '57P03' }))).toBe(
      'the database system is starting up (57P03)',
    );
    const bug = new TypeError('cannot read x of undefined');
    expect(failureFields(bug)).toEqual({ err: bug });

    // A database outage is the monitor's to tell: debug. Another dependency: warn, once per streak.
    expect(retriedFailure(db, true).level).toBe('debug');
    expect(retriedFailure(fetchFailed, true)).toEqual({ level: 'warn', fields: { reason: 'fetch failed: connect ECONNREFUSED' } });
    expect(retriedFailure(fetchFailed, false).level).toBe('debug');
    expect(retriedFailure(bug, true)).toEqual({ level: 'warn', fields: { err: bug } });
  });

  it('errors - the shorthand constructors carry the contract codes', () => {
    expect(fail.invalid('x').code).toBe('invalid_request');
    expect(fail.invalid('x').details).toBeUndefined();
    expect(fail.lobbyNotFound().code).toBe('lobby_not_found');
    expect(fail.sessionNotFound().code).toBe('session_not_found');
    expect(fail.participantNotFound('dev-1')).toMatchObject({ code: 'participant_not_found', status: 404 });
  });
});
