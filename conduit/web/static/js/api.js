// The REST API client: every dashboard action goes through /api/v1, as an API user's would.
//
// The access token lives only in this module's memory. The refresh token is an HttpOnly cookie
// that the API sets when a request carries `X-Conduit-Browser: 1`; no script can read it. An
// expired access token is refreshed transparently, once, and the request is sent again.

const BASE = '/api/v1';
const BROWSER = { 'X-Conduit-Browser': '1' };
const EARLY_REFRESH_MS = 30_000;  // refresh this long before the access token expires
const channel = 'BroadcastChannel' in window ? new BroadcastChannel('conduit-session') : null;

let accessToken = null;
let expiresAt = 0;
let refreshing = null;
const signedOutListeners = new Set();

/** An API answer that is not a success: the Error body's code and sentence. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

export function isSignedIn() {
  return accessToken !== null;
}

/** Called when the session ends: signed out here, in another tab, or revoked elsewhere. */
export function onSignedOut(listener) {
  signedOutListeners.add(listener);
  return () => signedOutListeners.delete(listener);
}

function adopt(session) {
  accessToken = session.access_token;
  expiresAt = Date.now() + session.expires_in * 1000;
}

function forget(broadcast) {
  const wasSignedIn = accessToken !== null;
  accessToken = null;
  expiresAt = 0;
  if (broadcast && channel) channel.postMessage('signed-out');
  if (wasSignedIn || !broadcast) signedOutListeners.forEach((listener) => listener());
}

if (channel) {
  channel.onmessage = (event) => {
    if (event.data === 'signed-out' && accessToken !== null) forget(false);
  };
}

function url(path, query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== '') params.set(key, String(value));
  }
  const search = params.toString();
  return BASE + path + (search ? `?${search}` : '');
}

async function send(method, path, { body, query, headers = {}, auth = true } = {}) {
  const init = { method, headers: { ...headers }, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (auth && accessToken) init.headers.Authorization = `Bearer ${accessToken}`;
  try {
    return await fetch(url(path, query), init);
  } catch {
    throw new ApiError(0, 'network_error', 'Conduit cannot be reached. Check the connection and try again.');
  }
}

async function read(response) {
  let body = null;
  const text = response.status === 204 ? '' : await response.text().catch(() => '');
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (response.ok) return body;
  const retryAfter = response.headers.get('Retry-After');
  let message = body && typeof body.error === 'string' ? body.error : `The request failed (HTTP ${response.status}).`;
  if (response.status === 429 && retryAfter) message += ` Try again in ${retryAfter} seconds.`;
  throw new ApiError(response.status, body && body.code ? body.code : 'http_error', message, retryAfter);
}

/** Rotate the refresh cookie for a new access token. One refresh at a time across tabs (Web Locks):
 *  a refresh token works once, and sending a rotated one would revoke the whole sign-in. */
export function refresh() {
  if (!refreshing) {
    const run = () => send('POST', '/sessions/refresh', { headers: BROWSER, auth: false });
    refreshing = (async () => {
      const response = navigator.locks ? await navigator.locks.request('conduit-refresh', run) : await run();
      if (!response.ok) return false;
      adopt(await response.json());
      return true;
    })().catch(() => false).finally(() => { refreshing = null; });
  }
  return refreshing;
}

/** A 401 about the access token itself (code "unauthorized"), not about a wrong password or code
 *  in the request: only that one is worth a refresh and a second try. */
async function isTokenRefused(response) {
  try {
    return (await response.clone().json()).code === 'unauthorized';
  } catch {
    return false;
  }
}

/** Call the API; resolves to the parsed body (null when there is none), rejects with ApiError. */
export async function request(method, path, options = {}) {
  return (await exchange(method, path, options)).body;
}

/** A page of a cursor-paged list: { items, next }, `next` the X-Next-Cursor header (null on the last page). */
export async function page(path, query) {
  const { body, headers } = await exchange('GET', path, { query });
  return { items: body, next: headers.get('X-Next-Cursor') };
}

async function exchange(method, path, options) {
  const auth = options.auth !== false;
  if (auth && accessToken && Date.now() > expiresAt - EARLY_REFRESH_MS) await refresh();
  let response = await send(method, path, options);
  if (auth && response.status === 401 && await isTokenRefused(response)) {
    if (await refresh()) {
      response = await send(method, path, options);
    } else {
      forget(true);
      throw new ApiError(401, 'unauthorized', 'Your session has ended. Sign in again.');
    }
  }
  return { body: await read(response), headers: response.headers };
}

/** Download a file the API serves behind the bearer token (a link cannot carry the header):
 *  resolves to { blob, filename }, the name from Content-Disposition. */
export async function download(path) {
  if (accessToken && Date.now() > expiresAt - EARLY_REFRESH_MS) await refresh();
  let response = await send('GET', path);
  if (response.status === 401 && await isTokenRefused(response) && await refresh()) response = await send('GET', path);
  if (!response.ok) await read(response);
  const disposition = response.headers.get('Content-Disposition') || '';
  const quoted = /filename="([^"]*)"/.exec(disposition);
  return { blob: await response.blob(), filename: quoted ? quoted[1] : 'download' };
}

export const get = (path, query) => request('GET', path, { query });
export const post = (path, body) => request('POST', path, { body });
export const put = (path, body) => request('PUT', path, { body });
export const del = (path, body) => request('DELETE', path, { body });

// Sessions --------------------------------------------------------------------------------------

/** Sign in; resolves to null when signed in, or to the TOTP challenge when 2FA is on. */
export async function signIn(email, password) {
  const result = await read(await send('POST', '/sessions', { body: { email, password }, headers: BROWSER, auth: false }));
  if (result.totp_required) return result;
  adopt(result);
  return null;
}

/** Answer the TOTP challenge with an authenticator code or a backup code. */
export async function completeSignIn(totpToken, code) {
  adopt(await read(await send('POST', '/sessions/2fa', { body: { totp_token: totpToken, code }, headers: BROWSER, auth: false })));
}

/** Sign this browser out: the cookie stands in for the refresh token. */
export async function signOut() {
  try {
    await request('DELETE', '/sessions', { headers: BROWSER });
  } finally {
    forget(true);
  }
}

/** Sign out every session of the account (no body, without the browser header: the API's own meaning). */
export async function signOutEverywhere() {
  await request('DELETE', '/sessions');
  forget(true);
}

/** The session ended on the server side (password change, account deletion). */
export function endSession() {
  forget(true);
}

/** Delete the account; the API also clears this browser's refresh cookie. */
export async function deleteAccount(password) {
  await request('DELETE', '/accounts/me', { body: { confirm: true, password }, headers: BROWSER });
  forget(true);
}
