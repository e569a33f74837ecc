// Two-factor authentication: set up with the QR code (or the secret key), enable, regenerate the
// backup codes (shown once, with a download), turn off.
import { html, useState } from '../lib.js';
import * as api from '../api.js';
import { reloadAccount, useAccount } from '../store.js';
import {
  Badge, Button, CopyButton, FormError, Notice, Section, TextField, download, useAction,
} from '../components.js';

function BackupCodes({ codes, onDone }) {
  const text = `Conduit backup codes\n\nEach code works once, in place of an authenticator code.\n\n${codes.join('\n')}\n`;
  return html`<div class="backup-codes" role="status">
    <p><strong>Your backup codes.</strong> Save them somewhere safe now: they are shown this once. Each works one time
      if you lose your authenticator.</p>
    <ul class="codes" aria-label="Backup codes">${codes.map((code) => html`<li><code>${code}</code></li>`)}</ul>
    <div class="form-actions">
      <${Button} kind="primary" onClick=${() => download('conduit-backup-codes.txt', text)}>Download backup codes</${Button}>
      <${CopyButton} text=${codes.join('\n')} what="backup codes" />
      <${Button} kind="secondary" onClick=${onDone}>I saved my backup codes</${Button}>
    </div>
  </div>`;
}

function Setup({ setup, onEnabled }) {
  const [code, setCode] = useState('');
  const enable = useAction(async () => {
    const result = await api.post('/accounts/me/2fa/enable', { code: code.trim() });
    onEnabled(result.backup_codes);
  });
  return html`<div class="totp-setup">
    <ol class="steps-plain">
      <li>Scan this QR code with an authenticator app (1Password, Google Authenticator, Aegis, …).
        <div class="qr"><img src=${`data:image/png;base64,${setup.qr_code_png}`} alt="QR code for your authenticator app" /></div>
      </li>
      <li>Or enter this secret key by hand:
        <div class="secret-row"><code class="secret" data-testid="totp-secret">${setup.secret}</code>
          <${CopyButton} text=${setup.secret} what="secret key" /></div>
      </li>
      <li>Enter the 6-digit code the app shows, to confirm.</li>
    </ol>
    <form class="inline-form" onSubmit=${enable.run} novalidate>
      <${TextField} label="Authentication code" value=${code} onValue=${setCode} inputmode="numeric"
        autocomplete="one-time-code" required />
      <${Button} type="submit" busy=${enable.busy}>Enable two-factor authentication</${Button}>
    </form>
    <${FormError} error=${enable.error} />
  </div>`;
}

export function TwoFactor() {
  const account = useAccount();
  const [setup, setSetup] = useState(null);
  const [codes, setCodes] = useState(null);
  const [code, setCode] = useState('');
  const [notice, setNotice] = useState('');
  const start = useAction(async () => {
    setNotice('');
    setSetup(await api.post('/accounts/me/2fa/setup'));
  });
  const regenerate = useAction(async () => {
    const result = await api.post('/accounts/me/2fa/backup-codes', { code: code.trim() });
    setCode('');
    setCodes(result.backup_codes);
  });
  const disable = useAction(async () => {
    await api.del('/accounts/me/2fa', { code: code.trim() });
    setCode('');
    setNotice('Two-factor authentication is off.');
    await reloadAccount();
  });
  const enabled = account && account.totp_enabled;
  const enabledNow = async (backupCodes) => {
    setSetup(null);
    setCodes(backupCodes);
    setNotice('Two-factor authentication is on. Sign-ins now ask for a code from your app.');
    await reloadAccount();
  };
  return html`<${Section} title="Two-factor authentication">
    <p>Status: ${enabled ? html`<${Badge} kind="good">on</${Badge}>` : html`<${Badge} kind="neutral">off</${Badge}>`}</p>
    ${notice ? html`<${Notice}>${notice}</${Notice}>` : null}
    ${codes ? html`<${BackupCodes} codes=${codes} onDone=${() => setCodes(null)} />` : null}
    ${!enabled && !setup ? html`<p class="muted">Ask for a code from an authenticator app at every sign-in, besides the password.</p>
      <${Button} onClick=${start.run} busy=${start.busy}>Set up two-factor authentication</${Button}>
      <${FormError} error=${start.error} />` : null}
    ${!enabled && setup ? html`<${Setup} setup=${setup} onEnabled=${enabledNow} />` : null}
    ${enabled && !codes ? html`<form class="form" onSubmit=${(event) => event.preventDefault()} novalidate>
      <p class="muted">Both actions need a current code from your app (or a backup code).</p>
      <${TextField} label="Authentication code" value=${code} onValue=${setCode} autocomplete="one-time-code" required />
      <div class="form-actions">
        <${Button} kind="secondary" onClick=${regenerate.run} busy=${regenerate.busy}>Regenerate backup codes</${Button}>
        <${Button} kind="danger" onClick=${disable.run} busy=${disable.busy}>Turn off two-factor authentication</${Button}>
      </div>
      <${FormError} error=${regenerate.error || disable.error} />
    </form>` : null}
  </${Section}>`;
}
