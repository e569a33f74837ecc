// Domains: claim one, publish the two DNS records shown, verify; public domains are listed too.
import { html, useState } from '../lib.js';
import * as api from '../api.js';
import { formatTime } from '../format.js';
import {
  Badge, Button, ConfirmButton, CopyButton, EmptyState, FormError, Loading, PageHeader, Section, TextField,
  useAction, useLoad,
} from '../components.js';

function RecordsTable({ domain }) {
  return html`<div class="table-wrap"><table class="table records">
    <caption class="visually-hidden">DNS records for ${domain.name}</caption>
    <thead><tr><th scope="col">Type</th><th scope="col">Name</th><th scope="col">Priority</th><th scope="col">Value</th></tr></thead>
    <tbody>
      ${domain.dns_records.map((record) => html`<tr>
        <td><strong>${record.type}</strong></td>
        <td><span class="copyable"><code>${record.name}</code><${CopyButton} text=${record.name} what=${`${record.type} name`} /></span></td>
        <td>${record.priority === null || record.priority === undefined ? '—' : String(record.priority)}</td>
        <td><span class="copyable"><code>${record.value}</code><${CopyButton} text=${record.value} what=${`${record.type} value`} /></span></td>
      </tr>`)}
    </tbody>
  </table></div>`;
}

function DomainCard({ domain, onChanged }) {
  const [verifiedNow, setVerifiedNow] = useState(false);
  const verify = useAction(async () => {
    await api.post(`/domains/${encodeURIComponent(domain.id)}/verify`);
    setVerifiedNow(true);
    await onChanged();
  });
  const remove = useAction(async () => {
    await api.del(`/domains/${encodeURIComponent(domain.id)}`);
    await onChanged();
  });
  if (domain.is_public) {
    return html`<article class="card domain" aria-label=${domain.name}>
      <div class="card-header"><h2 class="mono">${domain.name}</h2><${Badge} kind="info">public</${Badge}></div>
      <p class="muted">A shared domain offered by this Conduit: create webhooks on it right away, no DNS needed.
        Catch-all addresses (*@) are only for your own domains.</p>
    </article>`;
  }
  return html`<article class="card domain" aria-label=${domain.name}>
    <div class="card-header">
      <h2 class="mono">${domain.name}</h2>
      ${domain.verified ? html`<${Badge} kind="good">verified</${Badge}>` : html`<${Badge} kind="warn">pending verification</${Badge}>`}
    </div>
    ${domain.verified
      ? html`${verifiedNow ? html`<p class="notice notice-success" role="status">Verified. You can create webhooks on ${domain.name} now.</p>` : null}
        <details><summary>DNS records (keep them published)</summary><${RecordsTable} domain=${domain} /></details>`
      : html`<p>Publish these two records at your DNS provider, then verify. DNS changes can take a few minutes to show.</p>
        <${RecordsTable} domain=${domain} />
        <div class="form-actions">
          <${Button} onClick=${verify.run} busy=${verify.busy}>Verify</${Button}>
        </div>
        <${FormError} error=${verify.error} />`}
    <div class="card-footer">
      <span class="muted">Claimed ${formatTime(domain.created_at)}</span>
      <${ConfirmButton} label="Delete domain" confirmLabel="Delete domain and its webhooks"
        question=${`Delete ${domain.name}? Its webhooks are deleted too.`} busy=${remove.busy} onConfirm=${remove.run} />
    </div>
    <${FormError} error=${remove.error} />
  </article>`;
}

export function Domains() {
  const { data, error, loading, reload } = useLoad(() => api.get('/domains'));
  const [name, setName] = useState('');
  const add = useAction(async () => {
    await api.post('/domains', { name: name.trim() });
    setName('');
    await reload();
  });
  const own = (data || []).filter((domain) => !domain.is_public);
  const shared = (data || []).filter((domain) => domain.is_public);
  return html`<div class="page">
    <${PageHeader} title="Domains" />
    <${Section} title="Add a domain"
        description="Receive mail for every address of a domain you own. Best a subdomain such as mail.example.com, whose MX records nothing else needs.">
      <form class="inline-form" onSubmit=${add.run} novalidate>
        <${TextField} label="Domain name" value=${name} onValue=${setName} placeholder="mail.example.com"
          autocomplete="off" spellcheck=${false} required />
        <${Button} type="submit" busy=${add.busy}>Add domain</${Button}>
      </form>
      <${FormError} error=${add.error} />
    </${Section}>
    <${FormError} error=${error} />
    ${loading ? html`<${Loading} />` : null}
    ${data && own.length === 0 ? html`<${EmptyState} title="No domain of your own yet">
      <p>Add one above and publish the two DNS records Conduit shows you.</p>
      ${shared.length > 0 ? html`<p>Or start right away on a public domain: create a webhook for an address at
        ${shared.map((domain) => domain.name).join(', ')} on the <a href="#/webhooks/new">new webhook</a> page.</p>` : null}
    </${EmptyState}>` : null}
    ${own.map((domain) => html`<${DomainCard} key=${domain.id} domain=${domain} onChanged=${reload} />`)}
    ${shared.length > 0 ? html`<h2 class="section-title">Public domains</h2>` : null}
    ${shared.map((domain) => html`<${DomainCard} key=${domain.id} domain=${domain} onChanged=${reload} />`)}
  </div>`;
}
