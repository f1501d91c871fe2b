/**
 * Runs every test file (test/**\/*.test.ts) in its own Node process, TEST_JOBS (default 2) at a time,
 * and closes with the line CI reads: `N passed, N failed`. Most integration files spend their time
 * waiting on real-time streams, so two at once fit on two cores; each file's output is printed whole
 * when it ends. A file that crashes, or runs past TEST_FILE_TIMEOUT_S (default 600: a hung file must not
 * hang CI), counts as one failure. Pass file name fragments to run only those (`npm test -- segmenter`).
 */
import { spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { ensureCorpus } from './make-corpus.ts';

async function findTests(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile() && e.name.endsWith('.test.ts')).map((e) => join(e.parentPath, e.name)).sort();
}

const filters = process.argv.slice(2);
const fileTimeoutMs = Number(process.env.TEST_FILE_TIMEOUT_S ?? 600) * 1000;
const jobs = Math.max(1, Number(process.env.TEST_JOBS ?? 2));
/** The files that run longest (several minutes of real-time streaming or a browser) start first. */
const LONGEST = ['fleet', 'e2e/browser', 'live-pipeline', 'audio-conditioning', 'audio-noise', 'producer-resume', 'recognizers', 'rtp-webrtc', 'invented-words', 'persistence'];
const rank = (file: string) => {
  const longest = LONGEST.findIndex((name) => file.includes(name));
  return longest >= 0 ? longest : LONGEST.length + Number(!file.includes('/integration/'));
};
const files = (await findTests('test')).filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));
files.sort((a, b) => rank(a) - rank(b));

let passed = 0;
let failed = 0;
const failures: string[] = [];
const started = Date.now();

async function runFile(file: string): Promise<void> {
  const fileStarted = Date.now();
  const output = await new Promise<{ code: number | null; text: string }>((resolve) => {
    const child = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    const timer = setTimeout(() => {
      text += `  killed: still running after ${fileTimeoutMs / 1000} s\n`;
      child.kill('SIGKILL');
    }, fileTimeoutMs);
    child.stdout.on('data', (chunk: Buffer) => void (text += chunk));
    child.stderr.on('data', (chunk: Buffer) => void (text += chunk));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, text });
    });
  });
  const clean = output.text.replace(/\u001b\[[0-9;]*m/g, '');
  const total = Number(/Total:\s+(\d+)/.exec(clean)?.[1] ?? 0);
  const ok = Number(/Passed:\s+(\d+)/.exec(clean)?.[1] ?? 0);
  const skipped = Number(/Skipped:\s+(\d+)/.exec(clean)?.[1] ?? 0);
  passed += ok;
  let fileFailed = total - ok - skipped;
  if (output.code !== 0 && fileFailed === 0) fileFailed = 1;
  failed += fileFailed;
  if (fileFailed > 0) failures.push(relative('.', file));
  process.stdout.write(`\n▶ ${relative('.', file)}\n${output.text}  (${((Date.now() - fileStarted) / 1000).toFixed(1)} s)\n`);
}

// Made once here: two files running at once must not both find it stale and rewrite it under each other.
await ensureCorpus();
const queue = [...files];
await Promise.all(
  Array.from({ length: Math.min(jobs, files.length) }, async () => {
    for (let file = queue.shift(); file; file = queue.shift()) await runFile(file);
  }),
);
process.stdout.write(`\n${files.length} files in ${((Date.now() - started) / 1000).toFixed(0)} s${failures.length ? `; failing: ${failures.join(', ')}` : ''}\n`);
process.stdout.write(`${passed} passed, ${failed} failed\n`);
process.exit(failed > 0 || files.length === 0 ? 1 : 0);
