// Queues: the paged list with "Add a new queue", and a queue's page:
// numbers, consumers, bindings (+ add), "Get messages", purge, delete, and
// warren's time-in-queue histogram (`latency`) when the queue has one.

import {
  get, put, post, del, enc, h, fill, facts, section, table, field, select, confirmButton, guarded,
  showError, showInfo, parseArgs, fmtArgs, fmtNum, fmtRate, fmtBool, fmtValue, features,
} from './api.js';
import { pagedTable } from './table.js';
import { barChart } from './charts.js';
import { bindingsTable, queueHref } from './pages-exchanges.js';

function queuePath(vhost, name) {
  return `/api/queues/${enc(vhost)}/${enc(name)}`;
}

function rate(q, key) {
  return fmtRate((q.message_stats || {})[key + '_details']);
}

// The argument shortcuts of RabbitMQ's "Add a new queue" form.
const ARG_HELP = [
  ['x-message-ttl', 'Message TTL (ms)'], ['x-expires', 'Auto expire (ms)'], ['x-max-length', 'Max length'],
  ['x-max-length-bytes', 'Max length bytes'], ['x-overflow', 'Overflow behaviour'],
  ['x-dead-letter-exchange', 'Dead letter exchange'], ['x-dead-letter-routing-key', 'Dead letter routing key'],
  ['x-single-active-consumer', 'Single active consumer'], ['x-max-priority', 'Maximum priority'],
];

export async function queueList(root, _params, ctx) {
  const list = pagedTable({
    id: 'queues',
    path: () => (ctx.vhost ? `/api/queues/${enc(ctx.vhost)}` : '/api/queues'),
    empty: 'No queues.',
    row: (q) => ({ 'data-test': 'queue-row', 'data-name': q.name, 'data-vhost': q.vhost }),
    columns: [
      { title: 'Virtual host', sort: 'vhost', cell: (q) => q.vhost },
      { title: 'Name', sort: 'name', cell: (q) => h('a', { href: queueHref(q.vhost, q.name), 'data-test': 'queue-link' }, q.name) },
      { title: 'Type', sort: 'type', cell: (q) => q.type || '' },
      { title: 'Features', cell: features },
      { title: 'State', sort: 'state', cell: (q) => h('span', { class: `state state-${q.state}` }, q.state || '') },
      { title: 'Ready', sort: 'messages_ready', cell: (q) => h('span', { 'data-test': 'queue-ready' }, fmtNum(q.messages_ready)), class: 'r' },
      { title: 'Unacked', sort: 'messages_unacknowledged', cell: (q) => h('span', { 'data-test': 'queue-unacked' }, fmtNum(q.messages_unacknowledged)), class: 'r' },
      { title: 'Total', sort: 'messages', cell: (q) => h('span', { 'data-test': 'queue-messages' }, fmtNum(q.messages)), class: 'r' },
      { title: 'Incoming', sort: 'message_stats.publish_details.rate', cell: (q) => rate(q, 'publish'), class: 'r' },
      { title: 'Deliver / get', sort: 'message_stats.deliver_get_details.rate', cell: (q) => rate(q, 'deliver_get'), class: 'r' },
      { title: 'Ack', sort: 'message_stats.ack_details.rate', cell: (q) => rate(q, 'ack'), class: 'r' },
    ],
  });
  root.append(h('h1', { 'data-test': 'page-title' }, 'Queues'), list.el,
    section('Add a new queue', { 'data-test': 'add-queue-section' }, addQueueForm(ctx, list.refresh)));
  await list.refresh();
  return { refresh: list.refresh };
}

function addQueueForm(ctx, onDone) {
  const vhosts = ctx.vhosts.length ? ctx.vhosts : ['/'];
  const type = select({ id: 'add-queue-type', 'data-test': 'add-queue-type' },
    [['classic', 'Classic'], ['quorum', 'Quorum'], ['stream', 'Stream']], 'classic');
  const vhost = select({ id: 'add-queue-vhost', 'data-test': 'add-queue-vhost' }, vhosts,
    ctx.vhost || (vhosts.includes('/') ? '/' : vhosts[0]));
  const name = h('input', { id: 'add-queue-name', 'data-test': 'add-queue-name', required: true });
  const durable = select({ id: 'add-queue-durable', 'data-test': 'add-queue-durable' }, [['true', 'Durable'], ['false', 'Transient']], 'true');
  const autoDelete = select({ id: 'add-queue-auto-delete', 'data-test': 'add-queue-auto-delete' }, [['false', 'No'], ['true', 'Yes']], 'false');
  const args = h('textarea', { id: 'add-queue-arguments', 'data-test': 'add-queue-arguments', rows: 3, placeholder: 'x-message-ttl = 60000' });
  const help = h('p', { class: 'hint' }, 'Add: ', ARG_HELP.map(([k, label], i) => [i ? ' | ' : '', h('a', {
    href: '#', 'data-arg': k, onclick: (ev) => {
      ev.preventDefault();
      args.value = (args.value && !args.value.endsWith('\n') ? args.value + '\n' : args.value) + `${k} = `;
      args.focus();
    },
  }, label)]));
  return h('form', {
    id: 'add-queue-form', class: 'form', 'data-test': 'add-queue-form',
    onsubmit: (ev) => {
      ev.preventDefault();
      guarded(async () => {
        const a = parseArgs(args.value);
        if (type.value !== 'classic') a['x-queue-type'] = type.value;
        await put(queuePath(vhost.value, name.value), {
          durable: durable.value === 'true', auto_delete: autoDelete.value === 'true', arguments: a,
        });
        showInfo(`Queue ${name.value} added.`);
        name.value = '';
        await onDone();
      });
    },
  }, field('Type', type), field('Virtual host', vhost), field('Name', name), field('Durability', durable),
  field('Auto delete', autoDelete), field('Arguments', args, 'key = value, one a line'), help,
  h('button', { type: 'submit', id: 'add-queue-submit', 'data-test': 'add-queue-submit' }, 'Add queue'));
}

export async function queueDetail(root, [vhost, name], ctx) {
  const props = h('div', { id: 'queue-facts' });
  const latency = h('div', { id: 'queue-latency' });
  const latencySection = section('Time in queue', { 'data-test': 'section-latency', hidden: true }, latency);
  const consumers = h('div', { id: 'queue-consumers' });
  const bindings = h('div', { id: 'queue-bindings' });
  root.append(
    h('h1', { 'data-test': 'page-title' }, 'Queue ', h('span', { 'data-test': 'queue-title' }, name),
      h('span', { class: 'muted' }, ` in virtual host ${vhost}`)),
    section('Overview', null, props),
    latencySection,
    section('Consumers', { 'data-test': 'section-consumers' }, consumers),
    section('Bindings', { 'data-test': 'section-bindings' }, bindings, addBindingForm(vhost, name, () => refreshBindings())),
    section('Get messages', { 'data-test': 'section-get' }, getForm(vhost, name, () => refresh())),
    section('Delete / purge', { 'data-test': 'section-delete' }, h('div', { class: 'buttons' },
      confirmButton('Delete', 'queue-delete', async () => {
        await del(queuePath(vhost, name));
        showInfo(`Queue ${name} deleted.`);
        ctx.navigate('#/queues');
      }),
      ' ',
      confirmButton('Purge', 'queue-purge', async () => {
        await del(`${queuePath(vhost, name)}/contents`);
        showInfo(`Queue ${name} purged.`);
        await refresh();
      }, 'warn'))),
  );

  async function refresh() {
    let q;
    try {
      q = await get(queuePath(vhost, name));
    } catch (e) {
      showError(e);
      return;
    }
    fill(props, h('div', { class: 'two-col' },
      facts({ 'data-test': 'queue-facts' }, [
        ['Type', q.type], ['Features', features(q)], ['Policy', q.policy || undefined],
        ['Arguments', fmtArgs(q.arguments)], ['State', q.state, 'queue-state'],
        ['Consumers', fmtNum(q.consumers), 'queue-consumer-count'],
        ['Consumer capacity', q.consumer_capacity !== undefined ? `${Math.round(q.consumer_capacity * 100)}%` : undefined],
        ['Exclusive owner', q.owner_pid_details ? q.owner_pid_details.name : undefined],
      ]),
      facts({ 'data-test': 'queue-numbers' }, [
        ['Ready', fmtNum(q.messages_ready), 'queue-detail-ready'],
        ['Unacked', fmtNum(q.messages_unacknowledged), 'queue-detail-unacked'],
        ['Total', fmtNum(q.messages), 'queue-detail-messages'],
        ['Message body bytes', q.message_bytes !== undefined ? fmtNum(q.message_bytes) : undefined],
        ['Incoming', rate(q, 'publish')], ['Deliver / get', rate(q, 'deliver_get')], ['Ack', rate(q, 'ack')],
        ['Redelivered', rate(q, 'redeliver')],
      ])));
    renderLatency(q);
    fill(consumers, table({ 'data-test': 'consumers-table' },
      ['Channel', 'Consumer tag', 'Ack required', 'Exclusive', 'Prefetch count', 'Active', 'Arguments'],
      (q.consumer_details || []).map((c) => [
        (c.channel_details && c.channel_details.name) || '', c.consumer_tag, fmtBool(c.ack_required),
        fmtBool(c.exclusive), fmtNum(c.prefetch_count), fmtBool(c.active), fmtArgs(c.arguments),
      ]), 'No consumers.'));
  }

  function renderLatency(q) {
    const tiq = q.latency && q.latency.time_in_queue;
    latencySection.hidden = !tiq;
    if (!tiq) return;
    const buckets = tiq.buckets || [];
    fill(latency,
      facts({ 'data-test': 'latency-facts' }, [
        ['Messages measured', fmtNum(tiq.count)],
        ['Mean', tiq.count ? `${fmtNum(tiq.sum_ms / tiq.count)} ms` : '–'],
      ]),
      barChart({ id: 'latency-chart', 'data-test': 'latency-chart' }, { buckets }));
  }

  async function refreshBindings() {
    try {
      fill(bindings, bindingsTable(await get(`${queuePath(vhost, name)}/bindings`), 'destination', refreshBindings));
    } catch (e) {
      showError(e);
    }
  }

  await Promise.all([refresh(), refreshBindings()]);
  return { refresh: () => Promise.all([refresh(), refreshBindings()]) };
}

function addBindingForm(vhost, queue, onDone) {
  const source = h('input', { id: 'queue-bind-source', 'data-test': 'queue-bind-source', required: true, placeholder: 'amq.direct' });
  const key = h('input', { id: 'queue-bind-routing-key', 'data-test': 'queue-bind-routing-key' });
  const args = h('textarea', { id: 'queue-bind-arguments', 'data-test': 'queue-bind-arguments', rows: 2 });
  return h('form', {
    id: 'queue-bind-form', class: 'form', 'data-test': 'queue-bind-form',
    onsubmit: (ev) => {
      ev.preventDefault();
      guarded(async () => {
        await post(`/api/bindings/${enc(vhost)}/e/${enc(source.value)}/q/${enc(queue)}`,
          { routing_key: key.value, arguments: parseArgs(args.value) });
        showInfo('Binding added.');
        source.value = '';
        key.value = '';
        args.value = '';
        await onDone();
      });
    },
  }, h('h3', null, 'Add binding to this queue'), field('From exchange', source), field('Routing key', key),
  field('Arguments', args, 'key = value, one a line'), h('button', { type: 'submit', 'data-test': 'queue-bind-submit' }, 'Bind'));
}

/** RabbitMQ's "Get messages": POST …/get, each message's payload and properties. */
function getForm(vhost, name, onDone) {
  const ackmode = select({ id: 'get-ackmode', 'data-test': 'get-ackmode' }, [
    ['ack_requeue_true', 'Nack message requeue true'],
    ['ack_requeue_false', 'Automatic ack'],
    ['reject_requeue_true', 'Reject requeue true'],
    ['reject_requeue_false', 'Reject requeue false'],
  ], 'ack_requeue_true');
  const encoding = select({ id: 'get-encoding', 'data-test': 'get-encoding' },
    [['auto', 'Auto string / base64'], ['base64', 'base64']], 'auto');
  const count = h('input', { id: 'get-count', 'data-test': 'get-count', type: 'number', min: '1', value: '1' });
  const result = h('div', { id: 'get-result', 'data-test': 'get-result' });
  return h('form', {
    id: 'get-form', class: 'form', 'data-test': 'get-form',
    onsubmit: (ev) => {
      ev.preventDefault();
      fill(result);
      guarded(async () => {
        const msgs = await post(`${queuePath(vhost, name)}/get`, {
          count: Number(count.value) || 1, ackmode: ackmode.value, encoding: encoding.value, truncate: 50000,
        });
        fill(result, renderMessages(msgs || []));
        await onDone();
      });
    },
  }, h('p', { class: 'warn-text' }, 'Getting messages from a queue is a destructive action unless they are requeued.'),
  field('Ack mode', ackmode), field('Encoding', encoding), field('Messages', count),
  h('button', { type: 'submit', 'data-test': 'get-submit' }, 'Get message(s)'), result);
}

function renderMessages(msgs) {
  if (!msgs.length) return h('p', { 'data-test': 'get-empty', class: 'result' }, 'Queue is empty');
  return msgs.map((m, i) => h('div', { class: 'message', 'data-test': 'get-message' },
    h('h3', null, `Message ${i + 1}`),
    h('p', { 'data-test': 'get-remaining' }, `The server reported ${fmtNum(m.message_count)} messages remaining.`),
    facts(null, [
      ['Exchange', m.exchange === '' ? '(AMQP default)' : m.exchange],
      ['Routing key', m.routing_key],
      ['Redelivered', fmtBool(m.redelivered), 'get-redelivered'],
      ['Properties', propsList(m.properties)],
      ['Payload', h('span', null, `${fmtNum(m.payload_bytes)} bytes, encoding: ${m.payload_encoding}`)],
    ]),
    h('pre', { class: 'payload', 'data-test': 'get-payload' }, m.payload)));
}

function propsList(p) {
  const entries = Object.entries(p || {});
  if (!entries.length) return '';
  return h('table', { class: 'mini' }, h('tbody', null, entries.map(([k, v]) => {
    const value = k === 'headers' && v && typeof v === 'object'
      ? h('table', { class: 'mini' }, h('tbody', null, Object.entries(v).map(([hk, hv]) => h('tr', null, h('th', null, hk), h('td', null, fmtValue(hv))))))
      : fmtValue(v);
    return h('tr', null, h('th', null, k), h('td', null, value));
  })));
}
