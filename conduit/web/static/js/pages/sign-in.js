// Sign in, with the TOTP challenge (an authenticator code or a backup code) when 2FA is on.
import { html, useState } from '../lib.js';
import * as api from '../api.js';
import { AuthCard, Button, FormError, TextField, useAction } from '../components.js';

function Challenge({ challenge, onSignedIn, onRestart }) {
  const [code, setCode] = useState('');
  const [backup, setBackup] = useState(false);
  const verify = useAction(async () => {
    await api.completeSignIn(challenge.totp_token, code.trim());
    await onSignedIn();
  });
  return html`<${AuthCard} title="Two-factor authentication">
    <p class="muted">${backup
      ? 'Enter one of the backup codes you saved when you turned on two-factor authentication. Each works once.'
      : 'Enter the 6-digit code from your authenticator app.'}</p>
    <form onSubmit=${verify.run} novalidate>
      ${backup
        ? html`<${TextField} key="backup" label="Backup code" value=${code} onValue=${setCode} autocomplete="off" required autofocus />`
        : html`<${TextField} key="totp" label="Authentication code" value=${code} onValue=${setCode}
            inputmode="numeric" autocomplete="one-time-code" required autofocus />`}
      <${FormError} error=${verify.error} />
      <${Button} type="submit" busy=${verify.busy}>Verify</${Button}>
    </form>
    <div class="auth-links">
      <button type="button" class="link-button" onClick=${() => { setBackup(!backup); setCode(''); }}>
        ${backup ? 'Use an authenticator code instead' : 'Use a backup code instead'}
      </button>
      <button type="button" class="link-button" onClick=${onRestart}>Start over</button>
    </div>
  </${AuthCard}>`;
}

export function SignIn({ onSignedIn }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [challenge, setChallenge] = useState(null);
  const signIn = useAction(async () => {
    const totp = await api.signIn(email.trim(), password);
    if (totp) {
      setChallenge(totp);
      return;
    }
    await onSignedIn();
  });
  if (challenge) {
    return html`<${Challenge} challenge=${challenge} onSignedIn=${onSignedIn}
      onRestart=${() => { setChallenge(null); setPassword(''); }} />`;
  }
  return html`<${AuthCard} title="Sign in to Conduit"
      footer=${html`New to Conduit? <a href="#/sign-up">Create an account</a>`}>
    <form onSubmit=${signIn.run} novalidate>
      <${TextField} label="Email" type="email" value=${email} onValue=${setEmail} autocomplete="username" required autofocus />
      <${TextField} label="Password" type="password" value=${password} onValue=${setPassword}
        autocomplete="current-password" required />
      <${FormError} error=${signIn.error} />
      <${Button} type="submit" busy=${signIn.busy}>Sign in</${Button}>
    </form>
    <div class="auth-links"><a href="#/forgot-password">Forgot your password?</a></div>
  </${AuthCard}>`;
}
