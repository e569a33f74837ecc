// Forgotten password: ask for a reset mail, then choose a new password from the mail's link
// (#/reset-password?token=...).
import { html, useEffect, useState } from '../lib.js';
import * as api from '../api.js';
import { replaceLocation } from '../router.js';
import { AuthCard, Button, FormError, FormProblem, Notice, TextField, useAction } from '../components.js';

export function ForgotPassword() {
  const [email, setEmail] = useState('');
  const [sent, setSent] = useState(false);
  const send = useAction(async () => {
    if (!email.trim()) throw new FormProblem('Enter the email address of your account.');
    await api.request('POST', '/accounts/me/password-reset', { body: { email: email.trim() }, auth: false });
    setSent(true);
  });
  return html`<${AuthCard} title="Reset your password" footer=${html`<a href="#/sign-in">Back to sign in</a>`}>
    ${sent
      ? html`<${Notice}>If an account uses ${email.trim()}, a mail with a link to choose a new password is on its way.
          The link works once, for one hour.</${Notice}>`
      : html`<p class="muted">We will mail you a link to choose a new password.</p>
        <form onSubmit=${send.run} novalidate>
          <${TextField} label="Email" type="email" value=${email} onValue=${setEmail} autocomplete="username" required autofocus />
          <${FormError} error=${send.error} />
          <${Button} type="submit" busy=${send.busy}>Send reset link</${Button}>
        </form>`}
  </${AuthCard}>`;
}

export function ResetPassword({ query }) {
  const [token] = useState(() => query.get('token') || '');
  const [password, setPassword] = useState('');
  const [repeat, setRepeat] = useState('');
  const [done, setDone] = useState(false);
  // The token is kept in memory only: take it out of the address bar and the history.
  useEffect(() => { if (query.get('token')) replaceLocation('/reset-password'); }, []);
  const reset = useAction(async () => {
    if (password !== repeat) throw new FormProblem('The two passwords differ.');
    await api.request('PUT', '/accounts/me/password-reset', { body: { token, new_password: password }, auth: false });
    setDone(true);
  });
  if (!token) {
    return html`<${AuthCard} title="Choose a new password">
      <p>This page needs the link from the password-reset mail. <a href="#/forgot-password">Ask for a new mail</a>.</p>
    </${AuthCard}>`;
  }
  return html`<${AuthCard} title="Choose a new password" footer=${html`<a href="#/sign-in">Back to sign in</a>`}>
    ${done
      ? html`<${Notice}>Your password was changed and every session was signed out.</${Notice}>
          <p><a class="button button-primary" href="#/sign-in">Sign in</a></p>`
      : html`<form onSubmit=${reset.run} novalidate>
          <${TextField} label="New password" type="password" value=${password} onValue=${setPassword}
            autocomplete="new-password" hint="8 to 256 characters." required autofocus />
          <${TextField} label="Repeat the new password" type="password" value=${repeat} onValue=${setRepeat}
            autocomplete="new-password" required />
          <${FormError} error=${reset.error} />
          <${Button} type="submit" busy=${reset.busy}>Set new password</${Button}>
        </form>`}
  </${AuthCard}>`;
}
