// A webhook's delivery attempts, live: the page asks the API every second, so a new attempt
// shows within about two seconds without a reload.
import { html, useCallback, useState } from '../lib.js';
import * as api from '../api.js';
import { href } from '../router.js';
import { formatTime } from '../format.js';
import { EmptyState, FormError, Loading, SelectField, StatusBadge, usePolling, useLoad } from '../components.js';

export const POLL_MS = 1000;
const PAGE_SIZE = 25;
export const STATUS_OPTIONS = [
  { value: '', label: 'All statuses' },
  { value: 'delivered', label: 'Delivered' },
  { value: 'retrying', label: 'Retrying' },
  { value: 'failed', label: 'Failed' },
  { value: 'rejected', label: 'Rejected (at SMTP)' },
];

export function httpText(entry) {
  return entry.http_status ? String(entry.http_status) : '—';
}

/** The table of delivery attempts; `webhookOf(entry)` adds a webhook column when given. */
export function DeliveryTable({ entries, webhookOf }) {
  const errors = entries.some((entry) => entry.error);  // the column only when there is one to show
  return html`<div class="table-wrap"><table class="table">
    <caption class="visually-hidden">Delivery attempts, newest first</caption>
    <thead><tr>
      <th scope="col">Time</th>
      ${webhookOf ? html`<th scope="col">Webhook</th>` : null}
      <th scope="col">Status</th><th scope="col">HTTP</th>
      <th scope="col">Sender</th><th scope="col">Message ID</th>${errors ? html`<th scope="col">Error</th>` : null}
    </tr></thead>
    <tbody>
      ${entries.map((entry) => html`<tr key=${entry.id} data-log-id=${entry.id}>
        <td class="nowrap"><a href=${href('webhooks', entry.webhook_id, 'logs', entry.id)}>${formatTime(entry.attempted_at)}</a></td>
        ${webhookOf ? html`<td class="nowrap">${webhookOf(entry)}</td>` : null}
        <td class="nowrap"><${StatusBadge} status=${entry.status} />${entry.simulated ? html` <span class="badge badge-neutral">test</span>` : null}</td>
        <td class="mono nowrap">${httpText(entry)}${entry.http_status ? html` <span class="muted">${entry.duration_ms} ms</span>` : null}</td>
        <td class="mono truncate">${entry.sender || '—'}</td>
        <td class="mono truncate">${entry.smtp_message_id || '—'}</td>
        ${errors ? html`<td class="truncate">${entry.error}</td>` : null}
      </tr>`)}
    </tbody>
  </table></div>`;
}

export function DeliveryList({ webhook }) {
  const [status, setStatus] = useState('');
  const [page, setPage] = useState(1);
  const loader = useCallback(() => api.request('GET', `/webhooks/${encodeURIComponent(webhook.id)}/logs`,
    { query: { page, page_size: PAGE_SIZE, status } }), [webhook.id, page, status]);
  const { data, error, loading, reload } = useLoad(loader, [loader]);
  usePolling(reload, POLL_MS, [reload]);
  const entries = data || [];
  return html`<section class="card" aria-label="Deliveries">
    <div class="card-header">
      <h2>Deliveries</h2>
      <span class="live" title="This list updates every second"><span class="live-dot"></span>Live</span>
    </div>
    <div class="toolbar">
      <${SelectField} label="Status" value=${status} options=${STATUS_OPTIONS}
        onValue=${(value) => { setStatus(value); setPage(1); }} />
    </div>
    <${FormError} error=${error} />
    ${loading ? html`<${Loading} what="Loading deliveries" />` : null}
    ${!loading && entries.length === 0 && page === 1 ? html`<${EmptyState} title=${status ? `No ${status} deliveries` : 'No deliveries yet'}>
      <p>Mail sent to <span class="mono">${webhook.address}</span> shows up here within a second or two, as it is delivered.</p>
      <p>No mail at hand? <a href=${href('webhooks', webhook.id, 'test')}>Send a test message</a>.</p>
    </${EmptyState}>` : null}
    ${entries.length > 0 ? html`<${DeliveryTable} entries=${entries} />` : null}
    ${page > 1 || entries.length === PAGE_SIZE ? html`<div class="pager">
      <button type="button" class="button button-secondary button-small" disabled=${page === 1}
        onClick=${() => setPage(page - 1)}>Newer</button>
      <span>Page ${page}</span>
      <button type="button" class="button button-secondary button-small" disabled=${entries.length < PAGE_SIZE}
        onClick=${() => setPage(page + 1)}>Older</button>
    </div>` : null}
  </section>`;
}
