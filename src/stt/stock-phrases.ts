/**
 * The stock phrases Whisper invents on non-speech, kept as data (`hallucinations/<language>.txt`, one
 * phrase a line) so that a clinic can add what its recognizer says without a code change.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parsePhrases, type StockPhrase } from './hallucination-filter.ts';

export const STOCK_PHRASES_DIR = join(import.meta.dirname, 'hallucinations');

/** Every language's list in `dir` (every `.txt` file), as one list. */
export async function loadStockPhrases(dir = STOCK_PHRASES_DIR): Promise<StockPhrase[]> {
  const files = (await readdir(dir)).filter((name) => name.endsWith('.txt')).sort();
  const lists = await Promise.all(files.map(async (name) => parsePhrases(await readFile(join(dir, name), 'utf8'))));
  return lists.flat();
}
