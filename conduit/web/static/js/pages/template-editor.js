// The payload template editor: a textarea and a preview of the body a delivery of a sample
// message would send, rendered by the API (POST /webhooks/preview) with the delivery code.
import { html, useState } from '../lib.js';
import * as api from '../api.js';
import { Button, FormError, TextArea, TextField, useAction } from '../components.js';

const EXAMPLE = `{
  "from": {{ from[0].address | tojson }},
  "subject": {{ subject | tojson }},
  "text": {{ (reply_text or text) | tojson }}
}`;

export function TemplateEditor({ template, onTemplate, webhook, address }) {
  const [from, setFrom] = useState('Ada Lovelace <ada@example.com>');
  const [subject, setSubject] = useState('Hello from Conduit');
  const [text, setText] = useState('This is the sample message the preview renders.');
  const [preview, setPreview] = useState(null);
  const render = useAction(async () => {
    setPreview(null);
    const body = { payload_template: template, from, subject, text };
    if (webhook) body.webhook_id = webhook.id;
    if (address && address.includes('@')) body.address = address.trim();
    setPreview(await api.post('/webhooks/preview', body));
  });
  return html`<fieldset class="fieldset template-editor">
    <legend>Payload</legend>
    <${TextArea} label="Payload template" value=${template} onValue=${onTemplate} rows=${10} class="code"
      hint="Jinja2, rendered in a sandbox. Empty sends the default JSON payload. Variables: subject, from, to, cc, text, html, reply_text, headers, attachments, envelope, raw, … Use {{ value | tojson }} for JSON." />
    <div class="template-tools">
      ${template ? null : html`<${Button} kind="secondary" small onClick=${() => onTemplate(EXAMPLE)}>Insert an example template</${Button}>`}
    </div>
    <details class="sample">
      <summary>Sample message</summary>
      <div class="form-grid">
        <${TextField} label="Sample from" value=${from} onValue=${setFrom} autocomplete="off" />
        <${TextField} label="Sample subject" value=${subject} onValue=${setSubject} autocomplete="off" />
      </div>
      <${TextArea} label="Sample text" value=${text} onValue=${setText} rows=${3} />
    </details>
    <${Button} kind="secondary" onClick=${render.run} busy=${render.busy}>Preview payload</${Button}>
    <${FormError} error=${render.error} />
    ${preview ? html`<div class="preview" aria-live="polite">
      <p class="muted">Rendered body (${preview.content_type}), exactly as a delivery of the sample message would send it:</p>
      <pre class="code-block" data-testid="rendered-body">${preview.body}</pre>
    </div>` : null}
  </fieldset>`;
}
