/** A session's stored transcript as the tests compare it: its words, once the session has completed. */
import * as assert from 'uvu/assert';
import type { Harness } from './harness.ts';
import { uploadFile } from './upload.ts';

/** The stored transcript's words (speaker labels and times stripped) once the session completes. */
export async function completedTranscript(h: Pick<Harness, 'baseUrl' | 'token'>, sessionId: string): Promise<string> {
  const headers = { authorization: `Bearer ${await h.token('service')}` };
  for (const deadline = Date.now() + 120000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) {
    const status = await (await fetch(`${h.baseUrl}/v1/sessions/${sessionId}`, { headers })).json();
    if (status.state !== 'completed') continue;
    const text = await (await fetch(`${h.baseUrl}/v1/sessions/${sessionId}/transcript?format=text`, { headers })).text();
    return text.split('\n').filter(Boolean).map((line) => line.replace(/^\[[^\]]*\] [^:]*: /, '')).join(' ');
  }
  throw new Error(`session ${sessionId} did not complete`);
}

/** Uploads a file (accepted with 202) and returns its stored transcript's words. */
export async function uploadedTranscript(h: Pick<Harness, 'baseUrl' | 'token'>, path: string, language: string): Promise<string> {
  const response = await uploadFile(h.baseUrl, await h.token('service'), path, { language });
  assert.is(response.status, 202, JSON.stringify(response.json));
  return completedTranscript(h, response.json.id);
}
