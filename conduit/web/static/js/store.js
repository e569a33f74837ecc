// The signed-in account, shared by every page (its time zone formats every time shown).
import { useEffect, useState } from './lib.js';
import * as api from './api.js';

let account = null;
const listeners = new Set();

export function getAccount() {
  return account;
}

export function setAccount(value) {
  account = value;
  listeners.forEach((listener) => listener(account));
}

export async function reloadAccount() {
  setAccount(await api.get('/accounts/me'));
  return account;
}

export function useAccount() {
  const [value, setValue] = useState(account);
  useEffect(() => {
    listeners.add(setValue);
    return () => listeners.delete(setValue);
  }, []);
  return value;
}
