import { UnsupportedLanguage } from '../errors.ts';

/** Refuses, up front, a language the recognizer does not transcribe (STT_LANGUAGES; undefined: any). */
export function checkLanguage(language: string | undefined, supported: readonly string[] | undefined): void {
  if (language && supported && !supported.includes(language)) throw new UnsupportedLanguage(language, supported);
}
