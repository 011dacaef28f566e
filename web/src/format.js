// How sizes and dates are written on the page.

const UNITS = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']

/** 1536 -> "1.5 KiB"; null -> "—". */
export function formatBytes(bytes) {
  if (bytes == null || !Number.isFinite(bytes)) return '—'
  if (bytes < 1024) return `${bytes} ${bytes === 1 ? 'byte' : 'bytes'}`
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024
    unit += 1
  }
  const digits = value >= 100 || Number.isInteger(value) ? 0 : value >= 10 ? 1 : 2
  return `${Number(value.toFixed(digits))} ${UNITS[unit]}`
}

const absoluteFormat = new Intl.DateTimeFormat(undefined, {
  dateStyle: 'medium',
  timeStyle: 'short',
})
const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' })

/** "31 Jan 2026, 12:00" in the reader's locale and time zone. */
export function formatAbsolute(date) {
  return absoluteFormat.format(date)
}

/** "just now", "5 minutes ago", "yesterday"; past a week, the absolute date. */
export function formatRelative(date, now = new Date()) {
  const seconds = Math.round((date.getTime() - now.getTime()) / 1000)
  const abs = Math.abs(seconds)
  if (abs < 45) return 'just now'
  if (abs < 45 * 60) return relativeFormat.format(Math.round(seconds / 60), 'minute')
  if (abs < 22 * 3600) return relativeFormat.format(Math.round(seconds / 3600), 'hour')
  if (abs < 7 * 86400) return relativeFormat.format(Math.round(seconds / 86400), 'day')
  return absoluteFormat.format(date)
}

/** A list of content types as a reader would say it: "image/*, application/pdf". */
export function formatTypes(types) {
  if (!types || types.length === 0 || types.includes('*/*')) return 'any type'
  return types.join(', ')
}
