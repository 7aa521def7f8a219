/**
 * What a liberal request parse leaves to check (CONTRACT sections 2 and 4): which unknown fields
 * were dropped (logged at debug, never stored or echoed), and whether a kept string holds a
 * character PostgreSQL cannot store.
 *
 * PostgreSQL refuses U+0000 in `text` and `jsonb`, and a lone UTF-16 surrogate (`"\ud800"`) in
 * `jsonb`. Left alone, either fails the insert deep in a transaction and the caller gets
 * `internal`; found here, the caller gets `invalid_request` naming the field.
 */
import type { Issue } from '../../subjects/index.js';

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const join = (path: string, key: string | number) => (path === '' ? String(key) : `${path}.${key}`);

/**
 * Dotted paths of the fields of `input` that the parse dropped (`output` lacks them). A field
 * sent as `null` for "absent" is not unknown: it was read, and means absent.
 */
export function droppedFields(input: unknown, output: unknown, path = '', out: string[] = []): string[] {
  if (Array.isArray(input) && Array.isArray(output)) {
    input.forEach((v, i) => droppedFields(v, output[i], join(path, i), out));
  } else if (isPlainObject(input) && isPlainObject(output)) {
    for (const [key, value] of Object.entries(input)) {
      if (!Object.hasOwn(output, key)) {
        if (value !== null) out.push(join(path, key));
      } else {
        droppedFields(value, output[key], join(path, key), out);
      }
    }
  }
  return out;
}

/** Why PostgreSQL could not store `s`, or null when it can. */
export function unstorable(s: string): string | null {
  if (s.includes('\u0000')) return 'must not contain the NUL character (U+0000)';
  if (!s.isWellFormed()) return 'must be well-formed Unicode (no lone surrogate)';
  return null;
}

/**
 * Every string (and object key) in `value` that PostgreSQL cannot store, as schema issues with
 * the field's dotted path. Stops after a few: one is enough to refuse the request.
 */
export function unstorableStrings(value: unknown, path = '', out: Issue[] = [], limit = 10): Issue[] {
  if (out.length >= limit) return out;
  if (typeof value === 'string') {
    const why = unstorable(value);
    if (why) out.push({ path, message: why });
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => unstorableStrings(v, join(path, i), out, limit));
  } else if (isPlainObject(value)) {
    for (const [key, v] of Object.entries(value)) {
      const why = unstorable(key);
      if (why) out.push({ path: join(path, key), message: `field name ${why}` });
      unstorableStrings(v, join(path, key), out, limit);
    }
  }
  return out;
}
