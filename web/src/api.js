// Calls to the bigupload API (same origin; the session cookie rides along).
//
// Every error is an ApiError carrying the HTTP status and the API's stable error code
// (`{"error": {"code", "message", "details"}}`). A 401 from any call but the sign-in itself
// also tells the page, through onUnauthenticated(), to go back to the sign-in card.

export class ApiError extends Error {
  constructor(message, { status = 0, code = null, retryAfter = null } = {}) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.code = code
    this.retryAfter = retryAfter
  }
}

let csrfToken = null
let unauthenticatedHandler = () => {}

/** The CSRF token of the session, sent on every call that changes something. */
export function setCsrfToken(token) {
  csrfToken = token || null
}

/** Called (once per failing call) when the API answers 401 to a signed-in call. */
export function onUnauthenticated(handler) {
  unauthenticatedHandler = handler
}

const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

/**
 * Calls `path` and answers the decoded JSON body (null for an empty body).
 * `quiet401`: do not send the page back to sign-in on a 401 (the sign-in call itself).
 */
export async function request(path, { method = 'GET', body, quiet401 = false, signal } = {}) {
  const headers = { Accept: 'application/json' }
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  if (UNSAFE.has(method) && csrfToken) headers['X-CSRF-Token'] = csrfToken
  let response
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
      signal,
    })
  } catch (err) {
    if (err?.name === 'AbortError') throw err
    throw new ApiError('The server cannot be reached. Check your connection and try again.')
  }
  const payload = await readBody(response)
  if (response.ok) return payload
  const error = toError(response, payload)
  if (response.status === 401 && !quiet401) unauthenticatedHandler(error)
  throw error
}

async function readBody(response) {
  if (response.status === 204) return null
  const text = await response.text().catch(() => '')
  if (!text) return null
  try {
    return JSON.parse(text)
  } catch {
    return { text }
  }
}

function toError(response, payload) {
  const detail = payload?.error ?? {}
  const code = typeof detail.code === 'string' ? detail.code : null
  const retryAfter = parseRetryAfter(response.headers.get('Retry-After'))
  let message = typeof detail.message === 'string' && detail.message ? detail.message : null
  if (response.status === 429) {
    message = retryAfter
      ? `Too many requests. Try again in ${retryAfter} second${retryAfter === 1 ? '' : 's'}.`
      : 'Too many requests. Wait a moment and try again.'
  } else if (!message) {
    message = fallbackMessage(response.status)
  }
  return new ApiError(message, { status: response.status, code, retryAfter })
}

function parseRetryAfter(value) {
  if (!value) return null
  const seconds = Number.parseInt(value, 10)
  if (Number.isFinite(seconds) && seconds >= 0) return seconds
  const when = Date.parse(value)
  return Number.isNaN(when) ? null : Math.max(0, Math.ceil((when - Date.now()) / 1000))
}

function fallbackMessage(status) {
  if (status === 401) return 'You are not signed in.'
  if (status === 403) return 'This action is not allowed.'
  if (status === 404) return 'Not found: it may have been deleted.'
  if (status === 413) return 'The file is larger than allowed.'
  if (status === 415) return 'This type of file is not allowed.'
  if (status >= 500) return `The server could not answer (HTTP ${status}). Try again shortly.`
  return `The request failed (HTTP ${status}).`
}
