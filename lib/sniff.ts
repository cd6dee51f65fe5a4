/**
 * Content sniffing for uploads: decides the type of a file from its first
 * bytes, never from the client's name or claim. Only the allow-listed types
 * below are recognised; anything else (HTML, SVG, scripts, archives, …) is
 * undefined. Pure.
 *
 * @module
 */

/** A detected file type. */
export interface Sniffed {
  /** Content type to serve the file with. */
  readonly mime: string;
  /** File extension without the dot. */
  readonly ext: string;
}

/** How many leading bytes {@linkcode sniff} looks at. */
export const SNIFF_BYTES = 64;

/** MP4 brands accepted as audio. */
const AUDIO_BRANDS = new Set(["M4A ", "M4B "]);
/** MP4 brands accepted as video (HEIC, QuickTime and others are not). */
const VIDEO_BRANDS = new Set([
  "isom",
  "iso2",
  "iso4",
  "iso5",
  "iso6",
  "mp41",
  "mp42",
  "avc1",
  "M4V ",
  "dash",
  "mmp4",
  "MSNV",
]);

/** The allow-listed type of `bytes`, or undefined. */
export function sniff(bytes: Uint8Array): Sniffed | undefined {
  const b = bytes.subarray(0, SNIFF_BYTES);
  if (starts(b, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) {
    return { mime: "image/png", ext: "png" };
  }
  if (starts(b, [0xff, 0xd8, 0xff])) return { mime: "image/jpeg", ext: "jpg" };
  if (ascii(b, 0, 6) === "GIF87a" || ascii(b, 0, 6) === "GIF89a") {
    return { mime: "image/gif", ext: "gif" };
  }
  if (ascii(b, 0, 4) === "RIFF" && ascii(b, 8, 12) === "WEBP") {
    return { mime: "image/webp", ext: "webp" };
  }
  if (ascii(b, 0, 4) === "RIFF" && ascii(b, 8, 12) === "WAVE") {
    return { mime: "audio/wav", ext: "wav" };
  }
  if (ascii(b, 0, 4) === "OggS") return { mime: "audio/ogg", ext: "ogg" };
  if (starts(b, [0x1a, 0x45, 0xdf, 0xa3]) && ascii(b, 4, b.length).includes("webm")) {
    return { mime: "video/webm", ext: "webm" };
  }
  if (ascii(b, 4, 8) === "ftyp") {
    const brand = ascii(b, 8, 12);
    if (AUDIO_BRANDS.has(brand)) return { mime: "audio/mp4", ext: "m4a" };
    if (VIDEO_BRANDS.has(brand)) return { mime: "video/mp4", ext: "mp4" };
    return undefined;
  }
  if (ascii(b, 0, 3) === "ID3" || isMpegAudioFrame(b)) {
    return { mime: "audio/mpeg", ext: "mp3" };
  }
  return undefined;
}

/** Whether `b` starts with a plausible MPEG-1/2 layer I-III frame header. */
function isMpegAudioFrame(b: Uint8Array): boolean {
  const [b0, b1, b2] = [b[0], b[1], b[2]];
  if (b0 === undefined || b1 === undefined || b2 === undefined) return false;
  if (b0 !== 0xff || (b1 & 0xe0) !== 0xe0) return false;
  const version = (b1 >> 3) & 0b11; // 01 is reserved
  const layer = (b1 >> 1) & 0b11; // 00 is reserved (and ADTS AAC)
  const bitrate = b2 >> 4; // 1111 is invalid
  const rate = (b2 >> 2) & 0b11; // 11 is reserved
  return version !== 0b01 && layer !== 0 && bitrate !== 0b1111 && rate !== 0b11;
}

function starts(b: Uint8Array, prefix: readonly number[]): boolean {
  return prefix.length <= b.length && prefix.every((x, i) => b[i] === x);
}

function ascii(b: Uint8Array, from: number, to: number): string {
  return String.fromCharCode(...b.subarray(from, to));
}
