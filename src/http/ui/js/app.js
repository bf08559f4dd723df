// The single-page app: login, the layout (navigation, vhost select, refresh
// timer) and hash routing (`#/queues/%2F/q1`), as RabbitMQ's management UI.

import {
  get, h, basicAuth, saveLogin, forgetLogin, currentUser, authHeader, isAdministrator,
  setUnauthorizedHandler, showError, clearError, clearInfo, ApiError, fill,
} from './api.js';
import * as overview from './pages-overview.js';
import * as connections from './pages-connections.js';
import * as exchanges from './pages-exchanges.js';
import * as queues from './pages-queues.js';
import * as admin from './pages-admin.js';

const VHOST_KEY = 'warren-vhost';

// [pattern on the hash, page, nav item]; groups are URI-decoded parameters.
const ROUTES = [
  [/^\/?$/, overview.overview, 'overview'],
  [/^\/connections$/, connections.connectionList, 'connections'],
  [/^\/connections\/([^/]+)$/, connections.connectionDetail, 'connections'],
  [/^\/channels$/, connections.channelList, 'channels'],
  [/^\/exchanges$/, exchanges.exchangeList, 'exchanges'],
  [/^\/exchanges\/([^/]+)\/([^/]*)$/, exchanges.exchangeDetail, 'exchanges'],
  [/^\/queues$/, queues.queueList, 'queues'],
  [/^\/queues\/([^/]+)\/([^/]+)$/, queues.queueDetail, 'queues'],
  [/^\/admin$/, admin.adminPage, 'admin'],
  [/^\/definitions$/, admin.definitionsPage, 'definitions'],
];

/** What pages get: the selected vhost ('' for all) and the known vhosts. */
const ctx = {
  vhost: sessionStorage.getItem(VHOST_KEY) || '',
  vhosts: [],
  exchangeTypes: ['direct', 'fanout', 'headers', 'topic'],
  navigate: (hash) => { location.hash = hash; },
};

let current = null; // {refresh, stop} of the page on screen
let timer = null;
let generation = 0;

function $(id) {
  return document.getElementById(id);
}

// ---- login

function showLogin(message) {
  stopPage();
  $('top').hidden = true;
  fill($('main'));
  $('login').hidden = false;
  const err = $('login-error');
  err.hidden = !message;
  err.textContent = message || '';
  $('login-username').focus();
}

async function onLogin(ev) {
  ev.preventDefault();
  const user = $('login-username').value;
  const header = basicAuth(user, $('login-password').value);
  const err = $('login-error');
  err.hidden = true;
  try {
    const who = await get('/api/whoami', { auth: header });
    saveLogin(header, who);
    $('login-password').value = '';
    await startApp();
  } catch (e) {
    const why = e instanceof ApiError && e.status === 401 ? e.reason : e.message;
    err.textContent = !why || why === 'Login failed' ? 'Login failed' : `Login failed: ${why}`;
    err.hidden = false;
  }
}

function logout() {
  forgetLogin();
  showLogin();
}

// ---- layout

async function startApp() {
  $('login').hidden = true;
  $('top').hidden = false;
  $('current-user').textContent = (currentUser() || {}).name || '';
  document.body.classList.toggle('not-admin', !isAdministrator());
  await Promise.all([loadVhosts(), loadVersion()]);
  route();
}

async function loadVersion() {
  try {
    const o = await get('/api/overview');
    if (Array.isArray(o.exchange_types) && o.exchange_types.length) {
      ctx.exchangeTypes = o.exchange_types.map((t) => t.name).sort();
    }
    $('top-version').textContent = [o.product_name, o.product_version].filter(Boolean).join(' ')
      + (o.rabbitmq_version ? ` (RabbitMQ ${o.rabbitmq_version} API)` : '');
  } catch (_) {
    $('top-version').textContent = '';
  }
}

/** Fills the vhost select; keeps the selection if it still exists. */
export async function loadVhosts() {
  let list = [];
  try {
    list = (await get('/api/vhosts')).map((v) => v.name).sort();
  } catch (_) {
    list = [];
  }
  ctx.vhosts = list;
  if (ctx.vhost && !list.includes(ctx.vhost)) setVhost('');
  fill($('vhost-select'), h('option', { value: '' }, 'All'),
    list.map((v) => h('option', { value: v, selected: v === ctx.vhost }, v)));
}
ctx.reloadVhosts = loadVhosts;

function setVhost(v) {
  ctx.vhost = v;
  sessionStorage.setItem(VHOST_KEY, v);
}

// ---- routing

function stopPage() {
  clearInterval(timer);
  timer = null;
  if (current && current.stop) current.stop();
  current = null;
}

function restartTimer() {
  clearInterval(timer);
  timer = null;
  const ms = Number($('refresh-interval').value);
  if (ms > 0 && current && current.refresh) {
    timer = setInterval(() => {
      // Not while a "Are you sure?" is open: the refresh would redraw it away.
      if (current && current.refresh && !document.querySelector('.confirm.asking')) current.refresh();
    }, ms);
  }
}

async function route() {
  if (!authHeader()) {
    showLogin();
    return;
  }
  stopPage();
  clearError();
  const mine = ++generation;
  const path = location.hash.replace(/^#/, '') || '/';
  let page = null;
  let params = [];
  let nav = '';
  for (const [re, p, n] of ROUTES) {
    const m = re.exec(path);
    if (m) {
      page = p;
      nav = n;
      params = m.slice(1).map((x) => decodeURIComponent(x));
      break;
    }
  }
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.nav === nav);
  const main = $('main');
  const container = h('div', { class: 'page', 'data-page': nav || 'none' });
  fill(main, container);
  if (!page) {
    container.append(h('h1', { 'data-test': 'page-title' }, 'Not found'), h('p', null, 'No page at ', h('code', null, path), '.'));
    return;
  }
  try {
    const p = await page(container, params, ctx);
    if (mine !== generation) {
      if (p && p.stop) p.stop();
      return;
    }
    current = p || null;
    restartTimer();
  } catch (e) {
    if (mine === generation) showError(e);
  }
}

// ---- start

function init() {
  setUnauthorizedHandler(() => {
    forgetLogin();
    showLogin('Your session is no longer valid: log in again.');
  });
  window.addEventListener('error', (e) => showError(`Script error: ${e.message}`));
  window.addEventListener('unhandledrejection', (e) => showError(e.reason || 'unhandled error'));
  $('login-form').addEventListener('submit', onLogin);
  $('logout').addEventListener('click', logout);
  $('error-close').addEventListener('click', clearError);
  $('info-banner').addEventListener('click', clearInfo);
  $('refresh').addEventListener('click', () => current && current.refresh && current.refresh());
  $('refresh-interval').addEventListener('change', restartTimer);
  $('vhost-select').addEventListener('change', (e) => {
    setVhost(e.target.value);
    route();
  });
  window.addEventListener('hashchange', route);
  if (!authHeader()) {
    showLogin();
    return;
  }
  // A stored login: check it is still good before showing anything.
  get('/api/whoami').then((who) => {
    saveLogin(authHeader(), who);
    return startApp();
  }).catch((e) => {
    if (e instanceof ApiError && e.status === 401) return; // the handler logged out
    forgetLogin();
    showLogin(`Cannot check the stored login: ${e.message}`);
  });
}

init();
