import { readFile } from 'node:fs/promises';
import { decodeWav } from '../src/audio/wav.ts';
import { Rnnoise } from '../src/audio/noise-suppressor.ts';
const { samples } = decodeWav(await readFile('corpus/en/doctor.wav'));
const w = samples.subarray(16000, 16000*6);
const rn = await Rnnoise.load();
const t0 = performance.now();
const out = rn.suppress(w);
console.log('5 s in', (performance.now()-t0).toFixed(1), 'ms; length', out.length, w.length);
let best = -1, bestLag = 0;
for (let lag = -40; lag <= 40; lag++) { let s = 0; for (let i = 1000; i < w.length-1000; i++) s += w[i]*out[i+lag]; if (s > best) { best = s; bestLag = lag; } }
let e=0,p=0; for (let i=0;i<w.length;i++){p+=w[i]**2;e+=(w[i]-out[i])**2;}
console.log('best lag (16 kHz samples):', bestLag, 'SNR of clean through RNNoise', (10*Math.log10(p/e)).toFixed(1), 'dB');
const rms = (x: Int16Array) => Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length);
console.log('rms in', rms(w).toFixed(0), 'out', rms(out).toFixed(0));
const { samples: hum } = decodeWav(await readFile('corpus/en/doctor-hum10.wav'));
const h = hum.subarray(0, 16000*2);
console.log('lead-in noise (hum10) rms in', rms(h.subarray(0, 8000)).toFixed(0), 'out', rms(rn.suppress(h).subarray(0, 8000)).toFixed(0));
