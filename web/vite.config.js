// Builds the page into the Python package (src/bigupload/web/static), where bigupload serves it.
//
// Beside index.html the build writes build-info.json: {"sources_sha256": <digest>}, the digest of
// the sources it was built from. tests/web/test_build.py computes the same digest of web/ and
// fails when the committed build is older than the sources ("run make web").
//
// The digest (same algorithm in both places): take every file under web/ except node_modules/,
// by its POSIX path relative to web/, sorted; for each, the line
//     path + "\0" + hex(sha256(file bytes)) + "\n"
// and the digest is hex(sha256(all the lines concatenated)).

import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'

const here = dirname(fileURLToPath(import.meta.url))

function sourceFiles(dir) {
  const found = []
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) {
      if (relative(here, path) === 'node_modules') continue
      found.push(...sourceFiles(path))
    } else if (entry.isFile()) {
      found.push(relative(here, path).split(sep).join('/'))
    }
  }
  return found
}

export function sourcesDigest(root = here) {
  const paths = sourceFiles(root).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  const all = createHash('sha256')
  for (const path of paths) {
    const digest = createHash('sha256').update(readFileSync(join(root, path))).digest('hex')
    all.update(`${path}\0${digest}\n`)
  }
  return all.digest('hex')
}

function buildInfo() {
  return {
    name: 'bigupload-build-info',
    apply: 'build',
    generateBundle() {
      this.emitFile({
        type: 'asset',
        fileName: 'build-info.json',
        source: `${JSON.stringify({ sources_sha256: sourcesDigest() }, null, 2)}\n`,
      })
    },
  }
}

export default defineConfig({
  root: here,
  base: '/',
  publicDir: 'public',
  plugins: [buildInfo()],
  build: {
    outDir: '../src/bigupload/web/static',
    emptyOutDir: true,
    assetsDir: 'assets',
    target: 'es2022',
    sourcemap: false,
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 1024,
    rollupOptions: {
      output: {
        entryFileNames: 'assets/[name]-[hash].js',
        chunkFileNames: 'assets/[name]-[hash].js',
        assetFileNames: 'assets/[name]-[hash][extname]',
      },
    },
  },
})
