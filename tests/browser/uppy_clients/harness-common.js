// The page tests/browser/test_uppy_clients.py drives: one unmodified Uppy + @uppy/aws-s3, events
// collected into `window.events`, and a few functions the test calls through page.evaluate.
// Each generation's harness.js (v5/, v6/) imports its own pinned packages and calls installHarness
// with the plugin options its generation takes; this file has no imports, so esbuild bundles it
// into both without resolving anything from here.

function fileId(file) {
  return typeof file === 'string' ? file : file?.id
}

function plain(value) {
  // A JSON-safe copy (responses may hold XHR objects or headers maps).
  try {
    return JSON.parse(JSON.stringify(value ?? null))
  } catch {
    return String(value)
  }
}

function errorInfo(error) {
  if (error == null) return null
  return {
    name: error.name ?? null,
    message: error.message ?? String(error),
    details: error.details ?? null,
    isAuthError: error.isAuthError ?? null,
    isUserFacing: error.isUserFacing ?? null,
  }
}

export function installHarness({ generation, versions, Uppy, AwsS3, pluginOptions }) {
  const events = []
  const rows = new Map() // file id -> {name, state, bytes, total, message}
  let uppy = null

  const list = document.getElementById('files')
  const log = document.getElementById('log')
  document.getElementById('generation').textContent =
    `@uppy/core ${versions.core} + @uppy/aws-s3 ${versions.awsS3}`

  function render() {
    list.replaceChildren(
      ...[...rows.entries()].map(([id, row]) => {
        const li = document.createElement('li')
        li.dataset.fileId = id
        li.dataset.state = row.state
        const pct = row.total ? Math.floor((100 * row.bytes) / row.total) : 0
        li.textContent = `${row.name}: ${row.state} ${pct}% (${row.bytes} / ${row.total} bytes)${
          row.message ? ` - ${row.message}` : ''
        }`
        return li
      }),
    )
  }

  function record(type, data = {}) {
    events.push({ type, at: performance.now(), ...data })
    if (type !== 'upload-progress') {
      const line = document.createElement('div')
      line.textContent = `${type} ${JSON.stringify(data)}`.slice(0, 300)
      log.append(line)
    }
  }

  function setRow(id, patch) {
    const row = rows.get(id) ?? { name: '?', state: 'added', bytes: 0, total: 0, message: '' }
    rows.set(id, { ...row, ...patch })
    render()
  }

  function add(file) {
    const id = uppy.addFile(file)
    setRow(id, { name: file.name, total: file.data.size })
    record('file-added', { fileID: id, name: file.name, size: file.data.size })
    return id
  }

  window.events = events

  window.startUppy = (options = {}) => {
    if (uppy) uppy.destroy()
    events.length = 0
    rows.clear()
    render()
    uppy = new Uppy({ id: `uppy${generation}`, autoProceed: false, debug: Boolean(options.debug) })
    const opts = { ...pluginOptions(options) }
    // Only what the test sets: an explicit undefined would replace the plugin's defaults.
    for (const name of ['shouldUseMultipart', 'limit']) {
      if (options[name] !== undefined) opts[name] = options[name]
    }
    uppy.use(AwsS3, opts)

    uppy.on('upload-progress', (file, progress) => {
      const id = fileId(file)
      setRow(id, { state: 'uploading', bytes: progress.bytesUploaded, total: progress.bytesTotal })
      record('upload-progress', {
        fileID: id,
        bytesUploaded: progress.bytesUploaded,
        bytesTotal: progress.bytesTotal,
      })
    })
    uppy.on('s3-multipart:part-uploaded', (file, part) => {
      record('part-uploaded', { fileID: fileId(file), PartNumber: part.PartNumber, ETag: part.ETag })
    })
    uppy.on('upload-pause', (file, isPaused) => {
      const id = fileId(file)
      setRow(id, { state: isPaused ? 'paused' : 'uploading' })
      record('upload-pause', { fileID: id, isPaused })
    })
    uppy.on('upload-success', (file, response) => {
      const id = fileId(file)
      setRow(id, { state: 'success', bytes: file.size, message: response?.uploadURL ?? '' })
      record('upload-success', { fileID: id, response: plain(response) })
    })
    uppy.on('upload-error', (file, error, response) => {
      const id = fileId(file)
      const info = errorInfo(error)
      setRow(id, { state: 'error', message: info.message })
      record('upload-error', { fileID: id, error: info, response: plain(response) })
    })
    uppy.on('file-removed', (file) => {
      const id = fileId(file)
      setRow(id, { state: 'removed' })
      record('file-removed', { fileID: id })
    })
    uppy.on('cancel-all', () => record('cancel-all'))
    uppy.on('error', (error) => record('error', { error: errorInfo(error) }))
    uppy.on('info-visible', () => record('info-visible', { info: plain(uppy.getState().info) }))
    uppy.on('complete', (result) => {
      record('complete', {
        successful: (result?.successful ?? []).map(fileId),
        failed: (result?.failed ?? []).map(fileId),
      })
    })
    return { generation, versions }
  }

  /** Add a file made of bytes sent by the test (base64). Answers Uppy's file id. */
  window.addBytes = ({ name, type, base64 }) => {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0))
    const data = new File([bytes], name, { type })
    return add({ name, type, data, source: 'harness' })
  }

  // Big files come through a real file input (Playwright's set_input_files).
  document.getElementById('picker').addEventListener('change', (event) => {
    for (const data of event.target.files) {
      add({ name: data.name, type: data.type || 'application/octet-stream', data, source: 'picker' })
    }
    event.target.value = ''
  })

  window.upload = () => {
    // Not awaited: the test follows the events.
    uppy.upload().then(
      (result) => record('upload-resolved', { successful: (result?.successful ?? []).length }),
      (error) => record('upload-rejected', { error: errorInfo(error) }),
    )
  }
  window.pauseResume = (id) => uppy.pauseResume(id)
  window.removeFile = (id) => uppy.removeFile(id)
  window.cancelAll = () => uppy.cancelAll()
  window.fileState = (id) => {
    const file = uppy.getFile(id)
    return file ? plain({ progress: file.progress, error: file.error, isPaused: file.isPaused }) : null
  }
  document.body.dataset.ready = 'true'
}
