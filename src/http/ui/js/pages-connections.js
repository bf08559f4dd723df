// Connections (list, detail, close) and channels.

import {
  get, del, enc, h, fill, facts, section, table, field, confirmButton, guarded, showError, showInfo,
  fmtNum, fmtRate, fmtByteRate, fmtBool, fmtValue,
} from './api.js';
import { pagedTable } from './table.js';

const DEFAULT_REASON = 'Closed via management plugin';

/** DELETE /api/connections/{name} with RabbitMQ's X-Reason header. */
export async function closeConnection(name, reason) {
  await del(`/api/connections/${enc(name)}`, { headers: { 'X-Reason': reason || DEFAULT_REASON } });
}

function blocked(c) {
  return c.blocked_by ? h('span', { class: 'blocked', 'data-test': 'blocked-by' }, c.blocked_by) : '';
}

function stateCell(state) {
  return h('span', { class: `state state-${state || 'unknown'}` }, state || '');
}

export async function connectionList(root, _params, ctx) {
  let list;
  list = pagedTable({
    id: 'connections',
    path: () => (ctx.vhost ? `/api/vhosts/${enc(ctx.vhost)}/connections` : '/api/connections'),
    empty: 'No connections.',
    row: (c) => ({ 'data-test': 'connection-row', 'data-name': c.name }),
    columns: [
      {
        title: 'Name', sort: 'name',
        cell: (c) => [h('a', { href: `#/connections/${enc(c.name)}`, 'data-test': 'connection-link' }, c.name),
          c.user_provided_name ? h('div', { class: 'muted small' }, c.user_provided_name) : null],
      },
      { title: 'Virtual host', sort: 'vhost', cell: (c) => c.vhost },
      { title: 'User', sort: 'user', cell: (c) => c.user },
      { title: 'State', sort: 'state', cell: (c) => stateCell(c.state) },
      { title: 'SSL / TLS', sort: 'ssl', cell: (c) => fmtBool(c.ssl), class: 'c' },
      { title: 'Protocol', sort: 'protocol', cell: (c) => c.protocol || '' },
      { title: 'Channels', sort: 'channels', cell: (c) => fmtNum(c.channels), class: 'r' },
      { title: 'From client', sort: 'recv_oct_details.rate', cell: (c) => fmtByteRate(c.recv_oct_details), class: 'r' },
      { title: 'To client', sort: 'send_oct_details.rate', cell: (c) => fmtByteRate(c.send_oct_details), class: 'r' },
      { title: 'Blocked by', sort: 'blocked_by', cell: blocked },
      {
        title: '',
        cell: (c) => confirmButton('Close', 'close-connection', async () => {
          await closeConnection(c.name);
          showInfo(`Connection ${c.name} closed.`);
          await list.refresh();
        }),
      },
    ],
  });
  root.append(h('h1', { 'data-test': 'page-title' }, 'Connections'), list.el);
  await list.refresh();
  return { refresh: list.refresh };
}

export async function connectionDetail(root, [name], ctx) {
  const props = h('div', { id: 'connection-facts' });
  const client = h('div', { id: 'connection-client' });
  const channels = h('div', { id: 'connection-channels' });
  const reason = h('input', { id: 'close-reason', 'data-test': 'close-reason', value: DEFAULT_REASON, size: 40 });
  root.append(
    h('h1', { 'data-test': 'page-title' }, 'Connection ', h('span', { 'data-test': 'connection-name' }, name)),
    section('Overview', null, props),
    section('Client properties', null, client),
    section('Channels', null, channels),
    section('Close this connection', null, h('form', {
      id: 'close-form', class: 'form',
      onsubmit: (ev) => {
        ev.preventDefault();
        guarded(async () => {
          await closeConnection(name, reason.value);
          showInfo(`Connection ${name} closed.`);
          ctx.navigate('#/connections');
        });
      },
    }, field('Reason', reason), h('button', { type: 'submit', class: 'danger', 'data-test': 'close-connection' }, 'Force close'))),
  );

  async function refresh() {
    let c;
    try {
      c = await get(`/api/connections/${enc(name)}`);
    } catch (e) {
      showError(e);
      return;
    }
    fill(props, facts({ 'data-test': 'connection-facts' }, [
      ['User', c.user], ['Virtual host', c.vhost], ['State', stateCell(c.state)],
      ['Blocked by', c.blocked_by || undefined, 'connection-blocked-by'],
      ['Protocol', c.protocol], ['SSL / TLS', fmtBool(c.ssl)],
      ['Client', c.peer_host !== undefined ? `${c.peer_host}:${c.peer_port}` : undefined],
      ['Server', c.host !== undefined ? `${c.host}:${c.port}` : undefined],
      ['Authentication', c.auth_mechanism], ['Heartbeat', c.timeout !== undefined ? `${c.timeout} s` : undefined],
      ['Frame max', fmtNum(c.frame_max)], ['Channel max', fmtNum(c.channel_max)],
      ['Channels', fmtNum(c.channels)],
      ['From client', fmtByteRate(c.recv_oct_details)], ['To client', fmtByteRate(c.send_oct_details)],
      ['Connected at', c.connected_at ? new Date(c.connected_at).toLocaleString() : undefined],
    ]));
    const cp = c.client_properties || {};
    fill(client, facts({ 'data-test': 'client-properties' }, Object.entries(cp).map(([k, v]) => [k, fmtValue(v)])));
    try {
      const all = await get('/api/channels');
      const mine = (Array.isArray(all) ? all : all.items || [])
        .filter((ch) => ch.connection_details && ch.connection_details.name === name);
      fill(channels, channelTable(mine));
    } catch (e) {
      fill(channels, h('p', { class: 'muted' }, `Channels unavailable: ${e.message}`));
    }
  }
  await refresh();
  return { refresh };
}

function mode(ch) {
  return [ch.confirm ? 'C' : '', ch.transactional ? 'T' : ''].join('');
}

function rates(ch, key) {
  return fmtRate((ch.message_stats || {})[key + '_details']);
}

function channelTable(list) {
  return table({ 'data-test': 'connection-channels-table' },
    ['Channel', 'Mode', 'State', 'Unconfirmed', 'Prefetch', 'Unacked'],
    list.map((ch) => [ch.name, mode(ch), stateCell(ch.state), fmtNum(ch.messages_unconfirmed), fmtNum(ch.prefetch_count), fmtNum(ch.messages_unacknowledged)]),
    'No channels.');
}

export async function channelList(root, _params, ctx) {
  const list = pagedTable({
    id: 'channels',
    path: () => (ctx.vhost ? `/api/vhosts/${enc(ctx.vhost)}/channels` : '/api/channels'),
    empty: 'No channels.',
    row: (ch) => ({ 'data-test': 'channel-row', 'data-name': ch.name }),
    columns: [
      {
        title: 'Channel', sort: 'name',
        cell: (ch) => (ch.connection_details && ch.connection_details.name
          ? h('a', { href: `#/connections/${enc(ch.connection_details.name)}` }, ch.name)
          : ch.name),
      },
      { title: 'Virtual host', sort: 'vhost', cell: (ch) => ch.vhost },
      { title: 'User', sort: 'user', cell: (ch) => ch.user },
      { title: 'Mode', cell: mode, class: 'c' },
      { title: 'State', sort: 'state', cell: (ch) => stateCell(ch.state) },
      { title: 'Unconfirmed', sort: 'messages_unconfirmed', cell: (ch) => fmtNum(ch.messages_unconfirmed), class: 'r' },
      { title: 'Prefetch', sort: 'prefetch_count', cell: (ch) => fmtNum(ch.prefetch_count), class: 'r' },
      { title: 'Unacked', sort: 'messages_unacknowledged', cell: (ch) => fmtNum(ch.messages_unacknowledged), class: 'r' },
      { title: 'Publish', sort: 'message_stats.publish_details.rate', cell: (ch) => rates(ch, 'publish'), class: 'r' },
      { title: 'Confirm', sort: 'message_stats.confirm_details.rate', cell: (ch) => rates(ch, 'confirm'), class: 'r' },
      { title: 'Deliver / get', sort: 'message_stats.deliver_get_details.rate', cell: (ch) => rates(ch, 'deliver_get'), class: 'r' },
      { title: 'Ack', sort: 'message_stats.ack_details.rate', cell: (ch) => rates(ch, 'ack'), class: 'r' },
    ],
  });
  root.append(h('h1', { 'data-test': 'page-title' }, 'Channels'), list.el);
  await list.refresh();
  return { refresh: list.refresh };
}
