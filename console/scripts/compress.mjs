// Writes a gzip copy (<file>.gz, level 9) next to each text file of dist/ (see package.json
// "build"). kordon embeds both (crates/console) and sends the copy to browsers that accept gzip.
import { gzipSync } from "node:zlib";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const dist = join(dirname(fileURLToPath(import.meta.url)), "..", "dist");
const text = /\.(js|mjs|css|html|svg|json|txt)$/;

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

let raw = 0;
let packed = 0;
for (const file of walk(dist)) {
  if (!text.test(file)) continue;
  const body = readFileSync(file);
  const gz = gzipSync(body, { level: 9 });
  writeFileSync(`${file}.gz`, gz);
  raw += body.length;
  packed += gz.length;
}
console.log(`compress: ${(raw / 1024).toFixed(1)} KiB of text files, ${(packed / 1024).toFixed(1)} KiB gzipped`);
