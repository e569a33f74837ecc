// Create an account, then sign in with it.
import { html, useState } from '../lib.js';
import * as api from '../api.js';
import { AuthCard, Button, FormError, TextField, useAction } from '../components.js';

export function SignUp({ onSignedIn }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const signUp = useAction(async () => {
    await api.request('POST', '/accounts', { body: { email: email.trim(), password }, auth: false });
    await api.signIn(email.trim(), password);
    await onSignedIn();
  });
  return html`<${AuthCard} title="Create your Conduit account"
      footer=${html`Already have an account? <a href="#/sign-in">Sign in</a>`}>
    <p class="muted">Receive email for your addresses and get each message, parsed and signed, on your webhook.</p>
    <form onSubmit=${signUp.run} novalidate>
      <${TextField} label="Email" type="email" value=${email} onValue=${setEmail} autocomplete="username" required autofocus />
      <${TextField} label="Password" type="password" value=${password} onValue=${setPassword}
        autocomplete="new-password" hint="8 to 256 characters. A passphrase of a few words is easy to remember."
        required />
      <${FormError} error=${signUp.error} />
      <${Button} type="submit" busy=${signUp.busy}>Create account</${Button}>
    </form>
  </${AuthCard}>`;
}
