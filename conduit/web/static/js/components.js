// Small building blocks shared by the pages. Every value is rendered as text (Preact creates
// text nodes and sets attributes; nothing here parses a string as HTML).
import { html, useCallback, useEffect, useRef, useState } from './lib.js';
import { ApiError } from './api.js';

let nextId = 0;
export function useId(prefix = 'field') {
  const ref = useRef(null);
  if (ref.current === null) {
    nextId += 1;
    ref.current = `${prefix}-${nextId}`;
  }
  return ref.current;
}

/** A problem found in the form before anything is sent ("The two passwords differ."). */
export class FormProblem extends Error {}

/** A message for any error: the API's sentence, the form's own, or a generic one for a bug. */
export function messageOf(error) {
  if (!error) return '';
  if (error instanceof ApiError || error instanceof FormProblem) return error.message;
  return `Something went wrong: ${error.message || error}`;
}

export function FormError({ error }) {
  if (!error) return null;
  return html`<p class="form-error" role="alert">${messageOf(error)}</p>`;
}

export function Notice({ children, kind = 'success' }) {
  return html`<p class=${`notice notice-${kind}`} role="status">${children}</p>`;
}

/** Run an async action from a form: prevents the native submit, tracks busy and the error. */
export function useAction(action) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const mounted = useRef(true);
  useEffect(() => () => { mounted.current = false; }, []);
  const run = useCallback(async (event) => {
    if (event && event.preventDefault) event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      return await action(event);
    } catch (caught) {
      if (mounted.current) setError(caught);
      return undefined;
    } finally {
      if (mounted.current) setBusy(false);
    }
  }, [action]);
  return { run, busy, error, setError };
}

/** Load data for a page; `reload` fetches again (and `quiet` keeps the old data shown meanwhile). */
export function useLoad(loader, deps = []) {
  const [state, setState] = useState({ data: undefined, error: null, loading: true });
  const generation = useRef(0);
  const load = useCallback(async () => {
    generation.current += 1;
    const mine = generation.current;
    try {
      const data = await loader();
      if (mine === generation.current) setState({ data, error: null, loading: false });
    } catch (error) {
      if (mine === generation.current) setState((old) => ({ data: old.data, error, loading: false }));
    }
  }, deps);
  useEffect(() => {
    setState({ data: undefined, error: null, loading: true });
    load();
    return () => { generation.current += 1; };
  }, [load]);
  return { ...state, reload: load };
}

/** Call `tick` every `ms` while the page is visible; returns nothing. */
export function usePolling(tick, ms, deps = []) {
  useEffect(() => {
    let stopped = false;
    let timer = null;
    const loop = async () => {
      if (stopped) return;
      if (document.visibilityState === 'visible') {
        try { await tick(); } catch { /* the page shows its own error state */ }
      }
      if (!stopped) timer = setTimeout(loop, ms);
    };
    timer = setTimeout(loop, ms);
    return () => { stopped = true; clearTimeout(timer); };
  }, deps);
}

export function Field({ label, hint, id, children }) {
  return html`<div class="field">
    <label for=${id}>${label}</label>
    ${children}
    ${hint ? html`<p class="hint" id=${`${id}-hint`}>${hint}</p>` : null}
  </div>`;
}

export function TextField({ label, hint, value, onValue, type = 'text', ...rest }) {
  const id = useId();
  return html`<${Field} label=${label} hint=${hint} id=${id}>
    <input id=${id} type=${type} value=${value} onInput=${(event) => onValue(event.target.value)}
      aria-describedby=${hint ? `${id}-hint` : undefined} ...${rest} />
  </${Field}>`;
}

export function TextArea({ label, hint, value, onValue, rows = 6, ...rest }) {
  const id = useId();
  return html`<${Field} label=${label} hint=${hint} id=${id}>
    <textarea id=${id} rows=${rows} value=${value} onInput=${(event) => onValue(event.target.value)}
      aria-describedby=${hint ? `${id}-hint` : undefined} spellcheck=${false} ...${rest}></textarea>
  </${Field}>`;
}

export function SelectField({ label, hint, value, onValue, options, ...rest }) {
  const id = useId();
  return html`<${Field} label=${label} hint=${hint} id=${id}>
    <select id=${id} value=${value} onChange=${(event) => onValue(event.target.value)}
      aria-describedby=${hint ? `${id}-hint` : undefined} ...${rest}>
      ${options.map((option) => html`<option value=${option.value} selected=${option.value === value}>${option.label}</option>`)}
    </select>
  </${Field}>`;
}

export function Checkbox({ label, hint, checked, onValue, ...rest }) {
  const id = useId();
  return html`<div class="field field-check">
    <input id=${id} type="checkbox" checked=${checked} onChange=${(event) => onValue(event.target.checked)}
      aria-describedby=${hint ? `${id}-hint` : undefined} ...${rest} />
    <label for=${id}>${label}</label>
    ${hint ? html`<p class="hint" id=${`${id}-hint`}>${hint}</p>` : null}
  </div>`;
}

export function Button({ children, kind = 'primary', busy = false, type = 'button', small = false, ...rest }) {
  return html`<button type=${type} class=${`button button-${kind}${small ? ' button-small' : ''}`} disabled=${busy || rest.disabled}
    aria-busy=${busy ? 'true' : undefined} ...${rest}>${children}</button>`;
}

/** Copy text to the clipboard; the button says what it copies ("Copy secret"). */
export function CopyButton({ text, what, kind = 'secondary' }) {
  const [copied, setCopied] = useState(false);
  const timer = useRef(null);
  useEffect(() => () => clearTimeout(timer.current), []);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      fallbackCopy(text);
    }
    setCopied(true);
    clearTimeout(timer.current);
    timer.current = setTimeout(() => setCopied(false), 2000);
  };
  return html`<button type="button" class=${`button button-${kind} button-small`} onClick=${copy}
    aria-label=${`Copy ${what}`}>${copied ? 'Copied' : 'Copy'}</button>
    <span class="visually-hidden" role="status">${copied ? `${what} copied` : ''}</span>`;
}

function fallbackCopy(text) {
  const area = document.createElement('textarea');
  area.value = text;
  area.setAttribute('readonly', '');
  area.className = 'offscreen';
  document.body.appendChild(area);
  area.select();
  document.execCommand('copy');
  area.remove();
}

/** Offer text as a downloaded file (backup codes). */
export function download(filename, text) {
  const url = URL.createObjectURL(new Blob([text], { type: 'text/plain;charset=utf-8' }));
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** A destructive action in two steps, without a browser dialog: "Delete" then "Confirm".
 *  `name`, when given, is the accessible name ("Revoke CI deploy" for a button that says "Revoke"). */
export function ConfirmButton({ label, name, confirmLabel, question, onConfirm, busy }) {
  const [asking, setAsking] = useState(false);
  const confirmRef = useRef(null);
  useEffect(() => { if (asking && confirmRef.current) confirmRef.current.focus(); }, [asking]);
  if (!asking) {
    return html`<${Button} kind="danger-quiet" aria-label=${name} onClick=${() => setAsking(true)}>${label}</${Button}>`;
  }
  return html`<span class="confirm" role="group" aria-label=${question}>
    <span class="confirm-question">${question}</span>
    <button type="button" class="button button-danger" ref=${confirmRef} disabled=${busy}
      onClick=${async () => { await onConfirm(); setAsking(false); }}>${confirmLabel}</button>
    <${Button} kind="secondary" onClick=${() => setAsking(false)}>Cancel</${Button}>
  </span>`;
}

export function EmptyState({ title, children }) {
  return html`<div class="empty">
    <h2 class="empty-title">${title}</h2>
    ${children}
  </div>`;
}

export function Loading({ what = 'Loading' }) {
  return html`<p class="loading" role="status">${what}…</p>`;
}

export function Badge({ kind, children }) {
  return html`<span class=${`badge badge-${kind}`}>${children}</span>`;
}

const STATUS_KIND = { delivered: 'good', retrying: 'warn', failed: 'bad', rejected: 'bad' };
export function StatusBadge({ status }) {
  return html`<${Badge} kind=${STATUS_KIND[status] || 'neutral'}>${status}</${Badge}>`;
}

let navigated = false;

/** The page heading. After a move from one page to another it takes the focus, so keyboard and
 *  screen-reader users start at the new content; on the first page of a load the focus stays at
 *  the top of the document, where Tab reaches the skip link and the navigation first. */
export function PageHeader({ title, children }) {
  const ref = useRef(null);
  useEffect(() => {
    document.title = `${title} · Conduit`;
    const active = document.activeElement;
    const moved = !active || active === document.body || active.closest('nav');
    if (navigated && moved && ref.current) ref.current.focus();
    navigated = true;
  }, [title]);
  return html`<header class="page-header">
    <h1 tabindex="-1" ref=${ref}>${title}</h1>
    ${children ? html`<div class="page-actions">${children}</div>` : null}
  </header>`;
}

export function Section({ title, description, children }) {
  return html`<section class="card" aria-label=${title}>
    <h2>${title}</h2>
    ${description ? html`<p class="muted">${description}</p>` : null}
    ${children}
  </section>`;
}

/** A term/description list of fields, each value as text. */
export function Details({ rows }) {
  return html`<dl class="details">
    ${rows.map(([term, value]) => html`<div class="details-row"><dt>${term}</dt><dd>${value}</dd></div>`)}
  </dl>`;
}

/** The frame of the pages shown before sign-in. */
export function AuthCard({ title, children, footer }) {
  const ref = useRef(null);
  useEffect(() => {
    document.title = `${title} · Conduit`;
    // The form's first field when it asks for one (sign-in), else the heading.
    const field = ref.current && ref.current.parentElement.querySelector('[autofocus]');
    if (field) field.focus();
    else if (ref.current) ref.current.focus();
  }, [title]);
  return html`<main class="auth" id="main">
    <div class="auth-card">
      <div class="auth-brand"><img src="/assets/icon.svg" alt="" width="36" height="36" /><span>Conduit</span></div>
      <h1 tabindex="-1" ref=${ref}>${title}</h1>
      ${children}
    </div>
    ${footer ? html`<p class="auth-footer">${footer}</p>` : null}
  </main>`;
}
