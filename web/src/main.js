// The bigupload page: sign in with an API key, upload with Uppy, follow your files live.

import AwsS3 from '@uppy/aws-s3'
import Uppy from '@uppy/core'
import Dashboard from '@uppy/dashboard'
import GoldenRetriever from '@uppy/golden-retriever'
import '@uppy/core/css/style.min.css'
import '@uppy/dashboard/css/style.min.css'
import './styles.css'

import { ApiError, onUnauthenticated } from './api.js'
import { LiveFeed } from './events.js'
import { FilesTable, el } from './files.js'
import { formatBytes, formatTypes } from './format.js'
import { currentSession, signIn, signOut } from './session.js'

const $ = (selector) => document.querySelector(selector)

const ui = {
  views: { boot: $('#boot-view'), signin: $('#signin-view'), app: $('#app-view') },
  account: $('#account'),
  owner: $('#owner'),
  avatar: $('#avatar'),
  signout: $('#signout'),
  form: $('#signin-form'),
  apiKey: $('#api-key'),
  signinError: $('#signin-error'),
  signinSubmit: $('#signin-submit'),
  limits: $('#limits'),
  messages: $('#messages'),
  live: $('#live'),
  liveText: $('#live-text'),
  refresh: $('#files-refresh'),
}

let session = null
let uppy = null

// Tests (and curious people) reach the uploader through window.bigupload.uppy.
window.bigupload = {
  get uppy() {
    return uppy
  },
}

// -- messages ------------------------------------------------------------------------------

const MAX_MESSAGES = 4

/** Shows a message in the live region; errors stay until dismissed, the rest fade out. */
function notify(kind, text) {
  const item = el('div', { class: `message message-${kind}` })
  item.append(el('span', { class: 'message-text' }, text))
  const close = el('button', { type: 'button', class: 'message-close', 'aria-label': 'Dismiss' })
  close.addEventListener('click', () => item.remove())
  item.append(close)
  ui.messages.append(item)
  while (ui.messages.children.length > MAX_MESSAGES) ui.messages.firstElementChild.remove()
  if (kind !== 'error') setTimeout(() => item.remove(), 6000)
}

function clearMessages() {
  ui.messages.replaceChildren()
}

// -- views ---------------------------------------------------------------------------------

function show(name) {
  for (const [key, view] of Object.entries(ui.views)) view.hidden = key !== name
  ui.account.hidden = name !== 'app'
}

function showSignIn(reason) {
  show('signin')
  setSigninError(reason || '')
  ui.signinSubmit.disabled = false
  ui.signinSubmit.textContent = 'Sign in'
  ui.apiKey.focus()
}

function setSigninError(text) {
  ui.signinError.textContent = text
  ui.signinError.hidden = !text
  ui.apiKey.setAttribute('aria-invalid', text ? 'true' : 'false')
}

// -- the files table and its live feed -----------------------------------------------------

const files = new FilesTable(
  {
    table: $('#files'),
    body: $('#files-body'),
    empty: $('#files-empty-row'),
    loading: $('#files-loading'),
    more: $('#files-more'),
    countEl: $('#files-count'),
  },
  { notify, confirm: (text) => window.confirm(text) },
)

// -- what became of the files Uppy sent ---------------------------------------------------
//
// Uppy says "Complete" once the bytes are stored; the server may still fail the file (its
// processing found, say, bytes that are not of the declared type). When the live feed says a
// file this page sent has failed, its Uppy entry turns to an error naming the reason.

const UUID_RE = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi
/** Server file id -> the Uppy file id that sent it. */
const sentFiles = new Map()
/** Server file id -> why it failed, for failures heard of before Uppy said it was sent. */
const failures = new Map()

/** The server's file id of an Uppy upload: the last UUID of its object key or location. */
function serverFileId(file, response) {
  const where = [file?.s3Multipart?.key, response?.body?.key, response?.body?.location, response?.uploadURL]
  for (const text of where) {
    const ids = String(text ?? '').match(UUID_RE)
    if (ids) return ids[ids.length - 1].toLowerCase()
  }
  return null
}

function markFailed(fileId, reason) {
  const uppyFileId = sentFiles.get(fileId)
  const file = uppyFileId && uppy?.getFile(uppyFileId)
  if (!file) {
    failures.set(fileId, reason)
    return
  }
  if (file.error) return
  const why = reason || 'the server could not accept it'
  const message = `Failed on the server: ${why}`
  uppy.setFileState(uppyFileId, { error: message })
  uppy.setState({ error: message })
  notify('error', `“${file.name}” failed: ${why}`)
}

const feed = new LiveFeed({
  onChange: (data) => {
    if (data.file) files.upsert(data.file)
    else if (data.to_status === 'deleted' || data.file === null) files.remove(data.file_id)
    if (data.to_status === 'failed') markFailed(data.file_id, data.reason || data.file?.error)
  },
  // A (re)connected stream may have missed changes while it was down: read the list again.
  onOpen: () => files.reload(),
  onState: (live) => {
    ui.live.dataset.live = String(live)
    ui.liveText.textContent = live ? 'Live' : 'Reconnecting…'
  },
  onRefused: async () => {
    try {
      const info = await currentSession()
      if (info) return true
      signedOut('Your session has ended. Sign in again to continue.')
    } catch {
      return true
    }
    return false
  },
})

ui.refresh.addEventListener('click', () => files.reload())

// -- the uploader --------------------------------------------------------------------------

function limitsText(limits) {
  const size = `Files up to ${formatBytes(limits.max_file_size)} each`
  const types = formatTypes(limits.allowed_content_types)
  return `${size} · ${types === 'any type' ? 'Any type of file' : `Only ${types}`}`
}

function uppyId(owner) {
  return `bigupload:${owner}`
}

function createUppy(info) {
  const { limits } = info
  const types = limits.allowed_content_types || []
  const instance = new Uppy({
    id: uppyId(info.owner),
    autoProceed: false,
    restrictions: {
      maxFileSize: limits.max_file_size,
      allowedFileTypes: types.length === 0 || types.includes('*/*') ? null : types,
    },
  })
  // Single form POSTs are capped by the server; above that (or its threshold) go multipart.
  const multipartAbove = Math.min(limits.multipart_threshold, limits.max_single_put_size)
  instance
    .use(Dashboard, {
      id: 'Dashboard',
      inline: true,
      target: '#uploader',
      width: '100%',
      height: 400,
      theme: 'auto',
      proudlyDisplayPoweredByUppy: false,
      hideProgressDetails: false,
      hidePauseResumeButton: false,
      hideCancelButton: false,
      hideRetryButton: false,
      showRemoveButtonAfterComplete: true,
      fileManagerSelectionType: 'files',
    })
    .use(AwsS3, {
      companionEndpoint: window.location.origin,
      shouldUseMultipart: (file) => (file.size ?? 0) > multipartAbove,
    })
    .use(GoldenRetriever)

  let reloadTimer = null
  instance.on('upload-success', (file, response) => {
    const fileId = serverFileId(file, response)
    if (fileId && file) {
      sentFiles.set(fileId, file.id)
      if (failures.has(fileId)) markFailed(fileId, failures.get(fileId))
    }
    clearTimeout(reloadTimer)
    reloadTimer = setTimeout(() => files.reload(), 300)
  })
  instance.on('restriction-failed', (file, error) => {
    notify('error', error?.message || `“${file?.name}” cannot be uploaded here.`)
  })
  instance.on('upload-error', (file, error) => {
    const why = describeUploadError(error)
    notify('error', `“${file?.name ?? 'A file'}” could not be uploaded: ${why}`)
    if (/unauthori[sz]ed|\b401\b/i.test(String(error?.message))) checkSession()
  })
  // After a reload, files too large to keep in the browser come back as "ghosts": open the
  // picker so the same file can be added again; the upload then goes on from its last part.
  instance.on('restored', () => {
    const ghosts = instance.getFiles().filter((file) => file.isGhost)
    if (ghosts.length === 0) return
    instance.getPlugin('Dashboard')?.setPluginState({ showAddFilesPanel: true })
    const names = ghosts.map((file) => `“${file.name}”`).join(', ')
    notify(
      'info',
      `An upload was interrupted. Add ${names} again to resume it where it stopped.`,
    )
  })
  instance.on('complete', (result) => {
    const done = result?.successful?.length ?? 0
    if (done > 0) notify('info', `${done} file${done === 1 ? '' : 's'} uploaded.`)
  })
  return instance
}

/** Uppy 6 reports a failed route by its HTTP status text only; say what it means. */
function describeUploadError(error) {
  const text = String(error?.message || error || 'unknown error')
  const known = [
    [/unsupported media type/i, 'this type of file is not allowed.'],
    [/payload too large|content too large|entity.?too.?large/i, 'the file is larger than allowed.'],
    [/unauthori[sz]ed/i, 'you are no longer signed in.'],
    [/forbidden/i, 'the request was refused (403).'],
    [/too many requests/i, 'too many requests; wait a moment, then retry.'],
    [/not found/i, 'the upload is no longer known to the server; remove the file and add it again.'],
    [/service unavailable|bad gateway|gateway timeout|internal server error/i, 'the server or the storage is unavailable; retry shortly.'],
    [/network|failed to fetch|load failed/i, 'the connection was lost; retry when you are back online.'],
  ]
  for (const [pattern, meaning] of known) if (pattern.test(text)) return meaning
  return text.endsWith('.') ? text : `${text}.`
}

function ensureUppy(info) {
  if (uppy && uppy.getID() === uppyId(info.owner)) {
    // The same person signing in again (after their session ended): carry on.
    uppy.resumeAll()
    return
  }
  if (uppy) uppy.destroy()
  uppy = createUppy(info)
}

function uploadsRunning() {
  return Boolean(uppy) && uppy.getFiles().some((file) => file.progress?.uploadStarted && !file.progress?.uploadComplete && !file.error)
}

// -- signing in and out --------------------------------------------------------------------

function enterApp(info) {
  session = info
  ui.owner.textContent = info.owner
  ui.owner.title = info.key_name ? `${info.owner} (key “${info.key_name}”)` : info.owner
  ui.avatar.textContent = (info.owner || '?').trim().charAt(0).toUpperCase() || '?'
  ui.limits.textContent = limitsText(info.limits)
  show('app')
  ensureUppy(info)
  files.clear()
  files.reload()
  feed.start()
}

/** Back to the sign-in card; an upload in progress pauses, to resume after signing in again. */
function signedOut(reason) {
  if (!session) return
  session = null
  feed.stop()
  files.clear()
  if (uppy) uppy.pauseAll()
  showSignIn(reason)
}

let checking = null
function checkSession() {
  checking ??= currentSession()
    .then((info) => {
      if (!info) signedOut('Your session has ended. Sign in again to continue.')
    })
    .catch(() => {})
    .finally(() => {
      checking = null
    })
  return checking
}

onUnauthenticated(() => {
  if (session) signedOut('Your session has ended. Sign in again to continue.')
})

ui.form.addEventListener('submit', async (event) => {
  event.preventDefault()
  const key = ui.apiKey.value.trim()
  if (!key) {
    setSigninError('Enter your API key.')
    ui.apiKey.focus()
    return
  }
  setSigninError('')
  ui.signinSubmit.disabled = true
  ui.signinSubmit.textContent = 'Signing in…'
  try {
    const info = await signIn(key)
    ui.apiKey.value = ''
    clearMessages()
    enterApp(info)
  } catch (err) {
    setSigninError(err instanceof ApiError ? err.message : 'Signing in failed. Try again.')
    ui.apiKey.focus()
    ui.apiKey.select()
  } finally {
    ui.signinSubmit.disabled = false
    ui.signinSubmit.textContent = 'Sign in'
  }
})

ui.signout.addEventListener('click', async () => {
  if (
    uploadsRunning() &&
    !window.confirm('Uploads are still in progress. Signing out cancels them. Sign out anyway?')
  ) {
    return
  }
  ui.signout.disabled = true
  try {
    // Cancel (and abort on the server) while the session still allows it.
    if (uppy) {
      uppy.destroy()
      uppy = null
    }
    feed.stop()
    await signOut()
  } finally {
    ui.signout.disabled = false
    session = null
    files.clear()
    clearMessages()
    showSignIn('')
    notify('info', 'You are signed out.')
  }
})

// -- start ---------------------------------------------------------------------------------

async function boot() {
  try {
    const info = await currentSession()
    if (info) enterApp(info)
    else showSignIn('')
  } catch (err) {
    showSignIn('')
    notify('error', `Could not check your session: ${err.message}`)
  }
}

boot()
