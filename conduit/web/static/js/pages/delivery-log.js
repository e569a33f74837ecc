// One delivery attempt with every field the API gives, and redelivery of its message.
import { html, useState } from '../lib.js';
import * as api from '../api.js';
import { href } from '../router.js';
import { formatTime } from '../format.js';
import {
  Button, Details, FormError, Loading, Notice, PageHeader, Section, StatusBadge, useAction, useLoad,
} from '../components.js';

export function DeliveryLogPage({ params }) {
  const base = `/webhooks/${encodeURIComponent(params.id)}`;
  const { data, error, loading } = useLoad(async () => {
    const [webhook, entry] = await Promise.all([
      api.get(base), api.get(`${base}/logs/${encodeURIComponent(params.logId)}`),
    ]);
    return { webhook, entry };
  }, [params.id, params.logId]);
  const [queued, setQueued] = useState(null);
  const redeliver = useAction(async () => {
    setQueued(null);
    setQueued(await api.post(`${base}/logs/${encodeURIComponent(params.logId)}/redeliver`));
  });
  const entry = data && data.entry;
  return html`<div class="page">
    <${PageHeader} title="Delivery attempt" />
    <p class="muted breadcrumbs"><a href="#/webhooks">Webhooks</a>${' / '}<a href=${href('webhooks', params.id)}>${data ? data.webhook.name : params.id}</a>${` / ${params.logId}`}</p>
    ${loading ? html`<${Loading} />` : null}
    <${FormError} error=${error} />
    ${entry ? html`
      <${Section} title="Attempt">
        <${Details} rows=${[
          ['Status', html`<${StatusBadge} status=${entry.status} />`],
          ['Attempted at', formatTime(entry.attempted_at)],
          ['HTTP status', entry.http_status ? String(entry.http_status) : 'none (no HTTP answer, or refused at SMTP)'],
          ['Duration', `${entry.duration_ms} ms`],
          ['Error', entry.error || 'none'],
          ['Sender', entry.sender || '(null sender)'],
          ['SMTP message ID', entry.smtp_message_id || '—'],
          ['Simulated', entry.simulated ? 'yes: a test message' : 'no'],
          ['Log ID', entry.id],
          ['Webhook ID', entry.webhook_id],
        ]} />
      </${Section}>
      <${Section} title="Response excerpt" description="The start of your endpoint's answer, shown as plain text.">
        ${entry.response_excerpt
          ? html`<pre class="code-block" data-testid="response-excerpt">${entry.response_excerpt}</pre>`
          : html`<p class="muted">No response body was recorded.</p>`}
      </${Section}>
      <${Section} title="Redeliver"
          description="Queue this message for delivery to the webhook again. Possible while Conduit keeps the message (CONDUIT_MESSAGE_RETENTION_DAYS, 3 days by default).">
        <${Button} onClick=${redeliver.run} busy=${redeliver.busy}>Redeliver</${Button}>
        <${FormError} error=${redeliver.error} />
        ${queued ? html`<${Notice}>Queued again as ${queued.job_id}. The new attempt appears in the
          <a href=${href('webhooks', params.id)}>deliveries</a> within seconds.</${Notice}>` : null}
      </${Section}>
    ` : null}
  </div>`;
}
