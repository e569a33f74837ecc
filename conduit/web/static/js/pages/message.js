// One stored message: its headers, text and HTML, attachments, sender authentication, and every
// delivery attempt with the receiver's answer; redeliver or erase it.
//
// The HTML is untrusted. It is shown in an iframe sandboxed without scripts, forms or the
// dashboard's origin, from srcdoc under its own CSP that loads nothing remote (images only as
// data: URLs), so a hostile mail can neither run code nor tell its sender it was opened.
import { html, useCallback, useMemo, useState } from '../lib.js';
import * as api from '../api.js';
import { href, navigate } from '../router.js';
import { formatTime, plural } from '../format.js';
import {
  Button, ConfirmButton, Details, EmptyState, FormError, Loading, Notice, PageHeader, Section, StatusBadge,
  useAction, useLoad, usePolling,
} from '../components.js';
import { MessageStatus } from './messages.js';

const POLL_MS = 1000;  // a redelivery's attempt shows within about two seconds
const FRAME_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'";

// The dashboard's CSP allows this one Trusted Types policy: it only ever feeds the sandboxed frame.
const framePolicy = window.trustedTypes
  ? window.trustedTypes.createPolicy('conduit-mail-frame', { createHTML: (markup) => markup })
  : { createHTML: (markup) => markup };

/** The mail's HTML as a document of its own that can load nothing (the meta CSP comes first). */
export function frameDocument(markup) {
  return framePolicy.createHTML(`<!DOCTYPE html><html><head><meta charset="utf-8">`
    + `<meta http-equiv="Content-Security-Policy" content="${FRAME_CSP}"><base target="_blank"></head>`
    + `<body>${markup}</body></html>`);
}

function HtmlBody({ markup }) {
  const document = useMemo(() => frameDocument(markup), [markup]);  // the same value: no reload on each poll
  return html`<iframe class="mail-frame" title="HTML body of the message" sandbox="" referrerpolicy="no-referrer"
    srcdoc=${document}></iframe>`;
}

function Attachments({ messageId, attachments }) {
  const [error, setError] = useState(null);
  const save = async (index) => {
    setError(null);
    try {
      const { blob, filename } = await api.download(
        `/messages/${encodeURIComponent(messageId)}/attachments/${index}`);
      const url = URL.createObjectURL(blob);
      const link = document.createElement('a');
      link.href = url;
      link.download = filename;
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    } catch (caught) {
      setError(caught);
    }
  };
  if (attachments.length === 0) return html`<p class="muted">No attachments.</p>`;
  return html`<ul class="attachments">
    ${attachments.map((attachment, index) => html`<li key=${index}>
      <span class="mono">${attachment.filename || `attachment ${index + 1}`}</span>
      <span class="muted"> ${attachment.content_type}, ${plural(attachment.size, 'byte')}</span>
      <${Button} kind="secondary" small aria-label=${`Download ${attachment.filename || `attachment ${index + 1}`}`}
        onClick=${() => save(index)}>Download</${Button}>
    </li>`)}
  </ul><${FormError} error=${error} />`;
}

function Authentication({ auth }) {
  if (!auth) return html`<p class="muted">Not checked.</p>`;
  const dkim = auth.dkim.length === 0 ? 'none'
    : auth.dkim.map((signature) => `${signature.result} (${signature.domain || '?'})`).join(', ');
  return html`<${Details} rows=${[
    ['SPF', `${auth.spf.result}${auth.spf.domain ? ` (${auth.spf.domain})` : ''}`],
    ['DKIM', dkim],
    ['DMARC', `${auth.dmarc.result}${auth.dmarc.domain ? ` (${auth.dmarc.domain})` : ''}`],
  ]} />`;
}

function Attempts({ attempts }) {
  if (attempts.length === 0) return html`<p class="muted">No attempt yet.</p>`;
  return html`<div class="table-wrap"><table class="table">
    <caption class="visually-hidden">Delivery attempts, oldest first</caption>
    <thead><tr><th scope="col">Time</th><th scope="col">Status</th><th scope="col">HTTP</th>
      <th scope="col">Receiver's answer</th></tr></thead>
    <tbody>${attempts.map((attempt) => html`<tr key=${attempt.id} data-log-id=${attempt.id}>
      <td class="nowrap"><a href=${href('webhooks', attempt.webhook_id, 'logs', attempt.id)}>${formatTime(attempt.attempted_at)}</a></td>
      <td class="nowrap"><${StatusBadge} status=${attempt.status} /></td>
      <td class="mono nowrap">${attempt.http_status || '—'}</td>
      <td><span class="mono excerpt" data-testid="attempt-response">${attempt.response_excerpt || ''}</span>
        ${attempt.error ? html`<span class="muted"> ${attempt.error}</span>` : null}</td>
    </tr>`)}</tbody>
  </table></div>`;
}

function Deliveries({ deliveries }) {
  if (deliveries.length === 0) return html`<p class="muted">No delivery.</p>`;
  return deliveries.map((delivery) => html`<div class="delivery" key=${delivery.job_id}>
    <h3><a href=${href('webhooks', delivery.webhook_id)}>${delivery.address}</a> <${MessageStatus} status=${delivery.status} /></h3>
    <p class="muted">${plural(delivery.attempt_count, 'attempt')} in the latest delivery${delivery.next_attempt_at
      ? `, next at ${formatTime(delivery.next_attempt_at)}` : ''}.${delivery.last_error ? ` ${delivery.last_error}` : ''}</p>
    <${Attempts} attempts=${delivery.attempts} />
  </div>`);
}

export function MessagePage({ params }) {
  const path = `/messages/${encodeURIComponent(params.id)}`;
  const loader = useCallback(() => api.get(path), [path]);
  const { data, error, loading, reload } = useLoad(loader, [loader]);
  usePolling(reload, POLL_MS, [reload]);
  const [queued, setQueued] = useState(null);
  const redeliver = useAction(async () => {
    setQueued(null);
    const result = await api.post(`${path}/redeliver`);
    setQueued(result);
    await reload();
  });
  const remove = useAction(async () => {
    await api.del(path);
    navigate('/messages');
  });
  const payload = data ? data.payload : null;
  const headers = payload ? payload.headers : [];
  return html`<div class="page">
    <${PageHeader} title=${data ? (data.subject || '(no subject)') : 'Message'}>
      ${data ? html`<${MessageStatus} status=${data.status} />` : null}
    </${PageHeader}>
    <p class="muted breadcrumbs"><a href="#/messages">Messages</a> / <span class="mono">${params.id}</span></p>
    <${FormError} error=${error} />
    ${loading ? html`<${Loading} />` : null}
    ${!loading && !data && error ? html`<${EmptyState} title="Message not found">
      <p>Messages are kept for a few days after they arrive. <a href="#/messages">Back to Messages</a>.</p>
    </${EmptyState}>` : null}
    ${data ? html`
      <${Section} title="Envelope">
        <${Details} rows=${[
          ['Received', formatTime(data.received_at)], ['From', data.mail_from || '—'], ['To', data.rcpt_to.join(', ')],
          ['Size', plural(data.size, 'byte')], ['Sending server', `${data.envelope.remote_ip} (${data.envelope.helo || 'no HELO'})`],
          ['TLS', data.envelope.tls ? 'yes' : 'no'], ['Message ID', data.id],
        ]} />
        <div class="form-actions">
          <${Button} busy=${redeliver.busy} onClick=${redeliver.run}>Redeliver</${Button}>
          <${ConfirmButton} label="Delete message" confirmLabel="Delete for good" busy=${remove.busy}
            question="Delete this message and its queued deliveries?" onConfirm=${remove.run} />
        </div>
        ${queued ? html`<${Notice}>Queued again: ${plural(queued.deliveries.length, 'delivery', 'deliveries')}.</${Notice}>` : null}
        <${FormError} error=${redeliver.error || remove.error} />
      </${Section}>
      ${data.payload_error ? html`<${Notice} kind="warn">${data.payload_error}</${Notice}>` : null}
      ${payload ? html`
        <${Section} title="Text">
          ${payload.text ? html`<pre class="mail-text" data-testid="message-text">${payload.text}</pre>`
            : html`<p class="muted">No text part.</p>`}
        </${Section}>
        <${Section} title="HTML" description="Shown without scripts, forms or remote content.">
          ${payload.html ? html`<${HtmlBody} markup=${payload.html} />` : html`<p class="muted">No HTML part.</p>`}
        </${Section}>
        <${Section} title="Attachments"><${Attachments} messageId=${data.id} attachments=${payload.attachments} /></${Section}>
        <${Section} title="Authentication"><${Authentication} auth=${payload.auth} /></${Section}>
        <${Section} title="Headers">
          <details><summary>${plural(headers.length, 'header')}</summary>
            <${Details} rows=${headers.map((header) => [header.name, header.value])} />
          </details>
        </${Section}>` : null}
      <${Section} title="Deliveries"><${Deliveries} deliveries=${data.deliveries} /></${Section}>
    ` : null}
  </div>`;
}
