// One webhook: its live deliveries, its settings (with the signing secret) and a test message.
import { html, useState } from '../lib.js';
import * as api from '../api.js';
import { href, navigate } from '../router.js';
import {
  Badge, Button, ConfirmButton, CopyButton, Details, FormError, Loading, PageHeader, Section, TextArea, TextField,
  useAction, useLoad,
} from '../components.js';
import { DeliveryList } from './deliveries.js';
import { WebhookForm } from './webhook-form.js';

const TABS = [
  ['deliveries', 'Deliveries'],
  ['settings', 'Settings'],
  ['test', 'Send a test message'],
];

function SigningSecret({ secret }) {
  const [shown, setShown] = useState(false);
  return html`<${Section} title="Signing secret"
      description="Every delivery carries Standard Webhooks signature headers made with this secret. Check them in your endpoint.">
    <div class="secret-row">
      <code class="secret" data-testid="signing-secret">${shown ? secret : '•'.repeat(24)}</code>
      <${Button} kind="secondary" small onClick=${() => setShown(!shown)}>${shown ? 'Hide secret' : 'Reveal secret'}</${Button}>
      <${CopyButton} text=${secret} what="signing secret" />
    </div>
  </${Section}>`;
}

function SettingsTab({ webhook, domains, policies, onSaved }) {
  const remove = useAction(async () => {
    await api.del(`/webhooks/${encodeURIComponent(webhook.id)}`);
    navigate('/webhooks');
  });
  return html`
    <section class="card" aria-label="Settings">
      <h2>Settings</h2>
      <${WebhookForm} webhook=${webhook} domains=${domains} policies=${policies} onSaved=${onSaved} />
    </section>
    <${SigningSecret} secret=${webhook.secret} />
    <${Section} title="Delete webhook" description="Mail to this address will be refused; its delivery log is deleted.">
      <${ConfirmButton} label="Delete webhook" confirmLabel="Delete for good" question=${`Delete ${webhook.name}?`}
        busy=${remove.busy} onConfirm=${remove.run} />
      <${FormError} error=${remove.error} />
    </${Section}>`;
}

function outcomeText(outcome) {
  if (outcome.http_status >= 200 && outcome.http_status < 300) {
    return `Delivered: your endpoint answered HTTP ${outcome.http_status} in ${outcome.duration_ms} ms.`;
  }
  if (outcome.http_status) return `Not delivered: your endpoint answered HTTP ${outcome.http_status} in ${outcome.duration_ms} ms.`;
  return `Not delivered: no HTTP answer after ${outcome.duration_ms} ms.`;
}

function TestTab({ webhook }) {
  const [from, setFrom] = useState('Ada Lovelace <ada@example.com>');
  const [subject, setSubject] = useState('Hello from Conduit');
  const [text, setText] = useState('This is a test message sent from the Conduit dashboard.');
  const [outcome, setOutcome] = useState(null);
  const send = useAction(async () => {
    setOutcome(null);
    setOutcome(await api.post(`/webhooks/${encodeURIComponent(webhook.id)}/simulate`, { from, subject, text }));
  });
  const delivered = outcome && outcome.http_status >= 200 && outcome.http_status < 300;
  return html`<section class="card" aria-label="Send a test message">
    <h2>Send a test message</h2>
    <p class="muted">Conduit builds a message from these fields and POSTs it to ${webhook.target_url} exactly like real
      mail, signed, with your template. It is logged as simulated.</p>
    <form class="form" onSubmit=${send.run} novalidate>
      <div class="form-grid">
        <${TextField} label="From" value=${from} onValue=${setFrom} autocomplete="off" />
        <${TextField} label="Subject" value=${subject} onValue=${setSubject} autocomplete="off" />
      </div>
      <${TextArea} label="Text" value=${text} onValue=${setText} rows=${4} />
      <${FormError} error=${send.error} />
      <div class="form-actions"><${Button} type="submit" busy=${send.busy}>Send test message</${Button}></div>
    </form>
    ${outcome ? html`<div class=${`outcome ${delivered ? 'outcome-good' : 'outcome-bad'}`} role="status">
      <p><strong>${outcomeText(outcome)}</strong></p>
      ${outcome.error ? html`<p class="mono">${outcome.error}</p>` : null}
      <p><a href=${href('webhooks', webhook.id)}>See it in the deliveries</a></p>
    </div>` : null}
  </section>`;
}

export function WebhookPage({ params }) {
  const tab = TABS.some(([key]) => key === params.tab) ? params.tab : 'deliveries';
  const { data, error, loading, reload } = useLoad(async () => {
    const [webhook, domains, policies] = await Promise.all([
      api.get(`/webhooks/${encodeURIComponent(params.id)}`), api.get('/domains'), api.get('/smtp-policies'),
    ]);
    return { webhook, domains, policies };
  }, [params.id]);
  const webhook = data && data.webhook;
  return html`<div class="page">
    <${PageHeader} title=${webhook ? webhook.name : 'Webhook'}>
      ${webhook ? (webhook.active ? html`<${Badge} kind="good">active</${Badge}>` : html`<${Badge} kind="neutral">inactive</${Badge}>`) : null}
    </${PageHeader}>
    <p class="muted breadcrumbs"><a href="#/webhooks">Webhooks</a> / ${webhook ? webhook.address : params.id}</p>
    ${loading ? html`<${Loading} />` : null}
    <${FormError} error=${error} />
    ${webhook ? html`
      <${Details} rows=${[['Address', webhook.address], ['Target URL', webhook.target_url]]} />
      <nav class="tabs" aria-label="Webhook sections">
        ${TABS.map(([key, label]) => html`<a href=${key === 'deliveries' ? href('webhooks', webhook.id) : href('webhooks', webhook.id, key)}
          aria-current=${tab === key ? 'page' : undefined}>${label}</a>`)}
      </nav>
      ${tab === 'deliveries' ? html`<${DeliveryList} webhook=${webhook} />` : null}
      ${tab === 'settings' ? html`<${SettingsTab} webhook=${webhook} domains=${data.domains} policies=${data.policies}
        onSaved=${() => reload()} />` : null}
      ${tab === 'test' ? html`<${TestTab} webhook=${webhook} />` : null}
    ` : null}
  </div>`;
}
