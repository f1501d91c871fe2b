/**
 * What an uploaded file really is, from its bytes (pure): the file name and the Content-Type header are
 * the client's claims, the magic numbers are not. Also the container-level signs of a file cut short
 * that a decoder would not report: a WAV whose data chunk claims more bytes than the file holds, an Ogg
 * stream whose last page is not marked end-of-stream.
 */
import type { UploadFormat } from '../../client-sdk/src/protocol.ts';

/** How many leading bytes `sniffUploadFormat` wants (an ID3 tag may precede the audio). */
export const SNIFF_BYTES = 64 * 1024;

const ascii = (bytes: Uint8Array, offset: number, text: string) =>
  bytes.length >= offset + text.length && [...text].every((c, i) => bytes[offset + i] === c.charCodeAt(0));

/** MPEG audio frame sync with layer III (11 set bits, then a layer field of 01). */
const isMp3FrameSync = (bytes: Uint8Array, offset: number) =>
  bytes.length > offset + 1 && bytes[offset] === 0xff && (bytes[offset + 1] & 0xe0) === 0xe0 && (bytes[offset + 1] & 0x06) === 0x02;

/** Size of an ID3v2 tag at the start (header included), 0 when there is none. */
function id3Length(bytes: Uint8Array): number {
  if (!ascii(bytes, 0, 'ID3') || bytes.length < 10) return 0;
  const size = ((bytes[6] & 0x7f) << 21) | ((bytes[7] & 0x7f) << 14) | ((bytes[8] & 0x7f) << 7) | (bytes[9] & 0x7f);
  const footer = bytes[5] & 0x10 ? 10 : 0;
  return 10 + size + footer;
}

export function sniffUploadFormat(head: Uint8Array): UploadFormat | undefined {
  if ((ascii(head, 0, 'RIFF') || ascii(head, 0, 'RF64')) && ascii(head, 8, 'WAVE')) return 'wav';
  if (ascii(head, 0, 'OggS')) return 'ogg';
  if (ascii(head, 0, 'fLaC')) return 'flac';
  if (head.length >= 4 && head[0] === 0x1a && head[1] === 0x45 && head[2] === 0xdf && head[3] === 0xa3) return 'webm';
  if (ascii(head, 4, 'ftyp')) return 'm4a';
  const tag = id3Length(head);
  if (tag > 0) {
    // A tag larger than what was read (cover art) hides the audio: the decoder's probe decides then.
    if (tag >= head.length) return 'mp3';
    const rest = head.subarray(tag);
    return ascii(rest, 0, 'fLaC') ? 'flac' : isMp3FrameSync(rest, 0) ? 'mp3' : undefined;
  }
  return isMp3FrameSync(head, 0) ? 'mp3' : undefined;
}

/** The demuxer names ffprobe reports for each format, to cross-check the sniffed type. */
export const PROBE_FORMAT_NAMES: Record<UploadFormat, string> = {
  wav: 'wav',
  ogg: 'ogg',
  flac: 'flac',
  webm: 'matroska',
  m4a: 'mp4',
  mp3: 'mp3',
};

/**
 * True when the container itself shows the file was cut short. `head` is the start of the file, `tail`
 * its last bytes (up to SNIFF_BYTES), `size` its length.
 */
export function containerTruncated(format: UploadFormat, head: Uint8Array, tail: Uint8Array, size: number): boolean {
  if (format === 'wav') {
    const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
    for (let offset = 12; offset + 8 <= head.length; ) {
      const chunkSize = view.getUint32(offset + 4, true);
      if (ascii(head, offset, 'data')) {
        // Streaming writers that never went back to fill in the size leave 0 or 0xFFFFFFFF.
        if (chunkSize === 0 || chunkSize === 0xffffffff) return false;
        return offset + 8 + chunkSize > size;
      }
      offset += 8 + chunkSize + (chunkSize % 2);
    }
    return false;
  }
  if (format === 'ogg') {
    for (let offset = tail.length - 27; offset >= 0; offset--) {
      if (ascii(tail, offset, 'OggS')) return (tail[offset + 5] & 0x04) === 0;
    }
    return true;
  }
  return false;
}
