/**
 * The one-way layers of src/ stay one-way: no module cycle, no two folders importing each other, the
 * shared leaves (config, log, metrics, errors) import nothing of ours, nothing imports the composition
 * root, and the pure cores import no endpoint, session, store or archive.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { analyze } from '../../scripts/layers.ts';

const structure = await analyze();

test('no cycles and no two-way folder dependencies', () => {
  assert.equal(structure.cycles, []);
  assert.equal(structure.twoWayFolders, []);
});

test('arrows point one way: endpoints → session → cores → audio', () => {
  const importsOf = (folder: string) => [...(structure.folderEdges.get(folder) ?? [])];
  assert.equal(importsOf('src:shared'), [], 'shared leaves import nothing of ours');
  for (const [from, to] of structure.folderEdges) assert.not.ok(to.has('src:root') && from !== 'src:root', `${from} imports the composition root`);
  for (const core of ['src/segmenter', 'src/transcript', 'src/demux', 'src/audio']) {
    for (const upper of ['src/api', 'src/session', 'src/store', 'src/archive', 'src/stt']) assert.not.ok(importsOf(core).includes(upper), `${core} imports ${upper}`);
  }
  assert.not.ok(importsOf('src/session').includes('src/api'), 'the session layer imports no endpoint');
});

test.run();
