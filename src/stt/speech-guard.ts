/**
 * Builds what keeps invented words out of transcripts from its settings: the speech check (Silero VAD,
 * loaded once per process) and the hallucination filter with its stock phrase lists. The gateway and the
 * upload worker share it, so a window is judged the same wherever it is transcribed.
 */
import { SileroWorker, type WindowSpeechDetector } from '../audio/silero-vad.ts';
import { DEFAULT_FILTER_OPTIONS } from './hallucination-filter.ts';
import { loadStockPhrases, STOCK_PHRASES_DIR } from './stock-phrases.ts';
import type { WindowTranscriberOptions } from './window-transcriber.ts';

export interface InventedWordsSettings {
  speechCheck: 'silero' | 'off';
  /** Checked speech a window needs to be sent, ms. */
  minSpeechMs: number;
  filter: boolean;
  /** undefined: the built-in lists. */
  phrasesDir: string | undefined;
}

export async function speechGuard(settings: InventedWordsSettings, detector?: WindowSpeechDetector): Promise<Pick<WindowTranscriberOptions, 'speechCheck' | 'filter'>> {
  const checker = settings.speechCheck === 'off' ? undefined : detector ?? (await SileroWorker.start());
  return {
    ...(checker ? { speechCheck: { detector: checker, minSpeechMs: settings.minSpeechMs } } : {}),
    ...(settings.filter ? { filter: { ...DEFAULT_FILTER_OPTIONS, phrases: await loadStockPhrases(settings.phrasesDir ?? STOCK_PHRASES_DIR) } } : {}),
  };
}
