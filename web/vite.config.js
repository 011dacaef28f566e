// Builds the page into the Python package (src/bigupload/web/static), where bigupload serves it.
//
// Beside index.html the build writes build-info.json: {"sources_sha256": <digest>}, the digest of
// the sources it was built from. tests/web/test_build.py computes the same digest of web/ and
// fails when the committed build is older than the sources ("run make web").
//
// It also copies Swagger UI (npm swagger-ui-dist) into assets/, so that /docs works offline; their
// hashed names are in build-info.json under "swagger_ui" ({"js": ..., "css": ...}).
//
// The digest (same algorithm in both places): take every file under web/ except node_modules/,
// by its POSIX path relative to web/, sorted; for each, the line
//     path + "\0" + hex(sha256(file bytes)) + "\n"
// and the digest is hex(sha256(all the lines concatenated)).

import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, sep } from 'node:path'
import { createRequire } from 'node:module'
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

const swaggerDir = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'))

function buildInfo() {
  return {
    name: 'bigupload-build-info',
    apply: 'build',
    generateBundle() {
      const swagger = {}
      for (const [kind, file] of [['js', 'swagger-ui-bundle.js'], ['css', 'swagger-ui.css']]) {
        const ref = this.emitFile({
          type: 'asset',
          name: file,
          source: readFileSync(join(swaggerDir, file)),
        })
        swagger[kind] = this.getFileName(ref)
      }
      const info = { sources_sha256: sourcesDigest(), swagger_ui: swagger }
      this.emitFile({
        type: 'asset',
        fileName: 'build-info.json',
        source: `${JSON.stringify(info, null, 2)}\n`,
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
