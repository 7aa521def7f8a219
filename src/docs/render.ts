/**
 * The generated documents of the contract and where they live in the repository. `npm run docs`
 * writes them; a test renders them in memory and compares with the committed files, so a stale
 * document fails `npm test`.
 */
import { openApiDocument } from '../http/openapi.js';
import { asyncApiDocument } from './asyncapi.js';

export interface RenderedDoc {
  /** Path relative to the repository root. */
  path: string;
  text: string;
}

/** Pretty JSON with a final newline; key order is the builders' (fixed) insertion order. */
const render = (doc: unknown) => `${JSON.stringify(doc, null, 2)}\n`;

export function renderDocs(): RenderedDoc[] {
  return [
    { path: 'subjects/asyncapi.json', text: render(asyncApiDocument()) },
    { path: 'subjects/openapi.json', text: render(openApiDocument()) },
  ];
}
