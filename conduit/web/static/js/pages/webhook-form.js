// The webhook form, for creating and editing: every field of the API's webhook.
import { html, useState } from '../lib.js';
import * as api from '../api.js';
import {
  Button, Checkbox, FormError, FormProblem, SelectField, TextField, useAction, useId,
} from '../components.js';
import { TemplateEditor } from './template-editor.js';

function headerRows(headers) {
  const rows = Object.entries(headers || {}).map(([name, value]) => ({ name, value }));
  return rows.length ? rows : [];
}

function HeaderRows({ rows, onRows }) {
  const legendId = useId('headers');
  const change = (index, key, value) => onRows(rows.map((row, i) => (i === index ? { ...row, [key]: value } : row)));
  return html`<fieldset class="fieldset" aria-labelledby=${legendId}>
    <legend id=${legendId}>Custom headers</legend>
    <p class="hint">Sent with every delivery, e.g. an Authorization header your endpoint checks.</p>
    ${rows.length === 0 ? html`<p class="muted">No custom headers.</p>` : null}
    ${rows.map((row, index) => html`<div class="header-row">
      <${TextField} label=${`Header ${index + 1} name`} value=${row.name} onValue=${(v) => change(index, 'name', v)}
        autocomplete="off" spellcheck=${false} />
      <${TextField} label=${`Header ${index + 1} value`} value=${row.value} onValue=${(v) => change(index, 'value', v)}
        autocomplete="off" spellcheck=${false} />
      <${Button} kind="secondary" small
        onClick=${() => onRows(rows.filter((_, i) => i !== index))}>${`Remove header ${index + 1}`}</${Button}>
    </div>`)}
    <${Button} kind="secondary" onClick=${() => onRows([...rows, { name: '', value: '' }])}>Add header</${Button}>
  </fieldset>`;
}

function domainHint(domains) {
  const usable = (domains || []).filter((domain) => domain.verified || domain.is_public);
  if (usable.length === 0) return 'You have no domain yet: add one on the Domains page first.';
  const names = usable.map((domain) => (domain.is_public ? `${domain.name} (public)` : domain.name)).join(', ');
  return `name@domain, or *@domain for every address of a domain you verified. Your domains: ${names}.`;
}

/** `webhook` is null for a new webhook. `onSaved(webhook)` gets the API's answer. */
export function WebhookForm({ webhook, domains, policies, onSaved }) {
  const [name, setName] = useState(webhook ? webhook.name : '');
  const [address, setAddress] = useState(webhook ? webhook.address : '');
  const [targetUrl, setTargetUrl] = useState(webhook ? webhook.target_url : '');
  const [active, setActive] = useState(webhook ? webhook.active : true);
  const [rateLimit, setRateLimit] = useState(webhook ? String(webhook.rate_limit) : '0');
  const [policyId, setPolicyId] = useState(webhook && webhook.smtp_security_policy_id ? webhook.smtp_security_policy_id : '');
  const [headers, setHeaders] = useState(headerRows(webhook && webhook.custom_headers));
  const [template, setTemplate] = useState(webhook && webhook.payload_template ? webhook.payload_template : '');
  const [mode, setMode] = useState(webhook ? webhook.delivery_mode : 'queued');
  const [syncTimeout, setSyncTimeout] = useState(webhook ? String(webhook.sync_timeout_ms) : '10000');
  const [saved, setSaved] = useState(false);

  const save = useAction(async () => {
    setSaved(false);
    const limit = Number(rateLimit);
    if (!Number.isInteger(limit) || limit < 0) throw new FormProblem('Rate limit must be a whole number, 0 or more.');
    const timeout = Number(syncTimeout);
    if (mode === 'synchronous' && !Number.isInteger(timeout)) {
      throw new FormProblem('Answer timeout must be a whole number of milliseconds.');
    }
    const custom = {};
    for (const row of headers) {
      if (row.name.trim()) custom[row.name.trim()] = row.value;
    }
    const fields = {
      name: name.trim(), address: address.trim(), target_url: targetUrl.trim(), active, rate_limit: limit,
      custom_headers: custom, payload_template: template, delivery_mode: mode,
    };
    if (mode === 'synchronous') fields.sync_timeout_ms = timeout;
    if (policyId) fields.smtp_security_policy_id = policyId;
    else if (webhook && webhook.smtp_security_policy_id) fields.clear_security_policy = true;
    if (!fields.name) delete fields.name;
    const result = webhook ? await api.put(`/webhooks/${encodeURIComponent(webhook.id)}`, fields) : await api.post('/webhooks', fields);
    setSaved(true);
    onSaved(result);
  });

  const modeOptions = [
    { value: 'queued', label: 'Queued: accept, then deliver with retries' },
    { value: 'synchronous', label: "Synchronous: the endpoint's answer is the SMTP reply" },
  ];
  const policyOptions = [{ value: '', label: 'None (any sender)' },
    ...(policies || []).map((policy) => ({ value: policy.id, label: policy.name }))];

  return html`<form class="form" onSubmit=${save.run} novalidate>
    <div class="form-grid">
      <${TextField} label="Address" value=${address} onValue=${setAddress} required autocomplete="off"
        spellcheck=${false} placeholder="support@in.example" hint=${domainHint(domains)} />
      <${TextField} label="Target URL" type="url" value=${targetUrl} onValue=${setTargetUrl} required
        autocomplete="off" spellcheck=${false} placeholder="https://app.example.com/inbound"
        hint="Conduit POSTs each message here, signed with the webhook's secret." />
      <${TextField} label="Name" value=${name} onValue=${setName} autocomplete="off"
        hint="For you; the address when left empty." />
      <${TextField} label="Rate limit" type="number" min="0" step="1" value=${rateLimit} onValue=${setRateLimit}
        inputmode="numeric" hint="Deliveries per minute; 0 for no limit. Excess deliveries wait, none is dropped." />
      <${SelectField} label="SMTP policy" value=${policyId} onValue=${setPolicyId} options=${policyOptions}
        hint="Restricts who may send to this address (source IPs, SMTP AUTH, SPF, DKIM)." />
      <${SelectField} label="Delivery mode" value=${mode} onValue=${setMode} options=${modeOptions}
        hint="Synchronous: Conduit waits for your endpoint before answering the sender; a 4xx refuses the mail (550), a timeout or 5xx defers it (451)." />
      ${mode === 'synchronous' ? html`<${TextField} label="Answer timeout (ms)" type="number" min="1000" max="60000"
        step="1" value=${syncTimeout} onValue=${setSyncTimeout} inputmode="numeric"
        hint="How long the sender is kept waiting for your endpoint: 1,000 to 60,000 ms." />` : null}
      <${Checkbox} label="Active" checked=${active} onValue=${setActive}
        hint="An inactive webhook refuses new mail; mail already queued waits until it is active again." />
    </div>
    <${HeaderRows} rows=${headers} onRows=${setHeaders} />
    <${TemplateEditor} template=${template} onTemplate=${setTemplate} webhook=${webhook} address=${address} />
    <${FormError} error=${save.error} />
    ${saved && !save.error && webhook ? html`<p class="notice notice-success" role="status">Saved.</p>` : null}
    <div class="form-actions">
      <${Button} type="submit" busy=${save.busy}>${webhook ? 'Save webhook' : 'Create webhook'}</${Button}>
    </div>
  </form>`;
}
