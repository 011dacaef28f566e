// The browser session: an API key exchanged for an HttpOnly session cookie.
//
// SessionInfo = {owner, key_name, csrf_token, expires_at,
//                limits: {max_file_size, max_single_put_size, multipart_threshold,
//                         allowed_content_types, url_expiry_seconds}}

import { ApiError, request, setCsrfToken } from './api.js'

const PATH = '/api/v1/session'

/** The current session, or null when the browser is not signed in. */
export async function currentSession() {
  try {
    const info = await request(PATH, { quiet401: true })
    setCsrfToken(info?.csrf_token)
    return info
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return null
    throw err
  }
}

/** Signs in with an API key; answers the SessionInfo or throws an ApiError with a readable message. */
export async function signIn(apiKey) {
  try {
    const info = await request(PATH, { method: 'POST', body: { api_key: apiKey }, quiet401: true })
    setCsrfToken(info?.csrf_token)
    return info
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      throw new ApiError('This API key is not valid, or it was revoked. Check it and try again.', {
        status: 401,
        code: err.code,
      })
    }
    if (err instanceof ApiError && err.status === 429) {
      const wait = err.retryAfter
        ? `in ${err.retryAfter} second${err.retryAfter === 1 ? '' : 's'}`
        : 'in a moment'
      throw new ApiError(`Too many sign-in attempts. Try again ${wait}.`, {
        status: 429,
        code: err.code,
        retryAfter: err.retryAfter,
      })
    }
    if (err instanceof ApiError && err.status === 422) {
      throw new ApiError('Enter an API key.', { status: 422, code: err.code })
    }
    throw err
  }
}

/** Ends the session on the server (the cookie is cleared there); never throws. */
export async function signOut() {
  try {
    await request(PATH, { method: 'DELETE', quiet401: true })
  } catch {
    // Signed out anyway: the page forgets the session either way.
  } finally {
    setCsrfToken(null)
  }
}
