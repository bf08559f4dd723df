// Exchanges: the list with "Add a new exchange", and an exchange's page with
// its bindings, "Add binding from this exchange", "Publish message" and
// "Delete this exchange". Also the bindings table the queue page uses.

import {
  get, put, post, del, enc, h, fill, facts, section, table, field, select, confirmButton, guarded,
  showError, showInfo, parseArgs, fmtArgs, fmtRate, features, exchangeLabel,
} from './api.js';
import { pagedTable } from './table.js';

/** The API's name of an exchange: the default one is `amq.default`. */
export function exchangePath(vhost, name) {
  return `/api/exchanges/${enc(vhost)}/${enc(name === '' ? 'amq.default' : name)}`;
}

export function exchangeHref(vhost, name) {
  return `#/exchanges/${enc(vhost)}/${enc(name === '' ? 'amq.default' : name)}`;
}

export function queueHref(vhost, name) {
  return `#/queues/${enc(vhost)}/${enc(name)}`;
}

/** DELETE of one binding, by its properties_key. */
export async function unbind(b) {
  const kind = b.destination_type === 'exchange' ? 'e' : 'q';
  const props = b.properties_key !== undefined ? b.properties_key : (b.routing_key === '' ? '~' : b.routing_key);
  await del(`/api/bindings/${enc(b.vhost)}/e/${enc(b.source)}/${kind}/${enc(b.destination)}/${enc(props)}`);
}

/**
 * A bindings table. side 'source': the other end is the destination (an
 * exchange's own bindings); side 'destination': the other end is the source
 * (a queue's bindings). onChange runs after an unbind.
 */
export function bindingsTable(list, side, onChange) {
  const other = side === 'source' ? 'To' : 'From';
  return table({ 'data-test': `bindings-table-${side}` }, [other, 'Routing key', 'Arguments', ''],
    list.map((b) => {
      const name = side === 'source' ? b.destination : b.source;
      const isQueue = side === 'source' && b.destination_type === 'queue';
      const link = side === 'source'
        ? h('a', { href: isQueue ? queueHref(b.vhost, name) : exchangeHref(b.vhost, name) }, (isQueue ? '' : 'exchange ') + name)
        : (name === '' ? h('i', null, '(Default exchange binding)') : h('a', { href: exchangeHref(b.vhost, name) }, name));
      const canUnbind = b.source !== '';
      return h('tr', { 'data-test': 'binding-row', 'data-key': b.routing_key },
        h('td', null, link), h('td', null, b.routing_key), h('td', null, fmtArgs(b.arguments)),
        h('td', null, canUnbind ? confirmButton('Unbind', 'unbind', async () => {
          await unbind(b);
          showInfo('Binding removed.');
          await onChange();
        }) : ''));
    }), 'No bindings.');
}

function vhostSelect(ctx, test) {
  const options = ctx.vhosts.length ? ctx.vhosts : ['/'];
  return select({ 'data-test': test, id: test }, options, ctx.vhost || (options.includes('/') ? '/' : options[0]));
}

function boolSelect(test, value) {
  return select({ 'data-test': test, id: test }, [['true', 'Yes'], ['false', 'No']], value ? 'true' : 'false');
}

export async function exchangeList(root, _params, ctx) {
  const list = pagedTable({
    id: 'exchanges',
    path: () => (ctx.vhost ? `/api/exchanges/${enc(ctx.vhost)}` : '/api/exchanges'),
    empty: 'No exchanges.',
    row: (x) => ({ 'data-test': 'exchange-row', 'data-name': x.name, 'data-vhost': x.vhost }),
    columns: [
      { title: 'Virtual host', sort: 'vhost', cell: (x) => x.vhost },
      { title: 'Name', sort: 'name', cell: (x) => h('a', { href: exchangeHref(x.vhost, x.name), 'data-test': 'exchange-link' }, exchangeLabel(x.name)) },
      { title: 'Type', sort: 'type', cell: (x) => x.type },
      { title: 'Features', cell: features },
      { title: 'Message rate in', sort: 'message_stats.publish_in_details.rate', cell: (x) => fmtRate((x.message_stats || {}).publish_in_details), class: 'r' },
      { title: 'Message rate out', sort: 'message_stats.publish_out_details.rate', cell: (x) => fmtRate((x.message_stats || {}).publish_out_details), class: 'r' },
    ],
  });

  const vhost = vhostSelect(ctx, 'add-exchange-vhost');
  const name = h('input', { id: 'add-exchange-name', 'data-test': 'add-exchange-name', required: true });
  const type = select({ id: 'add-exchange-type', 'data-test': 'add-exchange-type' }, ctx.exchangeTypes, 'direct');
  const durable = boolSelect('add-exchange-durable', true);
  const autoDelete = boolSelect('add-exchange-auto-delete', false);
  const internal = boolSelect('add-exchange-internal', false);
  const args = h('textarea', { id: 'add-exchange-arguments', 'data-test': 'add-exchange-arguments', rows: 2, placeholder: 'alternate-exchange = my-ae' });
  const form = h('form', {
    id: 'add-exchange-form', class: 'form', 'data-test': 'add-exchange-form',
    onsubmit: (ev) => {
      ev.preventDefault();
      guarded(async () => {
        await put(exchangePath(vhost.value, name.value), {
          type: type.value, durable: durable.value === 'true', auto_delete: autoDelete.value === 'true',
          internal: internal.value === 'true', arguments: parseArgs(args.value),
        });
        showInfo(`Exchange ${name.value} added.`);
        name.value = '';
        await list.refresh();
      });
    },
  }, field('Virtual host', vhost), field('Name', name), field('Type', type), field('Durability', durable),
  field('Auto delete', autoDelete), field('Internal', internal), field('Arguments', args, 'key = value, one a line'),
  h('button', { type: 'submit', 'data-test': 'add-exchange-submit' }, 'Add exchange'));

  root.append(h('h1', { 'data-test': 'page-title' }, 'Exchanges'), list.el,
    section('Add a new exchange', { open: false, 'data-test': 'add-exchange-section' }, form));
  await list.refresh();
  return { refresh: list.refresh };
}

export async function exchangeDetail(root, [vhost, rawName], ctx) {
  const name = rawName === 'amq.default' ? '' : rawName;
  const isDefault = name === '';
  const props = h('div', { id: 'exchange-facts' });
  const bindings = h('div', { id: 'exchange-bindings' });
  root.append(h('h1', { 'data-test': 'page-title' }, 'Exchange ', h('span', { 'data-test': 'exchange-name' }, exchangeLabel(name)),
    h('span', { class: 'muted' }, ` in virtual host ${vhost}`)),
  section('Overview', null, props),
  section('Bindings', { 'data-test': 'section-bindings' }, bindings, isDefault ? null : addBindingForm(vhost, name, () => refresh())),
  section('Publish message', { 'data-test': 'section-publish' }, publishForm(vhost, name)),
  isDefault ? null : section('Delete this exchange', { open: false },
    confirmButton('Delete', 'exchange-delete', async () => {
      await del(exchangePath(vhost, name));
      showInfo(`Exchange ${name} deleted.`);
      ctx.navigate('#/exchanges');
    })));

  async function refresh() {
    let x;
    try {
      x = await get(exchangePath(vhost, name));
    } catch (e) {
      showError(e);
      return;
    }
    const ms = x.message_stats || {};
    fill(props, facts({ 'data-test': 'exchange-facts' }, [
      ['Type', x.type, 'exchange-type'], ['Features', features(x)], ['Policy', x.policy || undefined],
      ['Arguments', fmtArgs(x.arguments)],
      ['Message rate in', fmtRate(ms.publish_in_details)], ['Message rate out', fmtRate(ms.publish_out_details)],
    ]));
    if (isDefault) {
      fill(bindings, h('p', { 'data-test': 'default-exchange-note' },
        'The default exchange is implicitly bound to every queue, with a routing key equal to the queue name. '
        + 'It is not possible to explicitly bind to, or unbind from the default exchange. It also cannot be deleted.'));
      return;
    }
    try {
      const [src, dst] = await Promise.all([
        get(`${exchangePath(vhost, name)}/bindings/source`),
        get(`${exchangePath(vhost, name)}/bindings/destination`),
      ]);
      fill(bindings, h('h3', null, 'This exchange → '), bindingsTable(src, 'source', refresh),
        dst.length ? [h('h3', null, '→ This exchange'), bindingsTable(dst, 'destination', refresh)] : null);
    } catch (e) {
      showError(e);
    }
  }
  await refresh();
  return { refresh };
}

function addBindingForm(vhost, source, onDone) {
  const kind = select({ id: 'bind-dest-type', 'data-test': 'bind-dest-type' }, [['q', 'To queue'], ['e', 'To exchange']], 'q');
  const dest = h('input', { id: 'bind-dest', 'data-test': 'bind-dest', required: true });
  const key = h('input', { id: 'bind-routing-key', 'data-test': 'bind-routing-key' });
  const args = h('textarea', { id: 'bind-arguments', 'data-test': 'bind-arguments', rows: 2 });
  return h('form', {
    id: 'add-binding-form', class: 'form',
    onsubmit: (ev) => {
      ev.preventDefault();
      guarded(async () => {
        await post(`/api/bindings/${enc(vhost)}/e/${enc(source)}/${kind.value}/${enc(dest.value)}`,
          { routing_key: key.value, arguments: parseArgs(args.value) });
        showInfo('Binding added.');
        dest.value = '';
        key.value = '';
        args.value = '';
        await onDone();
      });
    },
  }, h('h3', null, 'Add binding from this exchange'), field('Destination', h('span', null, kind, ' ', dest)),
  field('Routing key', key), field('Arguments', args, 'key = value, one a line'),
  h('button', { type: 'submit', 'data-test': 'bind-submit' }, 'Bind'));
}

/** RabbitMQ's "Publish message" form: POST …/publish, shows whether it was routed. */
export function publishForm(vhost, name) {
  const key = h('input', { id: 'publish-routing-key', 'data-test': 'publish-routing-key' });
  const mode = select({ id: 'publish-delivery-mode', 'data-test': 'publish-delivery-mode' },
    [['1', '1 - Non-persistent'], ['2', '2 - Persistent']], '1');
  const headers = h('textarea', { id: 'publish-headers', 'data-test': 'publish-headers', rows: 2, placeholder: 'header = value' });
  const props = h('textarea', { id: 'publish-properties', 'data-test': 'publish-properties', rows: 2, placeholder: 'content_type = text/plain' });
  const encoding = select({ id: 'publish-encoding', 'data-test': 'publish-encoding' }, [['string', 'String'], ['base64', 'Base64']], 'string');
  const payload = h('textarea', { id: 'publish-payload', 'data-test': 'publish-payload', rows: 4 });
  const result = h('p', { id: 'publish-result', 'data-test': 'publish-result', class: 'result', 'aria-live': 'polite' });
  return h('form', {
    id: 'publish-form', class: 'form', 'data-test': 'publish-form',
    onsubmit: (ev) => {
      ev.preventDefault();
      result.textContent = '';
      guarded(async () => {
        const properties = Object.assign({ delivery_mode: Number(mode.value) }, parseArgs(props.value));
        const hdrs = parseArgs(headers.value);
        if (Object.keys(hdrs).length) properties.headers = hdrs;
        const r = await post(`${exchangePath(vhost, name)}/publish`, {
          properties, routing_key: key.value, payload: payload.value, payload_encoding: encoding.value,
        });
        const msg = r && r.routed === false ? 'Message published, but not routed.' : 'Message published.';
        result.textContent = msg;
        result.classList.toggle('warn', !!r && r.routed === false);
        showInfo(msg);
      });
    },
  }, field('Routing key', key), field('Delivery mode', mode), field('Headers', headers, 'key = value, one a line'),
  field('Properties', props, 'key = value, one a line'), field('Payload encoding', encoding), field('Payload', payload),
  h('button', { type: 'submit', 'data-test': 'publish-submit' }, 'Publish message'), result);
}
