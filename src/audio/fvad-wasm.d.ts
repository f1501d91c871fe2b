/** `@echogarden/fvad-wasm` ships JavaScript only: the part of its emscripten module the VAD adapter uses. */
declare module '@echogarden/fvad-wasm' {
  export interface FvadModule {
    _fvad_new(): number;
    _fvad_free(instance: number): void;
    _fvad_set_mode(instance: number, mode: number): number;
    _fvad_set_sample_rate(instance: number, sampleRate: number): number;
    /** 1 speech, 0 not, −1 a frame of the wrong length. */
    _fvad_process(instance: number, frame: number, samples: number): number;
    _malloc(bytes: number): number;
    HEAP16: Int16Array;
  }
  export default function load(): Promise<FvadModule>;
}
