// The overview page: node, versions, object totals, the queued messages and
// message rates charts (from /api/overview, one point per refresh), nodes
// and listeners.

import { get, h, fill, facts, section, table, select, showError, fmtNum, fmtBytes, fmtBool } from './api.js';
import { lineChart } from './charts.js';

const QUEUED = [
  { key: 'messages_ready', label: 'Ready' },
  { key: 'messages_unacknowledged', label: 'Unacked' },
  { key: 'messages', label: 'Total' },
];

const RATES = [
  { key: 'publish', label: 'Publish' },
  { key: 'confirm', label: 'Publisher confirm' },
  { key: 'deliver_get', label: 'Deliver / get' },
  { key: 'redeliver', label: 'Redelivered' },
  { key: 'ack', label: 'Consumer ack' },
  { key: 'return_unroutable', label: 'Unroutable (return)' },
  { key: 'drop_unroutable', label: 'Unroutable (drop)' },
];

const TOTALS = [
  ['connections', 'Connections'],
  ['channels', 'Channels'],
  ['exchanges', 'Exchanges'],
  ['queues', 'Queues'],
  ['consumers', 'Consumers'],
];

// The charts' points survive leaving and coming back to the page.
const history = [];
const MAX_POINTS = 800;
const RANGES = [['60000', 'Last minute'], ['600000', 'Last ten minutes'], ['3600000', 'Last hour']];
const RANGE_KEY = 'warren-chart-range';

function rate(v) {
  if (!v) return '0/s';
  return (v < 10 ? v.toFixed(1) : Math.round(v).toLocaleString('en-US')) + '/s';
}

/** One chart point from an overview answer. */
export function point(o, t = Date.now()) {
  const qt = o.queue_totals || {};
  const ms = o.message_stats || {};
  const queued = {};
  for (const s of QUEUED) if (typeof qt[s.key] === 'number') queued[s.key] = qt[s.key];
  const rates = {};
  for (const s of RATES) {
    const d = ms[s.key + '_details'];
    if (d && typeof d.rate === 'number') rates[s.key] = d.rate;
  }
  return { t, queued, rates };
}

export async function overview(root) {
  const info = h('div', { id: 'overview-info' });
  const totals = h('div', { id: 'overview-totals' });
  const queued = h('div', { id: 'chart-queued', 'data-test': 'chart-queued' });
  const rates = h('div', { id: 'chart-rates', 'data-test': 'chart-rates' });
  const nodes = h('div', { id: 'overview-nodes' });
  const listeners = h('div', { id: 'overview-listeners' });
  const range = select({ id: 'chart-range', 'data-test': 'chart-range', onchange: () => {
    sessionStorage.setItem(RANGE_KEY, range.value);
    drawCharts();
  } }, RANGES, sessionStorage.getItem(RANGE_KEY) || RANGES[0][0]);
  root.append(
    h('h1', { 'data-test': 'page-title' }, 'Overview'),
    info,
    section('Totals', { 'data-test': 'section-totals' },
      h('label', { class: 'chart-range' }, 'Charts: ', range, h('span', { class: 'hint' }, ' (one point per refresh while this page is open)')),
      h('div', { class: 'charts' },
        h('div', null, h('h3', null, 'Queued messages'), queued),
        h('div', null, h('h3', null, 'Message rates'), rates)),
      h('h3', null, 'Global counts'), totals),
    section('Nodes', { 'data-test': 'section-nodes' }, nodes),
    section('Ports and contexts', { 'data-test': 'section-listeners' }, listeners),
  );

  async function refresh() {
    let o;
    try {
      o = await get('/api/overview');
    } catch (e) {
      showError(e);
      return;
    }
    history.push(point(o));
    if (history.length > MAX_POINTS) history.splice(0, history.length - MAX_POINTS);
    fill(info, facts({ 'data-test': 'overview-facts' }, [
      ['Node', o.node, 'overview-node'],
      ['Cluster', o.cluster_name],
      ['Product', [o.product_name, o.product_version].filter(Boolean).join(' '), 'overview-version'],
      ['Management API', o.management_version || o.rabbitmq_version],
      ['Erlang', o.erlang_version],
    ]));
    const ot = o.object_totals || {};
    fill(totals, h('ul', { class: 'totals' }, TOTALS.map(([k, label]) => h('li', null,
      h('span', { class: 'total-label' }, label),
      h('span', { class: 'total-value', 'data-test': `total-${k}` }, k in ot ? fmtNum(ot[k]) : '–')))));
    drawCharts();
    fill(listeners, table({ 'data-test': 'listeners-table' }, ['Protocol', 'Bound to', 'Port'],
      (o.listeners || []).map((l) => [l.protocol, l.ip_address, String(l.port)]), 'No listeners reported.'));
    await refreshNodes();
  }

  function drawCharts() {
    const span = Number(range.value);
    fill(queued, lineChart({}, {
      series: QUEUED, window: span, whole: true,
      points: history.map((p) => ({ t: p.t, v: p.queued })),
    }));
    fill(rates, lineChart({}, {
      series: RATES, window: span, fmt: rate,
      points: history.map((p) => ({ t: p.t, v: p.rates })),
    }));
  }

  async function refreshNodes() {
    let list;
    try {
      list = await get('/api/nodes');
    } catch (e) {
      fill(nodes, h('p', { class: 'muted' }, `Node details unavailable: ${e.message}`));
      return;
    }
    fill(nodes, table({ 'data-test': 'nodes-table' },
      ['Name', 'Type', 'Running', 'Alarms', 'Memory', 'Disk free', 'File descriptors', 'Sockets', 'Processes', 'Uptime'],
      (list || []).map((n) => [
        n.name, n.type || '', fmtBool(n.running),
        h('span', { class: 'blocked', 'data-test': 'node-alarms' },
          [n.mem_alarm ? 'memory' : '', n.disk_free_alarm ? 'disk' : ''].filter(Boolean).join(', ')),
        n.mem_used !== undefined ? `${fmtBytes(n.mem_used)}${n.mem_limit ? ' / ' + fmtBytes(n.mem_limit) : ''}` : '',
        n.disk_free !== undefined ? fmtBytes(n.disk_free) : '',
        n.fd_used !== undefined ? `${fmtNum(n.fd_used)}${n.fd_total ? ' / ' + fmtNum(n.fd_total) : ''}` : '',
        n.sockets_used !== undefined ? `${fmtNum(n.sockets_used)}${n.sockets_total ? ' / ' + fmtNum(n.sockets_total) : ''}` : '',
        n.proc_used !== undefined ? `${fmtNum(n.proc_used)}${n.proc_total ? ' / ' + fmtNum(n.proc_total) : ''}` : '',
        n.uptime !== undefined ? uptime(n.uptime) : '',
      ]), 'No nodes reported.'));
  }

  await refresh();
  return { refresh };
}

function uptime(ms) {
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${hh}h` : hh ? `${hh}h ${mm}m` : `${mm}m ${s % 60}s`;
}
