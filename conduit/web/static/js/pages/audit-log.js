// The audit log: every change made to the account, newest first.
import { html, useCallback, useState } from '../lib.js';
import * as api from '../api.js';
import { formatTime } from '../format.js';
import { EmptyState, FormError, Loading, PageHeader, SelectField, useLoad } from '../components.js';

const LIMITS = [50, 100, 200].map((n) => ({ value: String(n), label: `Last ${n}` }));

/** Metadata as "key: value" lines of text (values are whatever the API recorded). */
function metadataText(metadata) {
  const entries = Object.entries(metadata || {});
  if (entries.length === 0) return '';
  return entries.map(([key, value]) => `${key}: ${typeof value === 'string' ? value : JSON.stringify(value)}`).join('\n');
}

export function AuditLog() {
  const [limit, setLimit] = useState('50');
  const loader = useCallback(() => api.get('/accounts/me/audit-log', { limit }), [limit]);
  const { data, error, loading } = useLoad(loader, [loader]);
  return html`<div class="page">
    <${PageHeader} title="Audit log" />
    <p class="muted">Sign-ins, changes and security events of your account, kept 180 days.</p>
    <div class="toolbar"><${SelectField} label="Show" value=${limit} onValue=${setLimit} options=${LIMITS} /></div>
    <${FormError} error=${error} />
    ${loading ? html`<${Loading} />` : null}
    ${data && data.length === 0 ? html`<${EmptyState} title="No entries"><p>Nothing happened yet.</p></${EmptyState}>` : null}
    ${data && data.length > 0 ? html`<div class="table-wrap"><table class="table">
      <caption class="visually-hidden">Audit log entries, newest first</caption>
      <thead><tr><th scope="col">Time</th><th scope="col">Action</th><th scope="col">IP</th><th scope="col">Details</th></tr></thead>
      <tbody>${data.map((entry) => html`<tr key=${entry.id}>
        <td class="nowrap">${formatTime(entry.created_at)}</td>
        <td class="mono">${entry.action}</td>
        <td class="mono">${entry.ip || '—'}</td>
        <td class="metadata">${metadataText(entry.metadata)}</td>
      </tr>`)}</tbody>
    </table></div>` : null}
  </div>`;
}
