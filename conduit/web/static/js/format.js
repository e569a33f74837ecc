// Times in the account's time zone; everything else as plain text.
import { getAccount } from './store.js';

const formatters = new Map();

function formatter(timeZone) {
  if (!formatters.has(timeZone)) {
    let format;
    try {
      format = new Intl.DateTimeFormat(undefined, {
        timeZone, year: 'numeric', month: 'short', day: 'numeric',
        hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short',
      });
    } catch {
      format = formatter('UTC');
    }
    formatters.set(timeZone, format);
  }
  return formatters.get(timeZone);
}

export function timeZone() {
  const account = getAccount();
  return (account && account.timezone) || 'UTC';
}

/** An RFC 3339 time from the API, shown in the account's time zone; '—' for none. */
export function formatTime(value) {
  if (!value) return '—';
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return formatter(timeZone()).format(date);
}

export function plural(count, one, many = `${one}s`) {
  return `${count} ${count === 1 ? one : many}`;
}

/** Every IANA time zone this browser knows, UTC first. */
export function timeZones() {
  const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
  return ['UTC', ...zones.filter((zone) => zone !== 'UTC')];
}
