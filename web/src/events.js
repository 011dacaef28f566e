// The live feed of the owner's file changes: EventSource('/api/v1/events').
//
// Each event is named `file.<status>` (so `onmessage` never fires: one listener per name) and
// carries {event_id, file_id, from_status, to_status, reason, file} where `file` is the file as
// it is now, or null once deleted. The browser reconnects by itself with Last-Event-ID; when the
// server refuses the stream (the session ended) the page checks its session.

export const STATUSES = [
  'pending',
  'uploaded',
  'processing',
  'completed',
  'failed',
  'expired',
  'aborted',
  'deleted',
]

const REOPEN_MS = 5000

export class LiveFeed {
  /**
   * @param {object} hooks {onChange(data), onOpen(), onState(live: bool), onRefused()}
   *   onRefused: the stream was closed by the server; answers a promise of whether to retry.
   */
  constructor(hooks) {
    this.hooks = hooks
    this.source = null
    this.timer = null
    this.stopped = true
  }

  start() {
    this.stopped = false
    this.#open()
  }

  stop() {
    this.stopped = true
    clearTimeout(this.timer)
    this.timer = null
    this.source?.close()
    this.source = null
    this.hooks.onState(false)
  }

  #open() {
    if (this.stopped) return
    const source = new EventSource('/api/v1/events')
    this.source = source
    source.addEventListener('open', () => {
      this.hooks.onState(true)
      this.hooks.onOpen()
    })
    const onEvent = (event) => {
      let data
      try {
        data = JSON.parse(event.data)
      } catch {
        return
      }
      this.hooks.onChange(data)
    }
    for (const status of STATUSES) source.addEventListener(`file.${status}`, onEvent)
    source.addEventListener('error', async () => {
      this.hooks.onState(false)
      if (source.readyState !== EventSource.CLOSED || this.stopped) return // reconnecting
      // Closed for good (an HTTP error): open again later, if the session still stands.
      source.close()
      if (this.source !== source) return
      this.source = null
      const retry = await this.hooks.onRefused()
      if (retry && !this.stopped && !this.timer) {
        this.timer = setTimeout(() => {
          this.timer = null
          this.#open()
        }, REOPEN_MS)
      }
    })
  }
}
