// The dashboard's shell: restores the session, picks the page for the URL fragment, draws the
// navigation. Each page is a module of its own under pages/.
import { html, render, useEffect, useState } from './lib.js';
import * as api from './api.js';
import { match, replaceLocation, useLocation } from './router.js';
import { reloadAccount, setAccount, useAccount } from './store.js';
import { Loading } from './components.js';
import { SignIn } from './pages/sign-in.js';
import { SignUp } from './pages/sign-up.js';
import { ForgotPassword, ResetPassword } from './pages/password-reset.js';
import { Messages } from './pages/messages.js';
import { MessagePage } from './pages/message.js';
import { Webhooks, NewWebhook } from './pages/webhooks.js';
import { WebhookPage } from './pages/webhook.js';
import { DeliveryLogPage } from './pages/delivery-log.js';
import { Domains } from './pages/domains.js';
import { Policies, PolicyPage } from './pages/policies.js';
import { ApiTokens } from './pages/api-tokens.js';
import { Security } from './pages/security.js';
import { AuditLog } from './pages/audit-log.js';

// Pages anyone may open, signed in or not.
const OPEN_ROUTES = [
  ['/forgot-password', ForgotPassword],
  ['/reset-password', ResetPassword],
];
const SIGNED_OUT_ROUTES = [
  ['/sign-in', SignIn],
  ['/sign-up', SignUp],
];
const ROUTES = [
  ['/messages', Messages],
  ['/messages/:id', MessagePage],
  ['/webhooks', Webhooks],
  ['/webhooks/new', NewWebhook],
  ['/webhooks/:id', WebhookPage],
  ['/webhooks/:id/:tab', WebhookPage],
  ['/webhooks/:id/logs/:logId', DeliveryLogPage],
  ['/domains', Domains],
  ['/policies', Policies],
  ['/policies/new', PolicyPage],
  ['/policies/:id', PolicyPage],
  ['/api-tokens', ApiTokens],
  ['/security', Security],
  ['/audit-log', AuditLog],
];
export const NAVIGATION = [
  ['Messages', '/messages'],
  ['Webhooks', '/webhooks'],
  ['Domains', '/domains'],
  ['Policies', '/policies'],
  ['API tokens', '/api-tokens'],
  ['Security', '/security'],
  ['Audit log', '/audit-log'],
];
const HOME = '/messages';

function find(routes, path) {
  for (const [pattern, page] of routes) {
    const params = match(pattern, path);
    if (params) return { page, params };
  }
  return null;
}

function NotFound() {
  return html`<div class="page"><h1>Page not found</h1>
    <p>There is nothing at this address. <a href=${`#${HOME}`}>Go to Messages</a>.</p></div>`;
}

function Shell({ path, children }) {
  const account = useAccount();
  const [error, setError] = useState(null);
  const signOut = async () => {
    try {
      await api.signOut();
    } catch (caught) {
      setError(caught.message);
    }
  };
  const skip = () => document.getElementById('main').focus();
  return html`<div class="shell">
    <button type="button" class="skip-link" onClick=${skip}>Skip to content</button>
    <aside class="sidebar">
      <a class="brand" href=${`#${HOME}`}><img src="/assets/icon.svg" alt="" width="28" height="28" /><span>Conduit</span></a>
      <nav aria-label="Main">
        <ul>
          ${NAVIGATION.map(([label, target]) => html`<li>
            <a href=${`#${target}`} aria-current=${path === target || path.startsWith(`${target}/`) ? 'page' : undefined}>${label}</a>
          </li>`)}
        </ul>
      </nav>
      <div class="sidebar-account">
        <span class="account-email" title="Signed in as">${account ? account.email : ''}</span>
        <button type="button" class="button button-secondary button-small" onClick=${signOut}>Sign out</button>
        ${error ? html`<p class="form-error" role="alert">${error}</p>` : null}
      </div>
    </aside>
    <main id="main" tabindex="-1">${children}</main>
  </div>`;
}

function App() {
  const [state, setState] = useState('starting');  // starting | signed-in | signed-out
  const location = useLocation();

  useEffect(() => {
    const off = api.onSignedOut(() => {
      setAccount(null);
      setState('signed-out');
    });
    (async () => {
      if (await api.refresh()) {
        try {
          await reloadAccount();
          setState('signed-in');
          return;
        } catch {
          // fall through: treat as signed out
        }
      }
      setState('signed-out');
    })();
    return off;
  }, []);

  const signedIn = async () => {
    await reloadAccount();
    setState('signed-in');  // the effect below leaves the sign-in page for Messages
  };

  useEffect(() => {
    if (state === 'signed-in' && (location.path === '/' || find(SIGNED_OUT_ROUTES, location.path))) replaceLocation(HOME);
  }, [state, location.path]);

  if (state === 'starting') return html`<div class="center"><${Loading} what="Opening Conduit" /></div>`;

  const open = find(OPEN_ROUTES, location.path);
  if (open) return html`<${open.page} params=${open.params} query=${location.query} onSignedIn=${signedIn} />`;

  if (state === 'signed-out') {
    const page = find(SIGNED_OUT_ROUTES, location.path);
    const Page = page ? page.page : SignIn;
    return html`<${Page} query=${location.query} onSignedIn=${signedIn} />`;
  }

  const path = location.path === '/' ? HOME : location.path;
  const target = find(ROUTES, path);
  return html`<${Shell} path=${path}>
    ${target
      ? html`<${target.page} key=${`${target.page.name}:${target.params.id || ''}`} params=${target.params} query=${location.query} />`
      : html`<${NotFound} />`}
  </${Shell}>`;
}

render(html`<${App} />`, document.getElementById('app'));
