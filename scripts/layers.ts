/**
 * The import graph of src/ (and client-sdk/src): module cycles, and folders that import each other
 * (two-way folder dependencies). `node scripts/layers.ts` prints the structure; the layers test asserts
 * there are none of either, so they cannot come back.
 */
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';

export interface Structure {
  files: number;
  largest: { file: string; lines: number }[];
  cycles: string[][];
  twoWayFolders: [string, string][];
  folderEdges: Map<string, Set<string>>;
}

const ROOT = resolve(import.meta.dirname, '..');

async function sources(dir: string): Promise<string[]> {
  const entries = await readdir(join(ROOT, dir), { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')).map((e) => relative(ROOT, join(e.parentPath, e.name)));
}

/** The composition roots: they may import anything, and nothing imports them. */
export const ROOTS = ['src/app.ts', 'src/main.ts', 'src/worker.ts', 'src/components.ts'];

/**
 * A module's layer: its folder (`src/session`); top-level files are the composition root (`src:root`)
 * or shared leaves every layer may use (`src:shared`: config, log, metrics, errors).
 */
const folderOf = (file: string) => (dirname(file) !== 'src' ? dirname(file) : ROOTS.includes(file) ? 'src:root' : 'src:shared');

export async function analyze(): Promise<Structure> {
  const files = (await sources('src')).filter((f) => !f.includes('/testing/'));
  const graph = new Map<string, string[]>();
  const lines = new Map<string, number>();
  for (const file of files) {
    const text = await readFile(join(ROOT, file), 'utf8');
    lines.set(file, text.split('\n').length);
    const imports = [...text.matchAll(/^(?:import|export)\s[^'"]*?from\s+'(\.[^']+)'/gm)].map((m) => relative(ROOT, resolve(ROOT, dirname(file), m[1])));
    graph.set(file, imports.filter((i) => i.startsWith('src/') && files.includes(i)));
  }
  // Cycles: Tarjan's strongly connected components of more than one module (or a self-import).
  const cycles: string[][] = [];
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  let counter = 0;
  const visit = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (graph.get(v) ?? []).includes(v)) cycles.push(component.sort());
    }
  };
  for (const file of files) if (!index.has(file)) visit(file);
  const folderEdges = new Map<string, Set<string>>();
  for (const [file, imports] of graph) {
    for (const target of imports) {
      const [from, to] = [folderOf(file), folderOf(target)];
      if (from === to) continue;
      if (!folderEdges.has(from)) folderEdges.set(from, new Set());
      folderEdges.get(from)!.add(to);
    }
  }
  const twoWayFolders: [string, string][] = [];
  for (const [from, targets] of folderEdges) for (const to of targets) if (from < to && folderEdges.get(to)?.has(from)) twoWayFolders.push([from, to]);
  const largest = [...lines].map(([file, n]) => ({ file, lines: n })).sort((a, b) => b.lines - a.lines).slice(0, 8);
  return { files: files.length, largest, cycles, twoWayFolders, folderEdges };
}

if (import.meta.main) {
  const s = await analyze();
  console.log(`${s.files} modules in src/`);
  console.log(`largest: ${s.largest.map((l) => `${l.file} (${l.lines})`).join(', ')}`);
  console.log(`cycles (${s.cycles.length}): ${s.cycles.map((c) => c.join(' → ')).join('; ') || 'none'}`);
  console.log(`two-way folder dependencies (${s.twoWayFolders.length}): ${s.twoWayFolders.map(([a, b]) => `${a} ⇄ ${b}`).join('; ') || 'none'}`);
  for (const [from, to] of [...s.folderEdges].sort()) console.log(`  ${from} → ${[...to].sort().join(', ')}`);
}
