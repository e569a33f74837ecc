// SMTP security policies: who may send mail to the webhooks that use one.
import { html, useState } from '../lib.js';
import * as api from '../api.js';
import { href, navigate } from '../router.js';
import { formatTime } from '../format.js';
import {
  Badge, Button, Checkbox, ConfirmButton, EmptyState, FormError, FormProblem, Loading, PageHeader, Section, SelectField,
  TextField, useAction, useLoad,
} from '../components.js';

/** `user:password` shown as `user:********`, whatever the API answered. */
export function maskCredentials(credentials) {
  if (!credentials) return '';
  const colon = credentials.indexOf(':');
  return colon < 0 ? '********' : `${credentials.slice(0, colon)}:********`;
}

const SPAM_ACTIONS = [
  { value: 'deliver', label: 'Deliver (mark the score in the payload)' },
  { value: 'reject', label: 'Reject at SMTP (550)' },
];

function requirements(policy) {
  const items = [];
  if (policy.allowed_source_ips) items.push(`source IPs ${policy.allowed_source_ips}`);
  if (policy.require_smtp_auth) items.push('SMTP AUTH');
  if (policy.require_spf) items.push(policy.allowed_spf_domains ? `SPF from ${policy.allowed_spf_domains}` : 'SPF');
  if (policy.require_dkim) items.push(policy.allowed_dkim_domains ? `DKIM by ${policy.allowed_dkim_domains}` : 'DKIM');
  return items.length ? items.join(' · ') : 'no requirement';
}

export function Policies() {
  const { data, error, loading } = useLoad(() => api.get('/smtp-policies'));
  return html`<div class="page">
    <${PageHeader} title="SMTP policies">
      <a class="button button-primary" href="#/policies/new">Create policy</a>
    </${PageHeader}>
    <p class="muted">A policy restricts who may send to the webhooks that use it. Mail that breaks it is refused at SMTP
      and shows in the webhook's deliveries as rejected.</p>
    <${FormError} error=${error} />
    ${loading ? html`<${Loading} />` : null}
    ${data && data.length === 0 ? html`<${EmptyState} title="No policies yet">
      <p>Without a policy, a webhook accepts mail from any sender. <a href="#/policies/new">Create a policy</a> to
        require SMTP AUTH, SPF, DKIM or certain source IPs.</p>
    </${EmptyState}>` : null}
    ${data && data.length > 0 ? html`<div class="table-wrap"><table class="table">
      <caption class="visually-hidden">Your SMTP policies</caption>
      <thead><tr><th scope="col">Name</th><th scope="col">Requires</th><th scope="col">SMTP credentials</th><th scope="col">Updated</th></tr></thead>
      <tbody>${data.map((policy) => html`<tr>
        <td><a href=${href('policies', policy.id)}>${policy.name}</a></td>
        <td>${requirements(policy)}</td>
        <td class="mono">${policy.smtp_credentials ? maskCredentials(policy.smtp_credentials) : '—'}</td>
        <td class="nowrap">${formatTime(policy.updated_at)}</td>
      </tr>`)}</tbody>
    </table></div>` : null}
  </div>`;
}

function PolicyForm({ policy, onSaved }) {
  const [name, setName] = useState(policy ? policy.name : '');
  const [sourceIps, setSourceIps] = useState(policy ? policy.allowed_source_ips : '');
  const [requireSpf, setRequireSpf] = useState(policy ? policy.require_spf : false);
  const [spfDomains, setSpfDomains] = useState(policy ? policy.allowed_spf_domains : '');
  const [requireDkim, setRequireDkim] = useState(policy ? policy.require_dkim : false);
  const [dkimDomains, setDkimDomains] = useState(policy ? policy.allowed_dkim_domains : '');
  const [requireAuth, setRequireAuth] = useState(policy ? policy.require_smtp_auth : false);
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [removeCredentials, setRemoveCredentials] = useState(false);
  const [spamAction, setSpamAction] = useState(policy && policy.spam_action ? policy.spam_action : 'deliver');
  const [spamThreshold, setSpamThreshold] = useState(
    policy && policy.spam_threshold !== null && policy.spam_threshold !== undefined ? String(policy.spam_threshold) : '');
  const [saved, setSaved] = useState(false);
  const current = policy && policy.smtp_credentials ? maskCredentials(policy.smtp_credentials) : '';

  const save = useAction(async () => {
    setSaved(false);
    const fields = {
      name: name.trim(), allowed_source_ips: sourceIps.trim(), require_spf: requireSpf,
      allowed_spf_domains: spfDomains.trim(), require_dkim: requireDkim, allowed_dkim_domains: dkimDomains.trim(),
      require_smtp_auth: requireAuth, spam_action: spamAction,
    };
    if (spamThreshold.trim() !== '') {
      fields.spam_threshold = Number(spamThreshold.trim());
      if (!Number.isFinite(fields.spam_threshold)) throw new FormProblem('The spam threshold must be a number.');
    } else if (policy && policy.spam_threshold !== null && policy.spam_threshold !== undefined) {
      fields.clear_spam_threshold = true;  // emptied: the spam checker's own verdict applies again
    }
    if (removeCredentials) fields.smtp_credentials = '';
    else if (username || password) fields.smtp_credentials = `${username}:${password}`;
    const result = policy
      ? await api.put(`/smtp-policies/${encodeURIComponent(policy.id)}`, fields)
      : await api.post('/smtp-policies', fields);
    setUsername('');
    setPassword('');
    setRemoveCredentials(false);
    setSaved(true);
    onSaved(result);
  });

  return html`<form class="form" onSubmit=${save.run} novalidate>
    <${TextField} label="Name" value=${name} onValue=${setName} required autocomplete="off" />
    <${TextField} label="Allowed source IPs" value=${sourceIps} onValue=${setSourceIps} autocomplete="off" spellcheck=${false}
      placeholder="192.0.2.10, 198.51.100.0/24" hint="IPs and CIDR ranges, comma- or space-separated. Empty: any." />
    <fieldset class="fieldset">
      <legend>SMTP authentication</legend>
      <${Checkbox} label="Require SMTP AUTH" checked=${requireAuth} onValue=${setRequireAuth}
        hint="Senders must log in (after STARTTLS) with these credentials." />
      ${current ? html`<p>Current credentials: <code data-testid="current-credentials">${current}</code></p>` : null}
      <div class="form-grid">
        <${TextField} label="SMTP username" value=${username} onValue=${setUsername} autocomplete="off"
          hint=${current ? 'Leave both empty to keep the current credentials.' : undefined} />
        <${TextField} label="SMTP password" type="password" value=${password} onValue=${setPassword} autocomplete="new-password" />
      </div>
      ${current ? html`<${Checkbox} label="Remove the credentials" checked=${removeCredentials} onValue=${setRemoveCredentials} />` : null}
    </fieldset>
    <fieldset class="fieldset">
      <legend>SPF and DKIM</legend>
      <${Checkbox} label="Require SPF" checked=${requireSpf} onValue=${setRequireSpf} />
      <${TextField} label="Allowed SPF domains" value=${spfDomains} onValue=${setSpfDomains} autocomplete="off" spellcheck=${false}
        hint="Optional: only these domains (and their subdomains) may pass SPF." />
      <${Checkbox} label="Require DKIM" checked=${requireDkim} onValue=${setRequireDkim} />
      <${TextField} label="Allowed DKIM domains" value=${dkimDomains} onValue=${setDkimDomains} autocomplete="off" spellcheck=${false}
        hint="Optional: only signatures by these domains count." />
    </fieldset>
    <fieldset class="fieldset">
      <legend>Spam</legend>
      <${SelectField} label="Spam action" value=${spamAction} onValue=${setSpamAction} options=${SPAM_ACTIONS}
        hint="What happens to mail the spam check scores at or above the threshold." />
      <${TextField} label="Spam threshold" type="number" step="any" value=${spamThreshold} onValue=${setSpamThreshold}
        autocomplete="off" hint="Optional: the score from which mail counts as spam. Empty: the spam checker's own verdict." />
    </fieldset>
    <${FormError} error=${save.error} />
    ${saved && !save.error && policy ? html`<p class="notice notice-success" role="status">Saved.</p>` : null}
    <div class="form-actions"><${Button} type="submit" busy=${save.busy}>${policy ? 'Save policy' : 'Create policy'}</${Button}></div>
  </form>`;
}

export function PolicyPage({ params }) {
  const isNew = !params.id;
  const { data, error, loading, reload } = useLoad(
    () => (isNew ? Promise.resolve(null) : api.get(`/smtp-policies/${encodeURIComponent(params.id)}`)), [params.id]);
  const remove = useAction(async () => {
    await api.del(`/smtp-policies/${encodeURIComponent(params.id)}`);
    navigate('/policies');
  });
  return html`<div class="page">
    <${PageHeader} title=${isNew ? 'Create SMTP policy' : (data ? data.name : 'SMTP policy')}>
      ${data && data.require_smtp_auth ? html`<${Badge} kind="info">SMTP AUTH</${Badge}>` : null}
    </${PageHeader}>
    <p class="muted breadcrumbs"><a href="#/policies">Policies</a> / ${isNew ? 'new' : (data ? data.name : params.id)}</p>
    <${FormError} error=${error} />
    ${loading ? html`<${Loading} />` : null}
    ${!loading && (isNew || data) ? html`<section class="card">
      <${PolicyForm} policy=${data} onSaved=${(policy) => (isNew ? navigate(`/policies/${encodeURIComponent(policy.id)}`) : reload())} />
    </section>` : null}
    ${data ? html`<${Section} title="Delete policy" description="Webhooks using it then accept mail without a policy.">
      <${ConfirmButton} label="Delete policy" confirmLabel="Delete for good" question=${`Delete ${data.name}?`}
        busy=${remove.busy} onConfirm=${remove.run} />
      <${FormError} error=${remove.error} />
    </${Section}>` : null}
  </div>`;
}
