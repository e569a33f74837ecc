// Security and account: 2FA, password, time zone, sessions, account deletion.
import { html, useMemo, useState } from '../lib.js';
import * as api from '../api.js';
import { reloadAccount, useAccount } from '../store.js';
import { formatTime, timeZones } from '../format.js';
import {
  Button, Checkbox, FormError, FormProblem, Notice, PageHeader, Section, SelectField, TextField, useAction,
} from '../components.js';
import { TwoFactor } from './two-factor.js';

function ChangePassword({ account }) {
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [repeat, setRepeat] = useState('');
  const [revokeTokens, setRevokeTokens] = useState(false);
  const [done, setDone] = useState(false);
  const change = useAction(async () => {
    setDone(false);
    if (next !== repeat) throw new FormProblem('The two new passwords differ.');
    await api.put('/accounts/me/password', { current_password: current, new_password: next, revoke_api_tokens: revokeTokens });
    // Every session was signed out, this one too: sign in again with the new password.
    const challenge = await api.signIn(account.email, next).catch(() => 'failed');
    if (challenge) {
      api.endSession();
      return;
    }
    setCurrent('');
    setNext('');
    setRepeat('');
    setDone(true);
  });
  return html`<${Section} title="Password" description="Changing it signs out every other session.">
    <form class="form" onSubmit=${change.run} novalidate>
      <${TextField} label="Current password" type="password" value=${current} onValue=${setCurrent} autocomplete="current-password" required />
      <div class="form-grid">
        <${TextField} label="New password" type="password" value=${next} onValue=${setNext} autocomplete="new-password"
          hint="8 to 256 characters." required />
        <${TextField} label="Repeat the new password" type="password" value=${repeat} onValue=${setRepeat} autocomplete="new-password" required />
      </div>
      <${Checkbox} label="Also revoke my API tokens" checked=${revokeTokens} onValue=${setRevokeTokens} />
      <${FormError} error=${change.error} />
      ${done ? html`<${Notice}>Password changed. Other sessions were signed out.</${Notice}>` : null}
      <div class="form-actions"><${Button} type="submit" busy=${change.busy}>Change password</${Button}></div>
    </form>
  </${Section}>`;
}

function TimeZone({ account }) {
  const zones = useMemo(timeZones, []);
  const [zone, setZone] = useState(account.timezone);
  const [saved, setSaved] = useState(false);
  const save = useAction(async () => {
    setSaved(false);
    await api.put('/accounts/me/timezone', { timezone: zone });
    await reloadAccount();
    setSaved(true);
  });
  const options = (zones.includes(zone) ? zones : [zone, ...zones]).map((name) => ({ value: name, label: name }));
  return html`<${Section} title="Time zone" description="Every time in the dashboard is shown in this zone.">
    <form class="inline-form" onSubmit=${save.run} novalidate>
      <${SelectField} label="Time zone" value=${zone} onValue=${setZone} options=${options} />
      <${Button} type="submit" busy=${save.busy}>Save time zone</${Button}>
    </form>
    <p class="muted">Now: ${formatTime(new Date().toISOString())}</p>
    <${FormError} error=${save.error} />
    ${saved ? html`<${Notice}>Time zone saved.</${Notice}>` : null}
  </${Section}>`;
}

function Sessions() {
  const everywhere = useAction(() => api.signOutEverywhere());
  return html`<${Section} title="Sessions"
      description="Sign out of every browser and script that signed in with your password, this one included. API tokens keep working.">
    <${Button} kind="secondary" onClick=${everywhere.run} busy=${everywhere.busy}>Sign out everywhere</${Button}>
    <${FormError} error=${everywhere.error} />
  </${Section}>`;
}

function DeleteAccount() {
  const [password, setPassword] = useState('');
  const [sure, setSure] = useState(false);
  const remove = useAction(async () => {
    if (!sure) throw new FormProblem('Tick the box to confirm that everything is to be deleted.');
    await api.deleteAccount(password);
  });
  return html`<${Section} title="Delete account"
      description="Deletes your account and everything it owns: domains, webhooks, delivery logs, policies, tokens. Mail to your addresses is refused from then on.">
    <form class="form" onSubmit=${remove.run} novalidate>
      <${TextField} label="Your password" type="password" value=${password} onValue=${setPassword} autocomplete="current-password" required />
      <${Checkbox} label="I understand that this deletes everything, for good" checked=${sure} onValue=${setSure} />
      <${FormError} error=${remove.error} />
      <div class="form-actions"><${Button} type="submit" kind="danger" busy=${remove.busy}>Delete account</${Button}></div>
    </form>
  </${Section}>`;
}

export function Security() {
  const account = useAccount();
  if (!account) return null;
  return html`<div class="page">
    <${PageHeader} title="Security" />
    <p class="muted">Signed in as <strong>${account.email}</strong>, member since ${formatTime(account.created_at)}.</p>
    <${TwoFactor} />
    <${ChangePassword} account=${account} />
    <${TimeZone} account=${account} />
    <${Sessions} />
    <${DeleteAccount} />
  </div>`;
}
