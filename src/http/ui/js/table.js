// RabbitMQ's paginated lists (queues, exchanges, connections, channels):
// `?page=&page_size=&name=&use_regex=&sort=&sort_reverse=&pagination=true`
// answered by `{items, page, page_count, page_size, item_count,
// filtered_count, total_count}`. A plain array answer is paged here instead.

import { h, fill, get, ApiError, showError, pathOf } from './api.js';

const PAGE_SIZES = [10, 20, 50, 100, 500];

function loadState(id, defaults) {
  try {
    return Object.assign({}, defaults, JSON.parse(sessionStorage.getItem('warren-list-' + id) || '{}'));
  } catch (_) {
    return Object.assign({}, defaults);
  }
}

/** The query string of a list request. */
export function listQuery(s) {
  const q = new URLSearchParams({
    page: String(s.page),
    page_size: String(s.page_size),
    name: s.name,
    use_regex: String(s.use_regex),
  });
  if (s.sort) {
    q.set('sort', s.sort);
    q.set('sort_reverse', String(s.sort_reverse));
  }
  q.set('pagination', 'true');
  return q.toString();
}

/** Filters, sorts and pages a plain array the way the API would. */
function pageLocally(items, s) {
  let re = null;
  if (s.name) {
    try {
      re = s.use_regex ? new RegExp(s.name) : null;
    } catch (_) {
      re = null;
    }
  }
  const filtered = s.name
    ? items.filter((i) => (re ? re.test(String(i.name)) : String(i.name).toLowerCase().includes(s.name.toLowerCase())))
    : items.slice();
  if (s.sort) {
    filtered.sort((a, b) => {
      const x = pathOf(a, s.sort);
      const y = pathOf(b, s.sort);
      const c = x === y ? 0 : x === undefined ? -1 : y === undefined ? 1 : x < y ? -1 : 1;
      return s.sort_reverse ? -c : c;
    });
  }
  const pageCount = Math.ceil(filtered.length / s.page_size);
  const start = (s.page - 1) * s.page_size;
  const pageItems = filtered.slice(start, start + s.page_size);
  return {
    items: pageItems, page: s.page, page_count: pageCount, page_size: s.page_size,
    item_count: pageItems.length, filtered_count: filtered.length, total_count: items.length,
  };
}

/**
 * A paged, filterable, sortable table.
 * - id: names the list (element ids, data-test prefixes, saved state),
 * - path(): the API path without the query (it may depend on the vhost),
 * - columns: [{title, sort (a dotted field), cell(item) → node or text, class}],
 * - row(item): attributes of the item's <tr>.
 * Returns {el, refresh()}; refresh() resolves to the answer (or undefined).
 */
export function pagedTable({ id, path, columns, row = () => ({}), defaultSort = 'name', empty = 'No items.' }) {
  const state = loadState(id, { page: 1, page_size: 100, name: '', use_regex: false, sort: defaultSort, sort_reverse: false });
  const save = () => sessionStorage.setItem('warren-list-' + id, JSON.stringify(state));

  const filter = h('input', {
    type: 'search', value: state.name, placeholder: 'Filter by name', 'data-test': `${id}-filter`, id: `${id}-filter`,
    oninput: debounce(() => setName(), 300),
    onchange: () => setName(),
  });
  // Both events may come for one edit: only a new value refreshes.
  function setName() {
    if (filter.value === state.name) return;
    state.name = filter.value;
    state.page = 1;
    save();
    refresh();
  }
  const regex = h('input', {
    type: 'checkbox', checked: state.use_regex, 'data-test': `${id}-regex`, id: `${id}-regex`,
    onchange: () => { state.use_regex = regex.checked; state.page = 1; save(); refresh(); },
  });
  const size = h('select', {
    'data-test': `${id}-page-size`, id: `${id}-page-size`,
    onchange: () => { state.page_size = Number(size.value); state.page = 1; save(); refresh(); },
  }, PAGE_SIZES.map((n) => h('option', { value: String(n), selected: n === state.page_size }, String(n))));
  const pageSel = h('select', {
    'data-test': `${id}-page`, id: `${id}-page`,
    onchange: () => { state.page = Number(pageSel.value); save(); refresh(); },
  });
  const count = h('span', { class: 'count', 'data-test': `${id}-count` });
  const controls = h('div', { class: 'list-controls' },
    h('label', null, 'Filter ', filter), h('label', null, regex, ' Regex'),
    h('label', null, 'Page ', pageSel), h('label', null, 'Page size ', size), count);

  const headRow = h('tr', null, columns.map((c) => {
    if (!c.sort) return h('th', { class: c.class }, c.title);
    return h('th', {
      class: 'sortable ' + (c.class || ''), 'data-sort': c.sort, 'data-test': `${id}-sort-${c.sort}`,
      onclick: () => {
        if (state.sort === c.sort) state.sort_reverse = !state.sort_reverse;
        else { state.sort = c.sort; state.sort_reverse = false; }
        save();
        markSort();
        refresh();
      },
    }, c.title, h('span', { class: 'sort-mark' }));
  }));
  const markSort = () => {
    for (const th of headRow.querySelectorAll('th[data-sort]')) {
      const on = th.dataset.sort === state.sort;
      th.classList.toggle('sorted', on);
      th.querySelector('.sort-mark').textContent = on ? (state.sort_reverse ? ' ▼' : ' ▲') : '';
    }
  };
  markSort();
  const tbody = h('tbody', null, h('tr', null, h('td', { colSpan: columns.length, class: 'empty' }, 'Loading…')));
  const tableEl = h('table', { class: 'list', id: `${id}-table`, 'data-test': `${id}-table` }, h('thead', null, headRow), tbody);
  const el = h('div', { class: 'paged', id }, controls, tableEl);

  let seq = 0;
  async function refresh() {
    const mine = ++seq;
    let answer;
    try {
      const res = await get(`${path()}?${listQuery(state)}`);
      answer = Array.isArray(res) ? pageLocally(res, state) : res;
    } catch (e) {
      if (e instanceof ApiError && e.status === 400 && state.page > 1) {
        state.page = 1; // "page out of range" after the list shrank
        save();
        return refresh();
      }
      if (mine === seq) showError(e);
      return undefined;
    }
    if (mine !== seq) return answer; // a newer request is on its way
    if (answer.page_count > 0 && state.page > answer.page_count) {
      state.page = answer.page_count;
      save();
      return refresh();
    }
    render(answer);
    return answer;
  }

  function render(a) {
    const items = a.items || [];
    fill(tbody, items.length
      ? items.map((item) => h('tr', row(item), columns.map((c) => h('td', { class: c.class }, c.cell(item)))))
      : h('tr', null, h('td', { colSpan: columns.length, class: 'empty' }, a.total_count ? 'No items match the filter.' : empty)));
    const pages = Math.max(1, a.page_count || 1);
    fill(pageSel, Array.from({ length: pages }, (_, i) => h('option', { value: String(i + 1), selected: i + 1 === state.page }, String(i + 1))));
    pageSel.disabled = pages <= 1;
    count.textContent = `Displaying ${a.item_count ?? items.length} item${(a.item_count ?? items.length) === 1 ? '' : 's'}`
      + (a.filtered_count !== a.total_count ? ` (${a.filtered_count} matching)` : '')
      + `, ${a.total_count ?? items.length} in total`;
  }

  return { el, refresh };
}

function debounce(f, ms) {
  let t = null;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => f(...args), ms);
  };
}
