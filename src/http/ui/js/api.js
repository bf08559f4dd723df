// The API client, the banners and small DOM and formatting helpers shared by
// every page.

const AUTH_KEY = 'warren-auth';
const USER_KEY = 'warren-user';

// ---- credentials (sessionStorage, like RabbitMQ's UI keeps them in a cookie)

export function authHeader() {
  return sessionStorage.getItem(AUTH_KEY);
}

export function currentUser() {
  try {
    return JSON.parse(sessionStorage.getItem(USER_KEY) || 'null');
  } catch (_) {
    return null;
  }
}

export function basicAuth(username, password) {
  const bytes = new TextEncoder().encode(username + ':' + password);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return 'Basic ' + btoa(bin);
}

export function saveLogin(header, whoami) {
  sessionStorage.setItem(AUTH_KEY, header);
  sessionStorage.setItem(USER_KEY, JSON.stringify(whoami));
}

export function forgetLogin() {
  sessionStorage.removeItem(AUTH_KEY);
  sessionStorage.removeItem(USER_KEY);
}

export function isAdministrator() {
  const u = currentUser();
  return !!u && tagList(u.tags).includes('administrator');
}

// ---- requests

/** An error answer of the API: HTTP status and RabbitMQ's `reason`. */
export class ApiError extends Error {
  constructor(status, error, reason) {
    super(reason || error || ('HTTP ' + status));
    this.status = status;
    this.error = error;
    this.reason = reason;
  }
}

let onUnauthorized = () => {};

/** What to do when a logged-in session gets a 401 (log out). */
export function setUnauthorizedHandler(f) {
  onUnauthorized = f;
}

/**
 * Calls the API: `path` starts with `/api/`; `body` (if not undefined) is
 * sent as JSON, or as is when it is a string. Resolves to the parsed JSON
 * answer (null for an empty one); rejects with an ApiError.
 */
export async function request(method, path, body, opts = {}) {
  const headers = { Accept: 'application/json' };
  const auth = opts.auth || authHeader();
  if (auth) headers.Authorization = auth;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  Object.assign(headers, opts.headers || {});
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)),
      // 'omit': no HTTP auth cache and no browser login dialog on a 401;
      // the Authorization header above is still sent.
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, 'network_error', 'Cannot reach the server: ' + e.message);
  }
  const text = await res.text();
  let json = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch (_) {
      json = null;
    }
  }
  if (!res.ok) {
    const reason = json && json.reason;
    const err = new ApiError(res.status, json && json.error,
      Array.isArray(reason) ? JSON.stringify(reason) : (reason || res.statusText));
    // 401 `not_authorized` (or no body): the credentials no longer work, log
    // out. 401 `not_authorised` (with an s): this user may not do that.
    if (res.status === 401 && !opts.auth && authHeader() && err.error !== 'not_authorised') onUnauthorized(err);
    throw err;
  }
  return json;
}

export const get = (path, opts) => request('GET', path, undefined, opts);
export const put = (path, body, opts) => request('PUT', path, body === undefined ? {} : body, opts);
export const post = (path, body, opts) => request('POST', path, body === undefined ? {} : body, opts);
export const del = (path, opts) => request('DELETE', path, undefined, opts);

/** One path segment: vhost `/` is `%2F`. */
export const enc = (s) => encodeURIComponent(s);

// ---- banners

let infoTimer = null;

export function showError(e) {
  const msg = typeof e === 'string' ? e : (e && e.message) || String(e);
  const prefix = e && e.status ? `${e.status}${e.error ? ' ' + e.error : ''}: ` : '';
  document.getElementById('error-text').textContent = prefix + msg;
  document.getElementById('error-banner').hidden = false;
}

export function clearError() {
  document.getElementById('error-banner').hidden = true;
  document.getElementById('error-text').textContent = '';
}

export function showInfo(msg) {
  document.getElementById('info-text').textContent = msg;
  document.getElementById('info-banner').hidden = false;
  clearTimeout(infoTimer);
  infoTimer = setTimeout(clearInfo, 8000);
}

export function clearInfo() {
  document.getElementById('info-banner').hidden = true;
}

/** Runs `f` (an action): old notices go; an error goes to the banner. */
export async function guarded(f) {
  try {
    clearError();
    clearInfo();
    return await f();
  } catch (e) {
    showError(e);
    return undefined;
  }
}

// ---- DOM

/**
 * Makes an element: h('a', {href: '#/', 'data-test': 'x', onclick: f}, 'text', child…).
 * Strings become text nodes (never HTML); null/undefined/false children are skipped.
 */
export function h(tag, attrs, ...children) {
  const svg = tag.startsWith('svg:');
  const el = svg
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.setAttribute('class', v);
    else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
    else if (!svg && k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A table: headers are strings or nodes; rows are arrays of cells or <tr>s. */
export function table(attrs, headers, rows, empty = 'Nothing to show.') {
  return h('table', Object.assign({ class: 'list' }, attrs),
    h('thead', null, h('tr', null, headers.map((x) => (x instanceof Node ? x : h('th', null, x))))),
    h('tbody', null, rows.length
      ? rows.map((r) => (r instanceof Node ? r : h('tr', null, r.map((c) => (c instanceof Node && c.tagName === 'TD' ? c : h('td', null, c))))))
      : h('tr', null, h('td', { colSpan: headers.length, class: 'empty' }, empty))));
}

/** A two-column key/value table. */
export function facts(attrs, pairs) {
  return h('table', Object.assign({ class: 'facts' }, attrs),
    h('tbody', null, pairs.filter((p) => p && p[1] !== undefined && p[1] !== null)
      .map(([k, v, test]) => h('tr', null, h('th', null, k), h('td', test ? { 'data-test': test } : null, v)))));
}

/** A collapsible section. */
export function section(title, attrs, ...body) {
  return h('details', Object.assign({ class: 'section', open: true }, attrs),
    h('summary', null, title), h('div', { class: 'section-body' }, ...body));
}

/** A labelled form field. */
export function field(label, input, hint) {
  return h('label', { class: 'field' }, h('span', { class: 'field-label' }, label), input,
    hint ? h('span', { class: 'hint' }, hint) : null);
}

/** A <select> of [value, label] pairs (or plain values). */
export function select(attrs, options, selected) {
  return h('select', attrs, options.map((o) => {
    const [v, l] = Array.isArray(o) ? o : [o, o];
    return h('option', { value: v, selected: v === selected }, l);
  }));
}

/**
 * A button that asks before acting: the first click shows "Are you sure?"
 * with Yes (data-test `${test}-confirm`) and No. While it asks, the page's
 * automatic refresh waits (see app.js), so that the question stays.
 */
export function confirmButton(label, test, action, cls = 'danger') {
  const wrap = h('span', { class: 'confirm' });
  const reset = () => {
    wrap.classList.remove('asking');
    fill(wrap, btn);
  };
  const btn = h('button', {
    type: 'button', class: cls, 'data-test': test,
    onclick: () => wrap.classList.add('asking') || fill(wrap,
      h('span', { class: 'sure' }, 'Are you sure? '),
      h('button', { type: 'button', class: cls, 'data-test': test + '-confirm', onclick: () => { reset(); guarded(action); } }, 'Yes, ' + label.toLowerCase()),
      ' ',
      h('button', { type: 'button', 'data-test': test + '-cancel', onclick: reset }, 'No')),
  }, label);
  return fill(wrap, btn);
}

/** Parses `key = value` lines into an object (RabbitMQ's arguments fields). */
export function parseArgs(text) {
  const out = {};
  for (const raw of (text || '').split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const i = line.indexOf('=');
    if (i < 0) throw new Error(`"${line}" is not key = value`);
    out[line.slice(0, i).trim()] = typedValue(line.slice(i + 1).trim());
  }
  return out;
}

/** RabbitMQ's UI types: numbers, true/false, JSON lists and objects, else strings. */
export function typedValue(s) {
  if (/^-?\d+(\.\d+)?$/.test(s)) return Number(s);
  if (s === 'true') return true;
  if (s === 'false') return false;
  if (/^[[{]/.test(s)) {
    try { return JSON.parse(s); } catch (_) { /* a string after all */ }
  }
  return s;
}

// ---- formatting

export function tagList(tags) {
  if (Array.isArray(tags)) return tags;
  return (tags || '').split(',').map((t) => t.trim()).filter(Boolean);
}

export function fmtNum(n) {
  if (n === undefined || n === null || n === '') return '';
  if (typeof n !== 'number') return String(n);
  return n.toLocaleString('en-US', { maximumFractionDigits: 2 });
}

export function fmtRate(details) {
  const r = details && typeof details.rate === 'number' ? details.rate : null;
  if (r === null) return '';
  return (r < 10 ? r.toFixed(1) : Math.round(r).toLocaleString('en-US')) + '/s';
}

/** A bytes/s rate from a `*_details` object. */
export function fmtByteRate(details) {
  const r = details && typeof details.rate === 'number' ? details.rate : null;
  return r === null ? '' : fmtBytes(Math.round(r)) + '/s';
}

export function fmtBytes(n) {
  if (typeof n !== 'number') return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + units[i];
}

export function fmtBool(b) {
  if (b === undefined || b === null) return '';
  return b ? '●' : '○';
}

export function fmtValue(v) {
  if (v === undefined || v === null) return '';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** `x-message-ttl: 1000` lines for an arguments object. */
export function fmtArgs(args) {
  const entries = Object.entries(args || {});
  if (!entries.length) return '';
  return h('span', { class: 'args' }, entries.map(([k, v]) => h('span', { class: 'arg' }, k + ': ' + fmtValue(v))));
}

/** RabbitMQ's feature letters: D, AD, Excl, I and argument names. */
export function features(o) {
  const tags = [];
  if (o.durable) tags.push(['D', 'durable']);
  if (o.auto_delete) tags.push(['AD', 'auto-delete']);
  if (o.exclusive) tags.push(['Excl', 'exclusive']);
  if (o.internal) tags.push(['I', 'internal']);
  for (const [k, v] of Object.entries(o.arguments || {})) {
    if (k !== 'x-queue-type') tags.push([k.replace(/^x-/, ''), `${k}: ${fmtValue(v)}`]);
  }
  return h('span', { class: 'features' }, tags.map(([t, title]) => h('abbr', { class: 'feature', title }, t)));
}

/** "(AMQP default)" for the default exchange, as RabbitMQ's UI. */
export function exchangeLabel(name) {
  return name === '' ? '(AMQP default)' : name;
}

export function pathOf(obj, dotted) {
  return dotted.split('.').reduce((o, k) => (o == null ? undefined : o[k]), obj);
}
