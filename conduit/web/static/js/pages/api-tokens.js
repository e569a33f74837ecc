// API tokens for scripts and CI: created with allowed IPs and an expiry, shown once, revoked.
import { html, useState } from '../lib.js';
import * as api from '../api.js';
import { formatTime } from '../format.js';
import {
  ConfirmButton, CopyButton, Button, EmptyState, FormError, Loading, PageHeader, Section, SelectField, TextField,
  useAction, useLoad,
} from '../components.js';

const DAY = 24 * 3600;
const EXPIRY_OPTIONS = [
  { value: '0', label: 'Never' },
  { value: String(7 * DAY), label: '7 days' },
  { value: String(30 * DAY), label: '30 days' },
  { value: String(90 * DAY), label: '90 days' },
  { value: String(365 * DAY), label: '1 year' },
];

function NewToken({ token, onDone }) {
  return html`<div class="notice notice-success secret-once" role="status">
    <p><strong>Token ${token.name} created.</strong> Copy it now: it is shown this once and cannot be seen again.</p>
    <div class="secret-row">
      <code class="secret" data-testid="new-api-token">${token.token}</code>
      <${CopyButton} text=${token.token} what="API token" kind="primary" />
    </div>
    <p class="muted">Use it as <code>Authorization: Bearer …</code> on every API request.</p>
    <${Button} kind="secondary" small onClick=${onDone}>Done</${Button}>
  </div>`;
}

function TokenRow({ token, onRevoked }) {
  const revoke = useAction(async () => {
    await api.del(`/accounts/me/api-tokens/${encodeURIComponent(token.id)}`);
    await onRevoked();
  });
  return html`<tr>
    <td>${token.name}</td>
    <td class="mono">${token.allowed_ips.length ? token.allowed_ips.join(', ') : 'any'}</td>
    <td class="nowrap">${formatTime(token.created_at)}</td>
    <td class="nowrap">${token.expires_at ? formatTime(token.expires_at) : 'never'}</td>
    <td class="nowrap">${token.last_used_at ? formatTime(token.last_used_at) : 'never'}</td>
    <td>
      <${ConfirmButton} label="Revoke" name=${`Revoke ${token.name}`} confirmLabel="Revoke token" question=${`Revoke ${token.name}?`}
        busy=${revoke.busy} onConfirm=${revoke.run} />
      <${FormError} error=${revoke.error} />
    </td>
  </tr>`;
}

export function ApiTokens() {
  const { data, error, loading, reload } = useLoad(() => api.get('/accounts/me/api-tokens'));
  const [name, setName] = useState('');
  const [ips, setIps] = useState('');
  const [expiry, setExpiry] = useState(String(90 * DAY));
  const [created, setCreated] = useState(null);
  const create = useAction(async () => {
    setCreated(null);
    const allowed = ips.split(/[\s,]+/).filter(Boolean);
    const token = await api.post('/accounts/me/api-tokens', {
      name: name.trim(), allowed_ips: allowed, expires_in: Number(expiry),
    });
    setCreated(token);
    setName('');
    setIps('');
    await reload();
  });
  return html`<div class="page">
    <${PageHeader} title="API tokens" />
    <p class="muted">Long-lived tokens for scripts and CI. A token acts as you on the whole REST API.</p>
    <${Section} title="Create a token">
      <form class="form" onSubmit=${create.run} novalidate>
        <div class="form-grid">
          <${TextField} label="Token name" value=${name} onValue=${setName} required autocomplete="off" placeholder="CI deploy" />
          <${SelectField} label="Expires" value=${expiry} onValue=${setExpiry} options=${EXPIRY_OPTIONS} />
        </div>
        <${TextField} label="Allowed IPs" value=${ips} onValue=${setIps} autocomplete="off" spellcheck=${false}
          placeholder="203.0.113.7, 198.51.100.0/24" hint="IPs and CIDR ranges the token may be used from, comma-separated. Empty: any." />
        <${FormError} error=${create.error} />
        <div class="form-actions"><${Button} type="submit" busy=${create.busy}>Create token</${Button}></div>
      </form>
      ${created ? html`<${NewToken} token=${created} onDone=${() => setCreated(null)} />` : null}
    </${Section}>
    <${FormError} error=${error} />
    ${loading ? html`<${Loading} />` : null}
    ${data && data.length === 0 ? html`<${EmptyState} title="No API tokens">
      <p>Create one above to call the API from a script; the dashboard itself needs none.</p>
    </${EmptyState}>` : null}
    ${data && data.length > 0 ? html`<div class="table-wrap"><table class="table">
      <caption class="visually-hidden">Your API tokens</caption>
      <thead><tr><th scope="col">Name</th><th scope="col">Allowed IPs</th><th scope="col">Created</th>
        <th scope="col">Expires</th><th scope="col">Last used</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>${data.map((token) => html`<${TokenRow} key=${token.id} token=${token} onRevoked=${reload} />`)}</tbody>
    </table></div>` : null}
  </div>`;
}
