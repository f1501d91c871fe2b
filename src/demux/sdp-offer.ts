/** The checks a WHIP offer must pass before a peer connection is made for it (pure). */
export type OfferProblem = { status: 400 | 422; code: 'invalid_sdp' | 'no_audio' | 'opus_required'; message: string };

/** More media sections than this is not a microphone's offer (each would open ICE sockets). */
const MAX_SECTIONS = 4;

const invalid = (message: string): OfferProblem => ({ status: 400, code: 'invalid_sdp', message });

export function checkOffer(sdp: string): OfferProblem | undefined {
  const lines = sdp.split(/\r?\n/).filter(Boolean);
  if (lines[0] !== 'v=0' || !lines.some((l) => l.startsWith('o=')) || !lines.some((l) => l.startsWith('m='))) {
    return invalid('the body is not an SDP offer (RFC 8866: v=0, o=, m= lines)');
  }
  const sections = lines.filter((l) => l.startsWith('m='));
  if (sections.length > MAX_SECTIONS) return invalid(`the offer has ${sections.length} media sections; at most ${MAX_SECTIONS}`);
  const audioSections = sections.filter((l) => l.startsWith('m=audio ')).length;
  if (audioSections > 1) return invalid(`the offer has ${audioSections} audio sections; send one track per WHIP resource`);
  const audio = lines.findIndex((l) => l.startsWith('m=audio '));
  if (audio === -1) return { status: 422, code: 'no_audio', message: 'the offer has no audio m-line: this gateway ingests audio only' };
  const end = lines.findIndex((l, i) => i > audio && l.startsWith('m='));
  const section = lines.slice(audio, end === -1 ? undefined : end);
  if (!section.some((l) => /^a=rtpmap:\d+ opus\/48000/i.test(l))) {
    return { status: 422, code: 'opus_required', message: 'the audio m-line offers no Opus (a=rtpmap:<pt> opus/48000/2): Opus is required' };
  }
  if (sections.length > 1) {
    const bundle = lines.find((l) => l.startsWith('a=group:BUNDLE '));
    const mids = lines.filter((l) => l.startsWith('a=mid:')).map((l) => l.slice(6).trim());
    const bundled = bundle?.slice('a=group:BUNDLE '.length).trim().split(/\s+/) ?? [];
    if (mids.length !== sections.length || !mids.every((m) => bundled.includes(m))) return invalid('an offer with several media sections must BUNDLE them all (a=group:BUNDLE with every a=mid)');
  }
  if (!lines.some((l) => /^a=fingerprint:\S+ [0-9A-Fa-f:]+$/.test(l))) return invalid('the offer has no DTLS fingerprint (a=fingerprint)');
  if (!lines.some((l) => /^a=ice-ufrag:\S+$/.test(l)) || !lines.some((l) => /^a=ice-pwd:\S+$/.test(l))) return invalid('the offer has no ICE credentials (a=ice-ufrag, a=ice-pwd)');
  const setups = lines.filter((l) => l.startsWith('a=setup:'));
  if (setups.length === 0 || !setups.every((l) => /^a=setup:(actpass|active|passive)$/.test(l))) return invalid('the offer needs a=setup:actpass, active or passive');
  return undefined;
}

/** Adds, beside each host candidate, the same candidate on the announced (public or NAT) address. */
export function announceAddress(sdp: string, address: string): string {
  return sdp.replace(/^a=candidate:(\S+) (\d+) (\S+) (\d+) (\S+) (\d+) typ host(.*)$/gm, (line, foundation, component, transport, priority, _ip, port, rest) =>
    `${line}\r\na=candidate:${foundation}a ${component} ${transport} ${Number(priority) + 1} ${address} ${port} typ host${rest}`,
  );
}
