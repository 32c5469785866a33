// Builds the console's pages into engine/pilot/console/static/: index.html and assets/<name>.<hash>.js|css.
// Deterministic: no timestamps, names hashed from content, the assets folder emptied first, so
// `npm ci && npm run build` reproduces the committed output byte for byte.
// Code splitting: the profile editor (CodeMirror) is a dynamic import, so it becomes its own chunk that
// only the editor page loads; the fleet page's download stays small.
import * as esbuild from "esbuild";
import { readFileSync, writeFileSync, rmSync, mkdirSync } from "node:fs";
import { dirname, join, basename } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = process.env.PILOT_CONSOLE_OUT || join(here, "..", "engine", "pilot", "console", "static");
const assets = join(out, "assets");

rmSync(assets, { recursive: true, force: true });
mkdirSync(assets, { recursive: true });

const result = await esbuild.build({
  entryPoints: [join(here, "src", "main.js")],
  absWorkingDir: here,
  bundle: true,
  format: "esm",
  target: ["es2020", "chrome100", "firefox100", "safari15"],
  minify: true,
  sourcemap: false,
  legalComments: "eof",
  charset: "utf8",
  outdir: assets,
  entryNames: "[name].[hash]",
  chunkNames: "[name].[hash]",
  splitting: true,
  assetNames: "[name].[hash]",
  metafile: true,
  logLevel: "warning",
});

const outputs = Object.entries(result.metafile.outputs);
const js = outputs.filter(([, o]) => o.entryPoint === "src/main.js").map(([p]) => basename(p));
const css = outputs.filter(([p]) => p.endsWith(".css")).map(([p]) => basename(p));
if (js.length !== 1 || css.length !== 1) throw new Error(`expected one entry .js and one .css, got ${outputs.map(([p]) => basename(p)).join(", ")}`);

const html = readFileSync(join(here, "src", "index.html"), "utf8").replace("{{JS}}", js[0]).replace("{{CSS}}", css[0]);
writeFileSync(join(out, "index.html"), html);
console.log(`built ${outputs.map(([p]) => basename(p)).join(", ")} into ${out}`);
