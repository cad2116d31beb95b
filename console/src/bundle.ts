// Reads an evidence bundle (a tar archive) in the browser, member by member, for storage's
// VerifyEvidenceBundle: the manifest and signature as they are, every other file's size and
// SHA-256. Footage never leaves the browser. Understands ustar (with its name prefix), pax
// `path` records and GNU long names; anything else that is not a regular file is reported.

export interface BundleParts {
  manifest: Uint8Array;
  signature: Uint8Array;
  files: { path: string; size: bigint; sha256: Uint8Array }[];
  /** What could not be read (a damaged or cut archive), one sentence each. */
  problems: string[];
}

const BLOCK = 512;
const MANIFEST = "manifest.json";
const SIGNATURE = "signature.json";
/** The server reads at most this much of a manifest in one request. */
export const MAX_MANIFEST = 3.5 * 1024 * 1024;

const text = new TextDecoder();

function field(b: Uint8Array, at: number, len: number): string {
  const s = b.subarray(at, at + len);
  const end = s.indexOf(0);
  return text.decode(end < 0 ? s : s.subarray(0, end));
}

function octal(b: Uint8Array, at: number, len: number): number {
  // GNU base-256 for sizes over 8 GiB: the first byte's high bit.
  if (b[at] & 0x80) {
    let n = 0;
    for (let i = at + 1; i < at + len; i++) n = n * 256 + b[i];
    return n;
  }
  const s = field(b, at, len).trim();
  return s ? parseInt(s, 8) : 0;
}

function paxPath(data: Uint8Array): string | undefined {
  // Records: "<len> <key>=<value>\n".
  const s = text.decode(data);
  let i = 0;
  let path: string | undefined;
  while (i < s.length) {
    const sp = s.indexOf(" ", i);
    const len = parseInt(s.slice(i, sp), 10);
    if (!(len > 0)) break;
    const rec = s.slice(sp + 1, i + len - 1);
    const eq = rec.indexOf("=");
    if (rec.slice(0, eq) === "path") path = rec.slice(eq + 1);
    i += len;
  }
  return path;
}

async function bytes(file: Blob, at: number, len: number): Promise<Uint8Array> {
  return new Uint8Array(await file.slice(at, at + len).arrayBuffer());
}

/** Reads `file`; `progress` gets the bytes read so far. */
export async function readBundle(file: Blob, progress: (done: number) => void, signal?: AbortSignal): Promise<BundleParts> {
  const out: BundleParts = { manifest: new Uint8Array(), signature: new Uint8Array(), files: [], problems: [] };
  const seen = new Set<string>();
  let at = 0;
  let longName: string | undefined;
  while (at + BLOCK <= file.size) {
    signal?.throwIfAborted();
    const head = await bytes(file, at, BLOCK);
    if (head.every((x) => x === 0)) break; // end of archive
    const size = octal(head, 124, 12);
    const type = String.fromCharCode(head[156] || 0x30);
    const magic = field(head, 257, 6);
    let name = field(head, 0, 100);
    if (magic.startsWith("ustar")) {
      const prefix = field(head, 345, 155);
      if (prefix) name = `${prefix}/${name}`;
    }
    const dataAt = at + BLOCK;
    const next = dataAt + Math.ceil(size / BLOCK) * BLOCK;
    if (dataAt + size > file.size) {
      out.problems.push(`the archive is cut: \`${longName ?? name}\` should hold ${size} bytes`);
      break;
    }
    if (type === "x" || type === "L") {
      const data = await bytes(file, dataAt, size);
      longName = type === "x" ? paxPath(data) : field(data, 0, data.length);
      at = next;
      continue;
    }
    if (type === "g") {
      at = next;
      continue;
    }
    const path = longName ?? name;
    longName = undefined;
    if (type === "5") {
      at = next;
      continue;
    }
    if (type !== "0" && type !== "\0" && type !== "7") {
      out.problems.push(`\`${path}\` is not a regular file`);
      at = next;
      continue;
    }
    const data = await bytes(file, dataAt, size);
    if (path === MANIFEST || path === SIGNATURE) {
      if ((path === MANIFEST ? out.manifest : out.signature).length) out.problems.push(`\`${path}\` appears more than once in the archive`);
      if (path === MANIFEST) out.manifest = data;
      else out.signature = data;
    } else if (seen.has(path)) {
      out.problems.push(`\`${path}\` appears more than once in the archive`);
    } else {
      seen.add(path);
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data as BufferSource));
      out.files.push({ path, size: BigInt(size), sha256: digest });
    }
    at = next;
    progress(at);
  }
  progress(file.size);
  return out;
}
