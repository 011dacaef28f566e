// Uppy Companion for bench/create_upload.py: the `companion.app(options)` Express app on its
// defaults (metrics on, CORS, cookie parser, Grant), with S3 signing configured and nothing else.
//
//   node bench/companion/server.mjs --port 8002 [--data-dir DIR]
//
// The S3 credentials are fake and the endpoint is loopback: `GET /s3/params` answers a presigned
// POST policy computed in this process (no request leaves it). Installed by
// scripts/install-companion.sh (the version is pinned in package.json).
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'

import * as companion from '@uppy/companion'
import express from 'express'

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '8002' },
    'data-dir': { type: 'string' },
  },
})
const dataDir = values['data-dir'] ?? fs.mkdtempSync(path.join(os.tmpdir(), 'companion-'))
fs.mkdirSync(dataDir, { recursive: true })

const { app: companionApp } = companion.app({
  secret: 'bench-companion-secret-bench-companion-secret',
  filePath: dataDir,
  server: { host: `${values.host}:${values.port}`, protocol: 'http' },
  corsOrigins: true,
  uploadUrls: [`http://${values.host}:9000/`],
  s3: {
    key: 'AKIABENCHBENCHBENCH0',
    secret: 'bench-secret-bench-secret-bench-secret-00',
    bucket: 'bench',
    region: 'us-east-1',
    endpoint: 'http://127.0.0.1:9000',
    forcePathStyle: true,
  },
})

const app = express()
app.disable('x-powered-by')
app.use(companionApp)
const server = http.createServer(app)
server.keepAliveTimeout = 65_000
server.listen(Number(values.port), values.host)
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)))
}
