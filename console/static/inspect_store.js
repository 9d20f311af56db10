// Where a started inspection lives on the phone until the server has it: the draft (answers, signature, state)
// in localStorage, the photos' bytes in IndexedDB. Both survive a reload and a dropped connection. Nothing here
// talks to the server (inspect.js does).

const PREFIX = "firelink.inspect.";
const DB_NAME = "firelink-inspect";
const STORE = "photos";

/** The draft of this unit's inspection on this phone, or null. */
export function loadDraft(unitId) {
  try {
    const d = JSON.parse(localStorage.getItem(PREFIX + unitId) || "null");
    return d && d.unit_id === unitId ? d : null;
  } catch {
    return null;
  }
}

/** Saves the draft (throws when the phone's storage is full: the caller says so). */
export function saveDraft(draft) {
  draft.saved_at = new Date().toISOString();
  localStorage.setItem(PREFIX + draft.unit_id, JSON.stringify(draft));
}

export function dropDraft(unitId) {
  localStorage.removeItem(PREFIX + unitId);
}

/** Every draft on this phone (to list the ones not yet sent). */
export function allDrafts() {
  const out = [];
  for (let i = 0; i < localStorage.length; i++) {
    const key = localStorage.key(i);
    if (!key || !key.startsWith(PREFIX)) continue;
    const d = loadDraft(key.slice(PREFIX.length));
    if (d) out.push(d);
  }
  return out;
}

let opening = null;

function db() {
  if (!opening) {
    opening = new Promise((resolve, reject) => {
      const req = indexedDB.open(DB_NAME, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(STORE);
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }
  return opening;
}

async function run(mode, fn) {
  const conn = await db();
  return new Promise((resolve, reject) => {
    const tx = conn.transaction(STORE, mode);
    const req = fn(tx.objectStore(STORE));
    tx.oncomplete = () => resolve(req.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

export const putPhoto = (id, blob) => run("readwrite", (s) => s.put(blob, id));
export const getPhoto = (id) => run("readonly", (s) => s.get(id));
export const deletePhoto = (id) => run("readwrite", (s) => s.delete(id));

/** A random id (the inspection's idempotency key, a photo's client id); works outside secure contexts too. */
export function newId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
