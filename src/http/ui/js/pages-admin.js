// Admin (users, virtual hosts, permissions, limits) and Definitions
// (download and upload).

import {
  get, put, post, del, enc, h, fill, section, table, field, select, confirmButton, guarded,
  showError, showInfo, tagList, fmtValue, fmtNum,
} from './api.js';

const TAGS = ['administrator', 'monitoring', 'policymaker', 'management', 'impersonator'];
const VHOST_LIMITS = ['max-connections', 'max-queues'];
const USER_LIMITS = ['max-connections', 'max-channels'];

export async function adminPage(root, _params, ctx) {
  const users = h('div', { id: 'users' });
  const vhosts = h('div', { id: 'vhosts' });
  const perms = h('div', { id: 'permissions' });
  const limits = h('div', { id: 'limits' });
  const permForm = h('div');
  const limitForm = h('div');
  root.append(
    h('h1', { 'data-test': 'page-title' }, 'Admin'),
    h('nav', { class: 'subnav' }, ['users', 'vhosts', 'permissions', 'limits'].map((s) =>
      h('a', { href: '#', 'data-section': s, onclick: (ev) => { ev.preventDefault(); document.getElementById(`section-${s}`).scrollIntoView(); } },
        s === 'vhosts' ? 'Virtual hosts' : s[0].toUpperCase() + s.slice(1)))),
    section('Users', { id: 'section-users', 'data-test': 'section-users' }, users, addUserForm(() => refresh())),
    section('Virtual hosts', { id: 'section-vhosts', 'data-test': 'section-vhosts' }, vhosts, addVhostForm(ctx, () => refresh())),
    section('Permissions', { id: 'section-permissions', 'data-test': 'section-permissions' }, perms, permForm),
    section('Limits', { id: 'section-limits', 'data-test': 'section-limits' }, limits, limitForm),
  );

  // The forms' user and vhost selects follow the lists; they are rebuilt
  // only when those change, so that a refresh does not reset a half-filled form.
  let known = '';

  async function refresh() {
    let u;
    let v;
    let p;
    let vl;
    let ul;
    try {
      [u, v, p, vl, ul] = await Promise.all([
        get('/api/users'), get('/api/vhosts'), get('/api/permissions'), get('/api/vhost-limits'), get('/api/user-limits'),
      ]);
    } catch (e) {
      showError(e);
      return;
    }
    const userNames = u.map((x) => x.name).sort();
    const vhostNames = v.map((x) => x.name).sort();
    fill(users, usersTable(u, refresh));
    fill(vhosts, vhostsTable(v, ctx, refresh));
    fill(perms, permsTable(p, refresh));
    fill(limits, limitsTable(vl, ul, refresh));
    const key = JSON.stringify([userNames, vhostNames]);
    if (key !== known) {
      known = key;
      fill(permForm, setPermissionForm(userNames, vhostNames, refresh));
      fill(limitForm, setLimitForm(userNames, vhostNames, refresh));
    }
  }
  await refresh();
  return { refresh };
}

function usersTable(list, refresh) {
  return table({ id: 'users-table', 'data-test': 'users-table' }, ['Name', 'Tags', 'Has password', 'Limits', ''],
    list.sort((a, b) => (a.name < b.name ? -1 : 1)).map((u) => h('tr', { 'data-test': 'user-row', 'data-name': u.name },
      h('td', { 'data-test': 'user-name' }, u.name),
      h('td', null, tagList(u.tags).join(', ')),
      h('td', { class: 'c' }, u.password_hash ? '●' : '○'),
      h('td', null, Object.entries(u.limits || {}).map(([k, v]) => `${k}: ${v}`).join(', ')),
      h('td', null, confirmButton('Delete', 'user-delete', async () => {
        await del(`/api/users/${enc(u.name)}`);
        showInfo(`User ${u.name} deleted.`);
        await refresh();
      })))), 'No users.');
}

function addUserForm(onDone) {
  const name = h('input', { id: 'add-user-name', 'data-test': 'add-user-name', required: true, autocomplete: 'off' });
  const password = h('input', { id: 'add-user-password', 'data-test': 'add-user-password', type: 'password', autocomplete: 'new-password' });
  const noPassword = h('input', { id: 'add-user-no-password', 'data-test': 'add-user-no-password', type: 'checkbox' });
  const tags = h('input', { id: 'add-user-tags', 'data-test': 'add-user-tags', placeholder: 'administrator, management' });
  const addTag = (t) => {
    const have = tagList(tags.value);
    if (!have.includes(t)) tags.value = have.concat(t).join(', ');
  };
  return h('form', {
    id: 'add-user-form', class: 'form', 'data-test': 'add-user-form',
    onsubmit: (ev) => {
      ev.preventDefault();
      guarded(async () => {
        const body = { tags: tagList(tags.value).join(',') };
        if (noPassword.checked) body.password_hash = '';
        else body.password = password.value;
        await put(`/api/users/${enc(name.value)}`, body);
        showInfo(`User ${name.value} added.`);
        name.value = '';
        password.value = '';
        tags.value = '';
        await onDone();
      });
    },
  }, h('h3', null, 'Add a user'), field('Username', name), field('Password', password),
  field('No password', noPassword, 'the user can only log in some other way'),
  field('Tags', tags, h('span', null, 'Set: ', TAGS.map((t, i) => [i ? ' | ' : '',
    h('a', { href: '#', 'data-tag': t, onclick: (ev) => { ev.preventDefault(); addTag(t); } }, t)]))),
  h('button', { type: 'submit', 'data-test': 'add-user-submit' }, 'Add user'));
}

function vhostsTable(list, ctx, refresh) {
  return table({ id: 'vhosts-table', 'data-test': 'vhosts-table' }, ['Name', 'Description', 'Tags', 'Default queue type', 'Messages', ''],
    list.map((v) => h('tr', { 'data-test': 'vhost-row', 'data-name': v.name },
      h('td', { 'data-test': 'vhost-name' }, v.name),
      h('td', null, v.description || (v.metadata && v.metadata.description) || ''),
      h('td', null, tagList(v.tags || (v.metadata && v.metadata.tags)).join(', ')),
      h('td', null, v.default_queue_type && v.default_queue_type !== 'undefined' ? v.default_queue_type : ''),
      h('td', { class: 'r' }, fmtNum(v.messages)),
      h('td', null, confirmButton('Delete', 'vhost-delete', async () => {
        await del(`/api/vhosts/${enc(v.name)}`);
        showInfo(`Virtual host ${v.name} deleted.`);
        await ctx.reloadVhosts();
        await refresh();
      })))), 'No virtual hosts.');
}

function addVhostForm(ctx, onDone) {
  const name = h('input', { id: 'add-vhost-name', 'data-test': 'add-vhost-name', required: true });
  const description = h('input', { id: 'add-vhost-description', 'data-test': 'add-vhost-description' });
  const tags = h('input', { id: 'add-vhost-tags', 'data-test': 'add-vhost-tags' });
  return h('form', {
    id: 'add-vhost-form', class: 'form',
    onsubmit: (ev) => {
      ev.preventDefault();
      guarded(async () => {
        await put(`/api/vhosts/${enc(name.value)}`, { description: description.value, tags: tagList(tags.value).join(',') });
        showInfo(`Virtual host ${name.value} added.`);
        name.value = '';
        description.value = '';
        tags.value = '';
        await ctx.reloadVhosts();
        await onDone();
      });
    },
  }, h('h3', null, 'Add a new virtual host'), field('Name', name), field('Description', description),
  field('Tags', tags, 'comma-separated'), h('button', { type: 'submit', 'data-test': 'add-vhost-submit' }, 'Add virtual host'));
}

function permsTable(list, refresh) {
  return table({ id: 'permissions-table', 'data-test': 'permissions-table' }, ['User', 'Virtual host', 'Configure', 'Write', 'Read', ''],
    list.map((p) => h('tr', { 'data-test': 'permission-row', 'data-user': p.user, 'data-vhost': p.vhost },
      h('td', null, p.user), h('td', null, p.vhost), h('td', null, h('code', null, p.configure)),
      h('td', null, h('code', null, p.write)), h('td', null, h('code', null, p.read)),
      h('td', null, confirmButton('Clear', 'permission-clear', async () => {
        await del(`/api/permissions/${enc(p.vhost)}/${enc(p.user)}`);
        showInfo(`Permissions of ${p.user} in ${p.vhost} cleared.`);
        await refresh();
      })))), 'No permissions.');
}

function setPermissionForm(users, vhosts, onDone) {
  const user = select({ id: 'perm-user', 'data-test': 'perm-user' }, users, users[0]);
  const vhost = select({ id: 'perm-vhost', 'data-test': 'perm-vhost' }, vhosts, vhosts.includes('/') ? '/' : vhosts[0]);
  const configure = h('input', { id: 'perm-configure', 'data-test': 'perm-configure', value: '.*' });
  const write = h('input', { id: 'perm-write', 'data-test': 'perm-write', value: '.*' });
  const read = h('input', { id: 'perm-read', 'data-test': 'perm-read', value: '.*' });
  return h('form', {
    id: 'perm-form', class: 'form',
    onsubmit: (ev) => {
      ev.preventDefault();
      guarded(async () => {
        await put(`/api/permissions/${enc(vhost.value)}/${enc(user.value)}`,
          { configure: configure.value, write: write.value, read: read.value });
        showInfo(`Permissions of ${user.value} in ${vhost.value} set.`);
        await onDone();
      });
    },
  }, h('h3', null, 'Set permission'), field('User', user), field('Virtual host', vhost),
  field('Configure regexp', configure), field('Write regexp', write), field('Read regexp', read),
  h('button', { type: 'submit', 'data-test': 'perm-submit' }, 'Set permission'));
}

function limitsTable(vhostLimits, userLimits, refresh) {
  const rows = [];
  for (const [kind, list] of [['vhost', vhostLimits], ['user', userLimits]]) {
    for (const l of list || []) {
      const who = kind === 'vhost' ? l.vhost : l.user;
      for (const [name, value] of Object.entries(l.value || {})) {
        const path = kind === 'vhost'
          ? `/api/vhost-limits/${enc(who)}/${enc(name)}`
          : `/api/user-limits/${enc(who)}/${enc(name)}`;
        rows.push(h('tr', { 'data-test': 'limit-row', 'data-kind': kind, 'data-name': who, 'data-limit': name },
          h('td', null, kind === 'vhost' ? 'Virtual host' : 'User'), h('td', null, who), h('td', null, name),
          h('td', { class: 'r' }, fmtValue(value)),
          h('td', null, confirmButton('Clear', 'limit-clear', async () => {
            await del(path);
            showInfo(`Limit ${name} of ${who} cleared.`);
            await refresh();
          }))));
      }
    }
  }
  return table({ id: 'limits-table', 'data-test': 'limits-table' }, ['Applies to', 'Name', 'Limit', 'Value', ''], rows, 'No limits.');
}

function setLimitForm(users, vhosts, onDone) {
  const kind = select({ id: 'limit-kind', 'data-test': 'limit-kind' }, [['vhost', 'Virtual host'], ['user', 'User']], 'vhost');
  const who = h('select', { id: 'limit-target', 'data-test': 'limit-target' });
  const name = h('select', { id: 'limit-name', 'data-test': 'limit-name' });
  const value = h('input', { id: 'limit-value', 'data-test': 'limit-value', type: 'number', required: true });
  const sync = () => {
    const targets = kind.value === 'vhost' ? vhosts : users;
    fill(who, targets.map((t) => h('option', { value: t }, t)));
    fill(name, (kind.value === 'vhost' ? VHOST_LIMITS : USER_LIMITS).map((n) => h('option', { value: n }, n)));
  };
  kind.addEventListener('change', sync);
  sync();
  return h('form', {
    id: 'limit-form', class: 'form',
    onsubmit: (ev) => {
      ev.preventDefault();
      guarded(async () => {
        const base = kind.value === 'vhost' ? '/api/vhost-limits' : '/api/user-limits';
        await put(`${base}/${enc(who.value)}/${enc(name.value)}`, { value: Number(value.value) });
        showInfo(`Limit ${name.value} of ${who.value} set.`);
        await onDone();
      });
    },
  }, h('h3', null, 'Set a limit'), field('Applies to', kind), field('Name', who), field('Limit', name),
  field('Value', value, 'a negative value means no limit'), h('button', { type: 'submit', 'data-test': 'limit-submit' }, 'Set limit'));
}

// ---- definitions

export async function definitionsPage(root, _params, ctx) {
  const status = h('p', { id: 'definitions-status', 'data-test': 'definitions-status', class: 'result', 'aria-live': 'polite' });
  const file = h('input', { id: 'definitions-file', 'data-test': 'definitions-file', type: 'file', accept: '.json,application/json' });
  root.append(
    h('h1', { 'data-test': 'page-title' }, 'Definitions'),
    section('Export definitions', { 'data-test': 'section-export' },
      h('p', null, 'Users, virtual hosts, permissions, limits, queues, exchanges and bindings, as one JSON file.'),
      h('button', {
        type: 'button', id: 'definitions-download', 'data-test': 'definitions-download',
        onclick: () => guarded(async () => {
          status.textContent = '';
          const defs = await get('/api/definitions');
          const name = `warren_definitions_${new Date().toISOString().slice(0, 10)}.json`;
          download(name, JSON.stringify(defs, null, 2));
          status.textContent = `Downloaded ${name}.`;
        }),
      }, 'Download broker definitions')),
    section('Import definitions', { 'data-test': 'section-import' },
      h('form', {
        id: 'definitions-form', class: 'form',
        onsubmit: (ev) => {
          ev.preventDefault();
          status.textContent = '';
          guarded(async () => {
            const f = file.files && file.files[0];
            if (!f) throw new Error('Choose a definitions file first.');
            await post('/api/definitions', await f.text());
            status.textContent = `Definitions from ${f.name} imported.`;
            showInfo('Definitions imported.');
            await ctx.reloadVhosts();
          });
        },
      }, field('Definitions file', file), h('button', { type: 'submit', 'data-test': 'definitions-upload' }, 'Upload broker definitions'))),
    status,
  );
  return {};
}

/** Saves `text` as a file through a temporary blob link. */
function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: 'application/json' }));
  const a = h('a', { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
