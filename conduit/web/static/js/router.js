// Routes live in the URL fragment (#/webhooks/whk_1), so the server has one page to serve and
// tokens in a link (#/reset-password?token=...) never reach a server's logs.
import { useEffect, useState } from './lib.js';

export function currentLocation() {
  const hash = window.location.hash.replace(/^#/, '') || '/';
  const [path, search = ''] = hash.split('?');
  return { path: path || '/', query: new URLSearchParams(search) };
}

export function navigate(path) {
  if (window.location.hash === `#${path}`) return;
  window.location.hash = path;
}

/** Replace the location without a history entry (used to drop a token from the address bar). */
export function replaceLocation(path) {
  window.history.replaceState(null, '', `#${path}`);
  window.dispatchEvent(new Event('hashchange'));
}

export function useLocation() {
  const [location, setLocation] = useState(currentLocation());
  useEffect(() => {
    const update = () => setLocation(currentLocation());
    window.addEventListener('hashchange', update);
    return () => window.removeEventListener('hashchange', update);
  }, []);
  return location;
}

/** Match '/webhooks/:id' against a path: the parameters, or null. */
export function match(pattern, path) {
  const want = pattern.split('/');
  const have = path.split('/');
  if (want.length !== have.length) return null;
  const params = {};
  for (let i = 0; i < want.length; i += 1) {
    if (want[i].startsWith(':')) {
      if (!have[i]) return null;
      params[want[i].slice(1)] = decodeURIComponent(have[i]);
    } else if (want[i] !== have[i]) {
      return null;
    }
  }
  return params;
}

/** A link target for a route with parameters, encoded. */
export function href(...parts) {
  return `#/${parts.map((part) => encodeURIComponent(part)).join('/')}`;
}
