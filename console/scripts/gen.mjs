// Generates TypeScript from every .proto under ../proto/kordon/ into src/gen/
// with protoc and protoc-gen-es (see package.json "gen").
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const protoRoot = join(root, "..", "proto");
const out = join(root, "src", "gen");

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith(".proto") ? [p] : [];
  });
}

const files = walk(join(protoRoot, "kordon"))
  .map((p) => relative(protoRoot, p).split(sep).join("/"))
  .sort();
if (files.length === 0) {
  console.error("gen: no .proto files under ../proto/kordon/");
  process.exit(1);
}
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const plugin = join(root, "node_modules", ".bin", "protoc-gen-es");
execFileSync(
  process.env.PROTOC || "protoc",
  [
    "-I", "../proto",
    `--plugin=protoc-gen-es=${plugin}`,
    "--es_out=src/gen",
    "--es_opt=target=ts",
    ...files,
  ],
  { cwd: root, stdio: "inherit" },
);
console.log(`gen: ${files.length} files -> src/gen/`);
