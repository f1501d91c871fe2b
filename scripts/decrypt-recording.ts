/**
 * Decrypts an archived recording with the clinic's age identity (the stock `age -d -i KEY` CLI does the
 * same for a whole recording):
 *   node scripts/decrypt-recording.ts --identity key.txt --in 1.ogg.age --out visit.ogg
 *   node scripts/decrypt-recording.ts --identity key.txt --in 1.recovered/ --out visit.ogg
 * A `.recovered/` directory (downloaded with its manifest.json) holds the one-second slices saved for a
 * track cut off by a crash: they are decrypted in order and concatenated into one Ogg Opus file.
 */
import { existsSync, statSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Decrypter } from 'age-encryption';

const { values } = parseArgs({ options: { identity: { type: 'string' }, in: { type: 'string' }, out: { type: 'string' } } });
if (!values.identity || !values.in || !values.out) {
  process.stderr.write('usage: decrypt-recording.ts --identity KEY_FILE --in FILE.ogg.age|DIR.recovered --out OUT.ogg\n');
  process.exit(64);
}
const decrypter = new Decrypter();
for (const line of (await readFile(values.identity, 'utf8')).split('\n')) {
  if (line.startsWith('AGE-SECRET-KEY-')) decrypter.addIdentity(line.trim());
}
let inputs: string[];
if (statSync(values.in).isDirectory()) {
  const manifest = join(values.in, 'manifest.json');
  const names = existsSync(manifest)
    ? (JSON.parse(await readFile(manifest, 'utf8')) as { slices: string[] }).slices.map((key) => key.split('/').pop()!)
    : (await readdir(values.in)).filter((n) => n.endsWith('.ogg.age')).sort();
  inputs = names.map((n) => join(values.in!, n));
} else {
  inputs = [values.in];
}
const parts: Uint8Array[] = [];
for (const input of inputs) parts.push(await decrypter.decrypt(await readFile(input)));
await writeFile(values.out, Buffer.concat(parts));
process.stdout.write(`${values.out}: ${inputs.length} part(s), ${parts.reduce((n, p) => n + p.length, 0)} bytes\n`);
