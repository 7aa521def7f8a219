/**
 * `npm run docs`: regenerates `subjects/asyncapi.json` and `subjects/openapi.json` from the
 * contract. Run it after changing anything in `subjects/` (or the HTTP routes) and commit the
 * result; `npm test` fails while they are stale.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { renderDocs } from './render.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

for (const doc of renderDocs()) {
  const file = `${root}${doc.path}`;
  const before = await readFile(file, 'utf8').catch(() => undefined);
  if (before === doc.text) {
    console.log(`${doc.path}: up to date`);
  } else {
    await writeFile(file, doc.text);
    console.log(`${doc.path}: written (${doc.text.length} bytes)`);
  }
}
