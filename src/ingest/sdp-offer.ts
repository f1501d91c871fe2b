/** The checks a WHIP offer must pass before a peer connection is made for it (pure). */
export type OfferProblem = { status: 400 | 422; code: 'invalid_sdp' | 'no_audio' | 'opus_required'; message: string };

export function checkOffer(sdp: string): OfferProblem | undefined {
  const lines = sdp.split(/\r?\n/).filter(Boolean);
  if (lines[0] !== 'v=0' || !lines.some((l) => l.startsWith('o=')) || !lines.some((l) => l.startsWith('m='))) {
    return { status: 400, code: 'invalid_sdp', message: 'the body is not an SDP offer (RFC 8866: v=0, o=, m= lines)' };
  }
  const audio = lines.findIndex((l) => l.startsWith('m=audio '));
  if (audio === -1) return { status: 422, code: 'no_audio', message: 'the offer has no audio m-line: this gateway ingests audio only' };
  const end = lines.findIndex((l, i) => i > audio && l.startsWith('m='));
  const section = lines.slice(audio, end === -1 ? undefined : end);
  if (!section.some((l) => /^a=rtpmap:\d+ opus\/48000/i.test(l))) {
    return { status: 422, code: 'opus_required', message: 'the audio m-line offers no Opus (a=rtpmap:<pt> opus/48000/2): Opus is required' };
  }
  return undefined;
}

/** Adds, beside each host candidate, the same candidate on the announced (public or NAT) address. */
export function announceAddress(sdp: string, address: string): string {
  return sdp.replace(/^a=candidate:(\S+) (\d+) (\S+) (\d+) (\S+) (\d+) typ host(.*)$/gm, (line, foundation, component, transport, priority, _ip, port, rest) =>
    `${line}\r\na=candidate:${foundation}a ${component} ${transport} ${Number(priority) + 1} ${address} ${port} typ host${rest}`,
  );
}
