// Messages: the stored mail of the account (GET /messages), newest first, live, with filters;
// refused mail (status=refused) with why and the reply the sender got. New users get the three
// steps to their first delivery instead.
import { html, useCallback, useState } from '../lib.js';
import * as api from '../api.js';
import { href } from '../router.js';
import { formatTime } from '../format.js';
import {
  Badge, EmptyState, FormError, Loading, PageHeader, SelectField, TextField, usePolling, useLoad,
} from '../components.js';
import { usableDomains } from './webhooks.js';

const POLL_MS = 1000;  // like the deliveries list: new mail shows within about two seconds
const ROWS = 50;

function Step({ done, title, children }) {
  return html`<li class=${done ? 'step step-done' : 'step'}>
    <span class="step-mark" aria-hidden="true">${done ? '✓' : ''}</span>
    <div><strong>${title}</strong>${done ? html`<span class="visually-hidden"> (done)</span>` : null}<p>${children}</p></div>
  </li>`;
}

function GettingStarted({ webhooks, domains }) {
  const usable = usableDomains(domains);
  const publicDomain = usable.find((domain) => domain.is_public);
  return html`<${EmptyState} title="Nothing received yet">
    <p>Three steps to your first delivery:</p>
    <ol class="steps">
      <${Step} done=${usable.length > 0} title="A domain to receive mail on">
        ${publicDomain ? `${publicDomain.name} is a public domain: use it right away, no DNS needed. ` : null}
        ${usable.some((d) => !d.is_public)
          ? `Your domains: ${usable.filter((d) => !d.is_public).map((d) => d.name).join(', ')}.`
          : html`<a href="#/domains">Add your own domain</a> and publish two DNS records${publicDomain ? ', if you like' : ''}.`}
      </${Step}>
      <${Step} done=${webhooks.length > 0} title="A webhook">
        ${webhooks.length > 0 ? 'Your webhook is ready.'
          : html`<a href="#/webhooks/new">Create a webhook</a>: an address and the URL to POST its mail to.`}
      </${Step}>
      <${Step} done=${false} title="Mail">
        ${webhooks.length > 0
          ? html`Send mail to <span class="mono">${webhooks[0].address}</span>, or
              <a href=${href('webhooks', webhooks[0].id, 'test')}>send a test message</a>.`
          : 'Send mail to the webhook\'s address; it appears here within seconds.'}
      </${Step}>
    </ol>
  </${EmptyState}>`;
}

export const STATUS_FILTERS = [
  { value: '', label: 'All stored messages' },
  { value: 'delivered', label: 'Delivered' },
  { value: 'pending', label: 'Pending' },
  { value: 'failed', label: 'Failed' },
  { value: 'held', label: 'Held (webhook paused)' },
  { value: 'refused', label: 'Refused at SMTP' },
];
const STATUS_KIND = { delivered: 'good', pending: 'warn', held: 'warn', failed: 'bad', refused: 'bad' };

export function MessageStatus({ status }) {
  return html`<${Badge} kind=${STATUS_KIND[status] || 'neutral'}>${status}</${Badge}>`;
}

function MessageTable({ messages }) {
  const refused = messages.some((message) => message.status === 'refused');
  return html`<div class="table-wrap"><table class="table">
    <caption class="visually-hidden">Messages, newest first</caption>
    <thead><tr>
      <th scope="col">Received</th><th scope="col">Status</th><th scope="col">From</th><th scope="col">To</th>
      <th scope="col">Subject</th>${refused ? html`<th scope="col">Why refused</th>` : null}
    </tr></thead>
    <tbody>
      ${messages.map((message) => html`<tr key=${message.id} data-message-id=${message.id}>
        <td class="nowrap">${message.status === 'refused' ? formatTime(message.received_at)
          : html`<a href=${href('messages', message.id)}>${formatTime(message.received_at)}</a>`}</td>
        <td class="nowrap"><${MessageStatus} status=${message.status} /></td>
        <td class="mono truncate">${message.mail_from || '—'}</td>
        <td class="mono truncate">${message.rcpt_to.join(', ')}</td>
        <td class="truncate">${message.status === 'refused' ? html`<span class="muted">not kept</span>`
          : (message.subject || html`<span class="muted">(no subject)</span>`)}</td>
        ${refused ? html`<td>${message.status === 'refused' ? html`<span class="mono">${message.refusal_reason}</span>:
          <span data-testid="refusal-reply">${message.refusal_reply}</span>${message.refusal_detail
            ? html` <span class="muted">(${message.refusal_detail})</span>` : null}` : null}</td>` : null}
      </tr>`)}
    </tbody>
  </table></div>`;
}

export function Messages() {
  const [status, setStatus] = useState('');
  const [recipient, setRecipient] = useState('');
  const [sender, setSender] = useState('');
  const [subject, setSubject] = useState('');
  const [cursors, setCursors] = useState([null]);  // the cursor of each page seen, for Newer
  const cursor = cursors[cursors.length - 1];
  const filtered = Boolean(status || recipient.trim() || sender.trim() || subject.trim());
  const load = useCallback(async () => {
    const query = { limit: ROWS, status, recipient: recipient.trim(), sender: sender.trim(),
      subject: subject.trim(), cursor };
    const listed = await api.page('/messages', query);
    if (listed.items.length > 0 || cursor !== null) return { messages: listed.items, next: listed.next };
    // Nothing yet: the getting-started steps need the webhooks and domains.
    const [webhooks, domains] = await Promise.all([api.get('/webhooks'), api.get('/domains')]);
    return { messages: listed.items, next: listed.next, webhooks, domains };
  }, [status, recipient, sender, subject, cursor]);
  const { data, error, loading, reload } = useLoad(load, [load]);
  usePolling(reload, POLL_MS, [reload]);
  const refilter = (set) => (value) => { set(value); setCursors([null]); };
  const empty = data && data.messages.length === 0;
  return html`<div class="page">
    <${PageHeader} title="Messages" />
    <p class="muted">The mail your webhooks received, newest first, kept for a few days. This page updates by itself.</p>
    <${FormError} error=${error} />
    ${loading ? html`<${Loading} />` : null}
    ${empty && !filtered && cursor === null ? html`<${GettingStarted} webhooks=${data.webhooks} domains=${data.domains} />` : null}
    <section class="card" aria-label="Stored messages">
      <div class="card-header">
        <h2>Stored messages</h2>
        <span class="live" title="This list updates every second"><span class="live-dot"></span>Live</span>
      </div>
      <div class="toolbar">
        <${SelectField} label="Status" value=${status} options=${STATUS_FILTERS} onValue=${refilter(setStatus)} />
        <${TextField} label="Recipient" value=${recipient} onValue=${refilter(setRecipient)} autocomplete="off" spellcheck=${false} />
        <${TextField} label="Sender" value=${sender} onValue=${refilter(setSender)} autocomplete="off" spellcheck=${false} />
        <${TextField} label="Subject contains" value=${subject} onValue=${refilter(setSubject)} autocomplete="off" />
      </div>
      ${empty ? html`<p class="muted">${filtered ? 'No messages match.' : 'No messages yet.'}</p>` : null}
      ${data && data.messages.length > 0 ? html`<${MessageTable} messages=${data.messages} />` : null}
      ${cursor !== null || (data && data.next) ? html`<div class="pager">
        <button type="button" class="button button-secondary button-small" disabled=${cursor === null}
          onClick=${() => setCursors(cursors.slice(0, -1))}>Newer</button>
        <button type="button" class="button button-secondary button-small" disabled=${!data || !data.next}
          onClick=${() => setCursors([...cursors, data.next])}>Older</button>
      </div>` : null}
    </section>
  </div>`;
}
