import { describe, expect, it } from 'vitest';
import { isMultiStatement } from '../../src/db/pglite.js';

describe('embedded database driver', () => {
  it('pglite - a semicolon inside a quoted value is one statement', () => {
    expect(isMultiStatement(`insert into t (a) values ('x; y'), ('it''s; fine')`)).toBe(false);
    expect(isMultiStatement(`insert into "we;ird" (a) values (E'back\\\\slash; ok')`)).toBe(false);
    expect(isMultiStatement(`select 1;`)).toBe(false);
  });
  it('pglite - real multi-statement SQL is detected', () => {
    expect(isMultiStatement(`create table a (x int); create table b (y int)`)).toBe(true);
    expect(isMultiStatement(`select ';'; select 2`)).toBe(true);
  });
});
