// The webhooks list, and the page that creates one.
import { html } from '../lib.js';
import * as api from '../api.js';
import { href, navigate } from '../router.js';
import { Badge, EmptyState, FormError, Loading, PageHeader, useLoad } from '../components.js';
import { WebhookForm } from './webhook-form.js';

async function loadAll() {
  const [webhooks, domains, policies] = await Promise.all([
    api.get('/webhooks'), api.get('/domains'), api.get('/smtp-policies'),
  ]);
  return { webhooks, domains, policies };
}

export function usableDomains(domains) {
  return (domains || []).filter((domain) => domain.verified || domain.is_public);
}

export function Webhooks() {
  const { data, error, loading } = useLoad(loadAll);
  const policyName = (id) => {
    const policy = data && data.policies.find((p) => p.id === id);
    return policy ? policy.name : '—';
  };
  return html`<div class="page">
    <${PageHeader} title="Webhooks">
      <a class="button button-primary" href="#/webhooks/new">Create webhook</a>
    </${PageHeader}>
    <${FormError} error=${error} />
    ${loading ? html`<${Loading} />` : null}
    ${data && data.webhooks.length === 0 ? html`<${EmptyState} title="No webhooks yet">
      <p>A webhook turns mail to one of your addresses into an HTTP POST to your application.</p>
      ${usableDomains(data.domains).length === 0
        ? html`<p>First you need a domain: <a href="#/domains">add a domain</a> you own.</p>`
        : html`<p>You can receive mail at ${usableDomains(data.domains).map((d) => d.name).join(', ')}.
            <a href="#/webhooks/new">Create your first webhook</a>.</p>`}
    </${EmptyState}>` : null}
    ${data && data.webhooks.length > 0 ? html`<div class="table-wrap"><table class="table">
      <caption class="visually-hidden">Your webhooks</caption>
      <thead><tr><th scope="col">Name</th><th scope="col">Address</th><th scope="col">Target URL</th>
        <th scope="col">SMTP policy</th><th scope="col">Status</th></tr></thead>
      <tbody>
        ${data.webhooks.map((webhook) => html`<tr>
          <td><a href=${href('webhooks', webhook.id)}>${webhook.name}</a></td>
          <td class="mono">${webhook.address}</td>
          <td class="mono truncate">${webhook.target_url}</td>
          <td>${policyName(webhook.smtp_security_policy_id)}</td>
          <td>${webhook.active ? html`<${Badge} kind="good">active</${Badge}>` : html`<${Badge} kind="neutral">inactive</${Badge}>`}</td>
        </tr>`)}
      </tbody>
    </table></div>` : null}
  </div>`;
}

export function NewWebhook() {
  const { data, error, loading } = useLoad(loadAll);
  return html`<div class="page">
    <${PageHeader} title="Create webhook" />
    <p class="muted"><a href="#/webhooks">Webhooks</a> / new</p>
    <${FormError} error=${error} />
    ${loading ? html`<${Loading} />` : null}
    ${data ? html`<section class="card">
      ${usableDomains(data.domains).length === 0 ? html`<p class="notice notice-warn">You have no domain to receive
        mail on yet. <a href="#/domains">Add a domain</a> first.</p>` : null}
      <${WebhookForm} webhook=${null} domains=${data.domains} policies=${data.policies}
        onSaved=${(webhook) => navigate(`/webhooks/${encodeURIComponent(webhook.id)}`)} />
    </section>` : null}
  </div>`;
}
