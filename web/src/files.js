// The table of the signed-in owner's files: loaded page by page from GET /api/v1/files and
// kept current by the server-sent events (see events.js), newest first.

import { ApiError, request } from './api.js'
import { formatAbsolute, formatBytes, formatRelative } from './format.js'

const PAGE_SIZE = 50
/** States in which the stored object is whole and may be downloaded. */
const READABLE = new Set(['uploaded', 'processing', 'completed'])
const STATUS_HELP = {
  pending: 'Uploading, or waiting for the upload to finish',
  uploaded: 'Stored; waiting to be processed',
  processing: 'Stored; being checked',
  completed: 'Stored and checked',
  failed: 'Failed',
  expired: 'Expired: the upload was never finished, or the file was not kept',
  aborted: 'The upload was cancelled',
}

export class FilesTable {
  /**
   * @param {object} els  {table, body, empty, loading, more, count}
   * @param {object} hooks {notify(kind, text), confirm(text) -> bool}
   */
  constructor(els, hooks) {
    this.els = els
    this.hooks = hooks
    this.files = new Map() // id -> file, in display order
    this.cursor = null
    this.loading = null
    this.generation = 0
    this.loaded = false
    els.body.addEventListener('click', (event) => this.#onClick(event))
    els.more.addEventListener('click', () => this.loadMore())
    this.timer = setInterval(() => this.#refreshDates(), 30_000)
  }

  /** Forgets every row (sign-out). */
  clear() {
    this.generation += 1
    this.files.clear()
    this.cursor = null
    this.loaded = false
    this.loading = null
    this.els.body.replaceChildren()
    this.#renderChrome()
  }

  /** Loads the first page again, keeping any row an event made newer meanwhile. */
  async reload() {
    const generation = ++this.generation
    this.els.table.setAttribute('aria-busy', 'true')
    this.#renderChrome(true)
    try {
      const page = await request(`/api/v1/files?limit=${PAGE_SIZE}`)
      if (generation !== this.generation) return
      const fresh = new Map()
      for (const file of page.items) {
        const known = this.files.get(file.id)
        fresh.set(file.id, known && isNewer(known, file) ? known : file)
      }
      this.files = fresh
      this.cursor = page.next_cursor
      this.loaded = true
      this.#renderAll()
    } catch (err) {
      if (generation !== this.generation) return
      if (!(err instanceof ApiError && err.status === 401)) {
        this.hooks.notify('error', `Could not load your files: ${err.message}`)
      }
    } finally {
      if (generation === this.generation) {
        this.els.table.removeAttribute('aria-busy')
        this.#renderChrome()
      }
    }
  }

  async loadMore() {
    if (!this.cursor || this.loading) return
    const generation = this.generation
    this.els.more.disabled = true
    this.els.more.textContent = 'Loading…'
    this.loading = request(
      `/api/v1/files?limit=${PAGE_SIZE}&cursor=${encodeURIComponent(this.cursor)}`,
    )
    try {
      const page = await this.loading
      if (generation !== this.generation) return
      for (const file of page.items) {
        if (!this.files.has(file.id)) {
          this.files.set(file.id, file)
          this.els.body.append(this.#row(file))
        }
      }
      this.cursor = page.next_cursor
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) {
        this.hooks.notify('error', `Could not load more files: ${err.message}`)
      }
    } finally {
      this.loading = null
      this.els.more.disabled = false
      this.els.more.textContent = 'Load more'
      this.#renderChrome()
    }
  }

  /** A file as an event describes it now: update its row, or add it in date order. */
  upsert(file) {
    if (file.status === 'deleted') {
      this.remove(file.id)
      return
    }
    const known = this.files.get(file.id)
    if (known) {
      if (isNewer(known, file)) return
      this.files.set(file.id, file)
      const row = this.#findRow(file.id)
      if (row) row.replaceWith(this.#row(file))
      return
    }
    if (!this.loaded) return // the coming page will hold it
    // Past the last loaded row while more pages remain: it shows up with "Load more".
    const rows = [...this.files.values()]
    const created = Date.parse(file.created_at)
    const before = rows.find((other) => Date.parse(other.created_at) <= created)
    if (!before && this.cursor) return
    this.#insertBefore(file, before)
  }

  remove(id) {
    if (!this.files.delete(id)) return
    this.#findRow(id)?.remove()
    this.#renderChrome()
  }

  // -- rendering ---------------------------------------------------------------------------

  #renderAll() {
    this.els.body.replaceChildren(...[...this.files.values()].map((file) => this.#row(file)))
    this.#renderChrome()
  }

  #insertBefore(file, before) {
    const entries = [...this.files.entries()]
    const at = before ? entries.findIndex(([id]) => id === before.id) : entries.length
    entries.splice(at, 0, [file.id, file])
    this.files = new Map(entries)
    const row = this.#row(file)
    const beforeRow = before ? this.#findRow(before.id) : null
    if (beforeRow) this.els.body.insertBefore(row, beforeRow)
    else this.els.body.append(row)
    row.classList.add('is-new')
    this.#renderChrome()
  }

  #renderChrome(loading = false) {
    const count = this.files.size
    const { empty, loading: loadingEl, more, countEl, table } = this.els
    loadingEl.hidden = !(loading && !this.loaded)
    empty.hidden = !(this.loaded && count === 0)
    table.classList.toggle('is-empty', count === 0)
    more.hidden = !this.cursor || count === 0
    countEl.textContent = count === 0 ? '' : `${count}${this.cursor ? '+' : ''} file${count === 1 ? '' : 's'}`
  }

  #findRow(id) {
    return this.els.body.querySelector(`tr[data-file-id="${CSS.escape(id)}"]`)
  }

  #row(file) {
    const tr = el('tr', { 'data-file-id': file.id, class: `status-${file.status}` })

    const name = el('td', { 'data-col': 'name', class: 'col-name' })
    const title = el('div', { class: 'file-name', title: file.filename }, file.filename)
    const type = file.detected_content_type || file.content_type
    const sub = el('div', { class: 'file-meta' }, type || '')
    name.append(title, sub)
    if (file.status === 'failed' && file.error) {
      name.append(el('div', { class: 'file-error' }, file.error))
    }

    const size = file.stored_size ?? file.size
    const sizeCell = el(
      'td',
      { 'data-col': 'size', class: 'col-size', title: size == null ? 'Size not known yet' : `${size.toLocaleString()} bytes` },
      formatBytes(size),
    )

    const created = new Date(file.created_at)
    const time = el(
      'time',
      { datetime: file.created_at, title: formatAbsolute(created) },
      formatRelative(created),
    )
    const dateCell = el('td', { 'data-col': 'date', class: 'col-date' })
    dateCell.append(time)

    const badgeTitle =
      file.status === 'failed' && file.error ? `Failed: ${file.error}` : STATUS_HELP[file.status] || ''
    // The badge itself carries data-col=status: its text is exactly the status value.
    const badge = el(
      'span',
      { 'data-col': 'status', class: `badge badge-${file.status}`, title: badgeTitle },
      file.status,
    )
    const statusCell = el('td', { class: 'col-status' })
    statusCell.append(badge)

    const actions = el('td', { class: 'col-actions' })
    const download = el(
      'button',
      {
        type: 'button',
        class: 'btn btn-small',
        'data-action': 'download',
        'aria-label': `Download ${file.filename}`,
        title: READABLE.has(file.status) ? 'Download' : 'Not available: the file is not stored whole',
      },
      'Download',
    )
    download.disabled = !READABLE.has(file.status)
    const remove = el(
      'button',
      {
        type: 'button',
        class: 'btn btn-small btn-danger',
        'data-action': 'delete',
        'aria-label': `Delete ${file.filename}`,
        title: 'Delete',
      },
      'Delete',
    )
    actions.append(download, remove)

    tr.append(name, sizeCell, dateCell, statusCell, actions)
    return tr
  }

  #refreshDates() {
    const now = new Date()
    for (const time of this.els.body.querySelectorAll('time[datetime]')) {
      time.textContent = formatRelative(new Date(time.getAttribute('datetime')), now)
    }
  }

  // -- actions -----------------------------------------------------------------------------

  #onClick(event) {
    const button = event.target.closest('button[data-action]')
    if (!button || button.disabled) return
    const id = button.closest('tr[data-file-id]')?.dataset.fileId
    const file = id && this.files.get(id)
    if (!file) return
    if (button.dataset.action === 'download') this.#download(file, button)
    else if (button.dataset.action === 'delete') this.#delete(file, button)
  }

  async #download(file, button) {
    button.disabled = true
    try {
      const link = await request(`/api/v1/files/${encodeURIComponent(file.id)}/download`)
      const a = document.createElement('a')
      a.href = link.url
      a.download = link.filename || file.filename
      a.rel = 'noopener noreferrer'
      a.hidden = true
      document.body.append(a)
      a.click()
      a.remove()
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) {
        this.hooks.notify('error', `Could not download “${file.filename}”: ${err.message}`)
      }
    } finally {
      button.disabled = !READABLE.has(this.files.get(file.id)?.status)
    }
  }

  async #delete(file, button) {
    const ok = this.hooks.confirm(
      `Delete “${file.filename}”?\n\nThe stored file and its record are removed. This cannot be undone.`,
    )
    if (!ok) return
    button.disabled = true
    try {
      await request(`/api/v1/files/${encodeURIComponent(file.id)}`, { method: 'DELETE' })
      this.remove(file.id)
      this.hooks.notify('info', `Deleted “${file.filename}”.`)
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        this.remove(file.id)
        return
      }
      button.disabled = false
      if (!(err instanceof ApiError && err.status === 401)) {
        this.hooks.notify('error', `Could not delete “${file.filename}”: ${err.message}`)
      }
    }
  }
}

/** Whether the row already shows a later state of the file than `incoming`. */
function isNewer(known, incoming) {
  return Date.parse(known.updated_at) > Date.parse(incoming.updated_at)
}

/** A new element with attributes and, optionally, text. */
export function el(tag, attrs = {}, text) {
  const node = document.createElement(tag)
  for (const [name, value] of Object.entries(attrs)) {
    if (value != null) node.setAttribute(name, value)
  }
  if (text != null) node.textContent = text
  return node
}
