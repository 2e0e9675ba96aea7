// The web console's script: plain DOM and one tiny element helper (h), no
// framework. It talks to nothing but the gateway's public API under /rest/v0,
// with the HttpOnly cookie the gateway set (the script never holds a token
// after sign-in) and the X-Qubes-Console header on every change (CSRF).
// Every value that comes from the system is put in the page as text
// (textContent via h), never as HTML.

const API = '/rest/v0';
const $ = (sel) => document.querySelector(sel);

/** h('tag.class', {attr: v, onclick: fn}, ...children): children are nodes or text. */
function h(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split('.');
  const el = document.createElement(tag);
  if (classes.length) el.className = classes.join(' ');
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = Boolean(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, body) {
    super(body && typeof body.message === 'string' ? body.message : `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

/** One call of the API; `body` goes as JSON, or as it is when `type` (e.g. text/plain) is given. */
async function api(method, path, body, type) {
  const headers = {};
  if (method !== 'GET') headers['X-Qubes-Console'] = '1';
  const init = { method, headers, credentials: 'same-origin' };
  if (body !== undefined) {
    headers['Content-Type'] = type ?? 'application/json';
    init.body = type ? body : JSON.stringify(body);
  }
  const res = await fetch(path.startsWith('/') && !path.startsWith(API) ? API + path : path, init);
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!res.ok) {
    if (res.status === 401 && session) signedOut('Your session ended: sign in again.');
    throw new ApiError(res.status, json);
  }
  return { status: res.status, json, text, location: res.headers.get('Location') };
}

function say(text, bad = false) {
  const s = $('#status');
  s.textContent = text;
  s.classList.toggle('bad', bad);
}

const errorText = (e) => (e instanceof ApiError ? e.message : `the gateway did not answer (${e.message})`);

// ---------------------------------------------------------------- session

let session = null;
let events = null;

async function start() {
  $('#signin-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const input = $('#token');
    $('#signin-error').textContent = '';
    try {
      await api('POST', '/session', { token: input.value.trim() });
      input.value = '';
      await enter();
    } catch (e) {
      $('#signin-error').textContent = e.status === 401 ? 'That token is unknown, revoked or expired.' : errorText(e);
    }
  });
  $('#signout').addEventListener('click', async () => {
    await api('DELETE', '/session').catch(() => undefined);
    signedOut('Signed out.');
  });
  for (const b of document.querySelectorAll('.tabs button')) b.addEventListener('click', () => show(b.dataset.view));

  // a link such as http://host:port/#token=...: used once, then gone from the address bar and history
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    history.replaceState(null, '', location.pathname + location.search);
    try {
      await api('POST', '/session', { token: decodeURIComponent(m[1]) });
    } catch (e) {
      $('#signin-error').textContent = 'The token in the link was refused: ' + errorText(e);
    }
  }
  await enter();
}

async function enter() {
  try {
    session = (await api('GET', '/session')).json;
  } catch {
    signedOut('');
    return;
  }
  $('#signin').hidden = true;
  $('#app').hidden = false;
  $('#who').hidden = false;
  $('#identity').textContent = session.identity;
  openEvents();
  if (session.identity === 'dom0') openAsks();
  show('qubes');
}

function signedOut(message) {
  session = null;
  if (events) {
    events.close();
    events = null;
  }
  if (asks) {
    asks.close();
    asks = null;
  }
  $('#asks').replaceChildren();
  $('#app').hidden = true;
  $('#who').hidden = true;
  $('#signin').hidden = false;
  $('#signin-error').textContent = message;
  $('#token').focus();
}

let current = 'qubes';
let poller = null;
function show(view) {
  current = view;
  for (const b of document.querySelectorAll('.tabs button')) {
    if (b.dataset.view === view) b.setAttribute('aria-current', 'page');
    else b.removeAttribute('aria-current');
  }
  for (const v of ['qubes', 'tasks', 'backups', 'policy']) $(`#view-${v}`).hidden = v !== view;
  clearInterval(poller);
  poller = null;
  say('');
  ({ qubes: renderQubes, tasks: renderTasks, backups: renderBackups, policy: renderPolicy })[view]();
}

// ---------------------------------------------------------------- events

/** Qubes' events mapped to the state they mean, so the table changes at once. */
const EVENT_STATE = {
  'domain-pre-start': 'Transient',
  'domain-start': 'Running',
  'domain-start-failed': 'Halted',
  'domain-pre-shutdown': 'Halting',
  'domain-shutdown': 'Halted',
  'domain-paused': 'Paused',
  'domain-unpaused': 'Running',
};
const backupListeners = new Set();

function openEvents() {
  if (events) events.close();
  events = new EventSource(`${API}/events`);
  events.onmessage = (m) => {
    let e;
    try {
      e = JSON.parse(m.data);
    } catch {
      return;
    }
    if (e.event === 'backup-progress') {
      for (const f of backupListeners) f(e.kwargs);
      return;
    }
    const state = EVENT_STATE[e.event];
    if (state && qubes.has(e.subject)) {
      qubes.get(e.subject).state = state;
      updateRow(e.subject);
    }
    if (state || /^(domain-add|domain-delete|property-(set|del|reset)):?/.test(e.event)) refreshSoon();
  };
}

let refreshTimer = null;
function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => {
    if (current === 'qubes') void loadQubes();
  }, 400);
}

// ---------------------------------------------------------------- qubes

const LABEL_COLOURS = {
  red: '#cc0000',
  orange: '#f57900',
  yellow: '#edd400',
  green: '#73d216',
  gray: '#555753',
  grey: '#555753',
  blue: '#3465a4',
  purple: '#75507b',
  black: '#000000',
};
const FIELDS = 'uuid,name_label,label,state,type,template,netvm,memory';
const COLUMNS = [
  ['name_label', 'Name'],
  ['state', 'State'],
  ['type', 'Class'],
  ['template', 'Template'],
  ['netvm', 'NetVM'],
  ['memory', 'Memory (MiB)'],
];
/** name -> the qube's row object */
const qubes = new Map();
let filter = '';
let sortBy = 'name_label';
let sortDir = 1;

function renderQubes() {
  const v = $('#view-qubes');
  const filterInput = h('input', { id: 'filter', type: 'search', value: filter, placeholder: 'e.g. type:AppVM label:red', 'aria-describedby': 'filter-error' });
  v.replaceChildren(
    h(
      'form.toolbar',
      {
        onsubmit: (ev) => {
          ev.preventDefault();
          filter = filterInput.value.trim();
          void loadQubes();
        },
      },
      h('label', { for: 'filter' }, 'Filter'),
      filterInput,
      h('button', { type: 'submit' }, 'Apply'),
      h('button', { type: 'button', onclick: () => openCreate() }, 'New qube'),
    ),
    h('p.error#filter-error', { id: 'filter-error', role: 'alert' }),
    h('div#create', { id: 'create' }),
    h(
      'div.scroll',
      {},
      h(
        'table',
        { id: 'qubes' },
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            COLUMNS.map(([f, title]) =>
              h(
                'th',
                { scope: 'col', 'aria-sort': sortBy === f ? (sortDir > 0 ? 'ascending' : 'descending') : undefined },
                h('button', { type: 'button', 'data-sort': f, onclick: () => sortOn(f) }, title),
              ),
            ),
            h('th', { scope: 'col' }, 'Actions'),
          ),
        ),
        h('tbody'),
      ),
    ),
    h('section#detail', { id: 'detail' }),
  );
  void loadQubes();
}

async function loadQubes() {
  const q = new URLSearchParams({ fields: FIELDS });
  if (filter) q.set('filter', filter);
  let list;
  try {
    list = (await api('GET', `/vms?${q}`)).json;
  } catch (e) {
    const err = $('#filter-error');
    if (err) err.textContent = errorText(e);
    return;
  }
  const err = $('#filter-error');
  if (err) err.textContent = '';
  qubes.clear();
  for (const o of list) qubes.set(o.name_label, o);
  drawRows();
}

function sortOn(f) {
  sortDir = sortBy === f ? -sortDir : 1;
  sortBy = f;
  for (const b of document.querySelectorAll('#qubes th button[data-sort]')) {
    if (b.dataset.sort === f) b.parentElement.setAttribute('aria-sort', sortDir > 0 ? 'ascending' : 'descending');
    else b.parentElement.removeAttribute('aria-sort');
  }
  drawRows();
}

function compare(a, b) {
  const x = a[sortBy],
    y = b[sortBy];
  if (typeof x === 'number' && typeof y === 'number') return (x - y) * sortDir;
  return String(x ?? '').localeCompare(String(y ?? '')) * sortDir;
}

function drawRows() {
  const body = $('#qubes tbody');
  if (!body) return;
  body.replaceChildren(...[...qubes.values()].sort(compare).map(row));
  if (!qubes.size) body.append(h('tr', {}, h('td', { colspan: 7 }, 'No qube to show.')));
  paint(body);
}

/** Which actions make sense in which state (the API still decides). */
const ACTIONS = [
  ['start', 'Start', (s) => s === 'Halted'],
  ['clean_shutdown', 'Shut down', (s) => s === 'Running'],
  ['hard_shutdown', 'Kill', (s) => s !== 'Halted'],
  ['pause', 'Pause', (s) => s === 'Running'],
  ['unpause', 'Resume', (s) => s === 'Paused'],
];

function row(o) {
  const dom0 = o.type === 'AdminVM';
  return h(
    'tr',
    { 'data-name': o.name_label },
    h('td', {}, h('span.swatch', { 'data-label': o.label ?? '' }), h('button.link', { type: 'button', onclick: () => openDetail(o.name_label) }, o.name_label)),
    h('td', {}, h('span.state', { 'data-state': o.state }, o.state)),
    h('td', {}, o.type),
    h('td', {}, o.template ?? ''),
    h('td', {}, o.netvm ?? ''),
    h('td', {}, o.memory ?? ''),
    h(
      'td',
      {},
      h(
        'div.actions',
        {},
        dom0
          ? []
          : ACTIONS.map(([a, title, when]) =>
              h('button', { type: 'button', 'data-action': a, disabled: !when(o.state), onclick: () => act(o, a, title) }, title),
            ),
      ),
    ),
  );
}

/** Colours set through the CSSOM (CSP forbids style attributes from markup, not this). */
function paint(root) {
  for (const s of root.querySelectorAll('.swatch')) s.style.background = LABEL_COLOURS[s.dataset.label] ?? 'transparent';
}

function updateRow(name) {
  const tr = document.querySelector(`#qubes tr[data-name="${CSS.escape(name)}"]`);
  if (!tr) return;
  const fresh = row(qubes.get(name));
  tr.replaceWith(fresh);
  paint(fresh);
}

/** The newest action started: an older one that ends later must not hide what the newer one says. */
let latestAct = 0;

/** Runs an action as a task and says how it ended, in words. */
async function act(o, action, title, body) {
  const mine = ++latestAct;
  const tell = (text, bad = false) => {
    if (mine === latestAct) say(text, bad);
  };
  tell(`${title} ${o.name_label}…`);
  try {
    const r = await api('POST', `/vms/${o.uuid}/actions/${action}`, body);
    const task = await waitTask(r.location);
    if (task.status === 'success') tell(`${title} ${o.name_label}: done.`);
    else tell(`${title} ${o.name_label} failed: ${task.error?.message ?? task.status}`, true);
    return task;
  } catch (e) {
    tell(`${title} ${o.name_label} failed: ${errorText(e)}`, true);
    return null;
  }
}

async function waitTask(href, onProgress) {
  for (;;) {
    const t = (await api('GET', href)).json;
    if (onProgress) onProgress(t);
    if (t.status !== 'pending') return t;
    await new Promise((r) => setTimeout(r, 300));
  }
}

function openCreate() {
  const box = $('#create');
  const labelSel = h(
    'select',
    { id: 'new-label' },
    Object.keys(LABEL_COLOURS)
      .filter((l) => l !== 'grey')
      .map((l) => h('option', { value: l }, l)),
  );
  const klass = h(
    'select',
    { id: 'new-class' },
    ['AppVM', 'TemplateVM', 'StandaloneVM', 'DispVM'].map((c) => h('option', { value: c }, c)),
  );
  const name = h('input', { id: 'new-name', required: true, 'aria-describedby': 'new-error' });
  const template = h('input', { id: 'new-template', placeholder: '(default template)' });
  box.replaceChildren(
    h(
      'form.card',
      {
        onsubmit: async (ev) => {
          ev.preventDefault();
          const body = { name_label: name.value.trim(), type: klass.value, label: labelSel.value };
          if (template.value.trim()) body.template = template.value.trim();
          try {
            await api('POST', '/vms', body);
            box.replaceChildren();
            say(`Created ${body.name_label}.`);
            await loadQubes();
          } catch (e) {
            $('#new-error').textContent = errorText(e);
          }
        },
      },
      h('h2', {}, 'New qube'),
      h('div.field', {}, h('label', { for: 'new-name' }, 'Name'), name),
      h('div.field', {}, h('label', { for: 'new-class' }, 'Class'), klass),
      h('div.field', {}, h('label', { for: 'new-template' }, 'Template'), template),
      h('div.field', {}, h('label', { for: 'new-label' }, 'Label'), labelSel),
      h('p.error', { id: 'new-error', role: 'alert' }),
      h('div.actions', {}, h('button.primary', { type: 'submit' }, 'Create'), h('button', { type: 'button', onclick: () => box.replaceChildren() }, 'Cancel')),
    ),
  );
  name.focus();
}

/** Fields of GET /vms/{id} that are not Qubes properties one could set. */
const NOT_PROPERTIES = new Set(['href', 'name', 'uuid', 'power_state', 'state', 'type', 'tags', 'features']);

async function openDetail(name) {
  const box = $('#detail');
  const o = qubes.get(name);
  if (!o) return;
  let vm;
  try {
    vm = (await api('GET', `/vms/${o.uuid}`)).json;
  } catch (e) {
    say(errorText(e), true);
    return;
  }
  const href = `/vms/${o.uuid}`;
  const props = Object.entries(vm)
    .filter(([k]) => !NOT_PROPERTIES.has(k))
    .sort(([a], [b]) => a.localeCompare(b));
  const inputs = new Map();
  const fieldRows = props.map(([k, v]) => {
    const id = `prop-${k}`;
    const input =
      typeof v === 'boolean'
        ? h('input', { id, type: 'checkbox', checked: v, 'aria-describedby': `${id}-error` })
        : h('input', { id, type: typeof v === 'number' ? 'number' : 'text', value: v ?? '', 'aria-describedby': `${id}-error` });
    inputs.set(k, input);
    return h('div.field', { 'data-field': k }, h('label', { for: id }, k), input, h('p.error', { id: `${id}-error`, role: 'alert' }));
  });
  const valueOf = (k, input) =>
    input.type === 'checkbox' ? input.checked : input.type === 'number' ? (input.value === '' ? null : Number(input.value)) : input.value;
  const propsForm = h(
    'form',
    {
      onsubmit: async (ev) => {
        ev.preventDefault();
        for (const p of box.querySelectorAll('.field .error')) p.textContent = '';
        const body = {};
        for (const [k, input] of inputs) {
          const nv = valueOf(k, input);
          if (nv !== (vm[k] ?? (input.type === 'text' ? '' : null))) body[k] = nv;
        }
        if (!Object.keys(body).length) {
          say('Nothing changed.');
          return;
        }
        try {
          await api('PATCH', href, body);
          say(`Saved ${Object.keys(body).join(', ')} of ${vm.name_label}.`);
          await loadQubes();
          await openDetail(body.name_label ?? name);
        } catch (e) {
          const f = e.body?.field === 'name' ? 'name_label' : e.body?.field;
          const slot = f && box.querySelector(`#prop-${CSS.escape(f)}-error`);
          if (slot) {
            slot.textContent = errorText(e);
            inputs.get(f)?.focus();
          } else say(errorText(e), true);
        }
      },
    },
    h('div.props', {}, fieldRows),
    h('div.actions', {}, h('button.primary', { type: 'submit' }, 'Save properties')),
  );

  const tagInput = h('input', { id: 'new-tag', 'aria-describedby': 'tag-error' });
  const tags = h(
    'div',
    {},
    h('h3', {}, 'Tags'),
    h(
      'ul.chips',
      {},
      (vm.tags ?? []).map((t) =>
        h(
          'li',
          {},
          t,
          h(
            'button',
            {
              type: 'button',
              'aria-label': `remove tag ${t}`,
              onclick: () => change('DELETE', `${href}/tags/${encodeURIComponent(t)}`, undefined, 'tag-error'),
            },
            '×',
          ),
        ),
      ),
    ),
    h(
      'form.toolbar',
      {
        onsubmit: (ev) => {
          ev.preventDefault();
          void change('PUT', `${href}/tags/${encodeURIComponent(tagInput.value.trim())}`, undefined, 'tag-error');
        },
      },
      h('label', { for: 'new-tag' }, 'Add tag'),
      tagInput,
      h('button', { type: 'submit' }, 'Add'),
    ),
    h('p.error', { id: 'tag-error', role: 'alert' }),
  );

  const fName = h('input', { id: 'new-feature', 'aria-describedby': 'feature-error' });
  const fValue = h('input', { id: 'new-feature-value' });
  const features = h(
    'div',
    {},
    h('h3', {}, 'Features'),
    h(
      'ul.chips',
      {},
      Object.entries(vm.features ?? {}).map(([k, v]) =>
        h(
          'li',
          {},
          `${k} = ${v}`,
          h(
            'button',
            {
              type: 'button',
              'aria-label': `remove feature ${k}`,
              onclick: () => change('DELETE', `${href}/features/${encodeURIComponent(k)}`, undefined, 'feature-error'),
            },
            '×',
          ),
        ),
      ),
    ),
    h(
      'form.toolbar',
      {
        onsubmit: (ev) => {
          ev.preventDefault();
          void change('PUT', `${href}/features/${encodeURIComponent(fName.value.trim())}`, fValue.value, 'feature-error');
        },
      },
      h('label', { for: 'new-feature' }, 'Feature'),
      fName,
      h('label', { for: 'new-feature-value' }, 'Value'),
      fValue,
      h('button', { type: 'submit' }, 'Set'),
    ),
    h('p.error', { id: 'feature-error', role: 'alert' }),
  );

  async function change(method, path, body, errId) {
    try {
      await api(method, path, body);
      await openDetail(name);
    } catch (e) {
      const p = box.querySelector(`#${errId}`);
      if (p) p.textContent = errorText(e);
    }
  }

  const notes = notesSection(href);

  const cloneName = h('input', { id: 'clone-name' });
  const lifecycle = h(
    'div.actions',
    {},
    vm.type === 'AdminVM'
      ? []
      : [
          ...ACTIONS.map(([a, title]) =>
            h(
              'button',
              {
                type: 'button',
                onclick: async () => {
                  await act(o, a, title);
                  await loadQubes();
                },
              },
              title,
            ),
          ),
          h(
            'button.danger',
            {
              type: 'button',
              onclick: async () => {
                if (!confirm(`Remove ${vm.name_label} and its volumes?`)) return;
                try {
                  await api('DELETE', href);
                  say(`Removed ${vm.name_label}.`);
                  box.replaceChildren();
                  await loadQubes();
                } catch (e) {
                  say(errorText(e), true);
                }
              },
            },
            'Remove',
          ),
        ],
  );
  const cloneForm =
    vm.type === 'AdminVM'
      ? null
      : h(
          'form.toolbar',
          {
            onsubmit: async (ev) => {
              ev.preventDefault();
              const t = await act(o, 'clone', 'Clone', { name: cloneName.value.trim() });
              if (t?.status === 'success') await loadQubes();
            },
          },
          h('label', { for: 'clone-name' }, 'Clone as'),
          cloneName,
          h('button', { type: 'submit' }, 'Clone'),
        );

  const volumes = h('div', {}, h('h3', {}, 'Volumes'), h('p', {}, 'Loading…'));
  box.replaceChildren(
    h(
      'div.card',
      {},
      h('h2', {}, h('span.swatch', { 'data-label': vm.label ?? '' }), vm.name_label),
      h('p', {}, `${vm.type} · ${vm.state}`),
      lifecycle,
      cloneForm,
      h('h3', {}, 'Properties'),
      propsForm,
      tags,
      features,
      notes,
      volumes,
      h('button', { type: 'button', onclick: () => box.replaceChildren() }, 'Close'),
    ),
  );
  paint(box);
  try {
    const vdis = (await api('GET', `/vdis?fields=qube,volume,size,usage,pool,revisions_to_keep,snap_on_start,save_on_stop`)).json.filter(
      (d) => d.qube === vm.name_label,
    );
    volumes.replaceChildren(
      h('h3', {}, 'Volumes'),
      h(
        'div.scroll',
        {},
        h(
          'table',
          { id: 'volumes' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['Volume', 'Pool', 'Size', 'Used', 'Revisions kept'].map((t) => h('th', { scope: 'col' }, t)),
            ),
          ),
          h(
            'tbody',
            {},
            vdis.map((d) =>
              h(
                'tr',
                {},
                h('td', {}, d.volume),
                h('td', {}, d.pool ?? ''),
                h('td', {}, bytes(d.size)),
                h('td', {}, bytes(d.usage)),
                h('td', {}, d.revisions_to_keep ?? ''),
              ),
            ),
          ),
        ),
      ),
    );
  } catch (e) {
    volumes.replaceChildren(h('h3', {}, 'Volumes'), h('p.error', {}, errorText(e)));
  }
}

/**
 * The qube's notes (GET/PUT /vms/{id}/notes, text/plain): shown in a <pre>
 * as text, edited in a textarea; whatever they hold (markup too) stays text.
 */
function notesSection(href) {
  const shown = h('pre.notes', { id: 'notes-text', 'aria-label': 'Notes' });
  const area = h('textarea.notes', { id: 'notes-edit', rows: 8, spellcheck: 'false', 'aria-describedby': 'notes-error' });
  const err = h('p.error', { id: 'notes-error', role: 'alert' });
  const editor = h(
    'form',
    {
      hidden: true,
      onsubmit: async (ev) => {
        ev.preventDefault();
        err.textContent = '';
        try {
          await api('PUT', `${href}/notes`, area.value, 'text/plain; charset=utf-8');
          say('Notes saved.');
          await load();
          editor.hidden = true;
          edit.hidden = false;
          edit.focus();
        } catch (e) {
          err.textContent = errorText(e);
          area.focus();
        }
      },
    },
    h('label', { for: 'notes-edit' }, 'Edit the notes'),
    area,
    h(
      'div.actions',
      {},
      h('button.primary', { type: 'submit' }, 'Save notes'),
      h(
        'button',
        {
          type: 'button',
          onclick: () => {
            editor.hidden = true;
            edit.hidden = false;
            err.textContent = '';
          },
        },
        'Cancel',
      ),
    ),
  );
  const edit = h(
    'button',
    {
      type: 'button',
      id: 'notes-edit-button',
      onclick: () => {
        area.value = shown.textContent;
        editor.hidden = false;
        edit.hidden = true;
        area.focus();
      },
    },
    'Edit notes',
  );
  async function load() {
    try {
      shown.textContent = (await api('GET', `${href}/notes`)).text;
      shown.classList.toggle('empty', !shown.textContent);
    } catch (e) {
      err.textContent = errorText(e);
      edit.disabled = true;
    }
  }
  void load();
  return h('div', { id: 'notes' }, h('h3', {}, 'Notes'), shown, edit, editor, err);
}

function bytes(n) {
  const v = Number(n);
  if (!Number.isFinite(v)) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0,
    x = v;
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return `${x.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// ---------------------------------------------------------------- tasks

function progressOf(t) {
  const p = t.status === 'success' ? 100 : (t.progress ?? null);
  return h('progress', { max: 100, value: p ?? undefined, 'aria-label': `${t.name} progress` }, p === null ? '' : `${p}%`);
}

async function renderTasks() {
  const v = $('#view-tasks');
  const draw = async () => {
    let list;
    try {
      list = (await api('GET', '/tasks?fields=*')).json;
    } catch (e) {
      say(errorText(e), true);
      return;
    }
    list.sort((a, b) => b.start - a.start);
    v.replaceChildren(
      h(
        'div.scroll',
        {},
        h(
          'table',
          { id: 'tasks' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['Task', 'Object', 'Started', 'Status', 'Progress', 'Error'].map((t) => h('th', { scope: 'col' }, t)),
            ),
          ),
          h(
            'tbody',
            {},
            list.length
              ? list.map((t) =>
                  h(
                    'tr',
                    { 'data-task': t.id },
                    h('td', {}, t.name),
                    h('td', {}, (t.object ?? '').split('/').pop()),
                    h('td', {}, new Date(t.start).toLocaleTimeString()),
                    h('td', {}, t.status),
                    h('td', {}, progressOf(t)),
                    h('td.error', {}, t.error ? `${t.error.error}: ${t.error.message}` : ''),
                  ),
                )
              : h('tr', {}, h('td', { colspan: 6 }, 'No task yet.')),
          ),
        ),
      ),
    );
  };
  await draw();
  poller = setInterval(draw, 1000);
}

// ---------------------------------------------------------------- backups

async function renderBackups() {
  const v = $('#view-backups');
  let known = [];
  try {
    known = (await api('GET', '/backup-profiles?fields=name_label')).json.map((p) => p.name_label);
  } catch {
    /* shown by the actions */
  }
  const profile = h('input', { id: 'profile', value: known[0] ?? '', list: 'profiles', required: true, 'aria-describedby': 'backup-error' });
  const info = h('pre', { id: 'backup-info', hidden: true });
  const bar = h('progress', { id: 'backup-progress', max: 100, value: 0, 'aria-label': 'backup progress' });
  const pct = h('span', { id: 'backup-percent' }, '');
  const err = h('p.error', { id: 'backup-error', role: 'alert' });
  const showInfo = async () => {
    err.textContent = '';
    try {
      const r = (await api('GET', `/backup-profiles/${encodeURIComponent(profile.value.trim())}`)).json;
      info.textContent = r.info;
      info.hidden = false;
    } catch (e) {
      err.textContent = errorText(e);
    }
  };
  const setPct = (p) => {
    bar.value = p;
    pct.textContent = `${Math.round(p)} %`;
  };
  const run = async () => {
    err.textContent = '';
    const name = profile.value.trim();
    setPct(0);
    const onEvent = (kw) => {
      if (kw.backup_profile === name && kw.progress !== undefined) setPct(Math.max(bar.value, Number(kw.progress)));
    };
    backupListeners.add(onEvent);
    try {
      const r = await api('POST', `/backup-profiles/${encodeURIComponent(name)}/actions/execute`);
      say(`Backup ${name} started.`);
      const t = await waitTask(r.location, (t) => {
        if (t.progress !== undefined) setPct(Math.max(bar.value, t.progress));
      });
      if (t.status === 'success') {
        setPct(100);
        say(`Backup ${name}: done.`);
      } else {
        err.textContent = `Backup ${name} ${t.status}: ${t.error?.message ?? ''}`;
      }
    } catch (e) {
      err.textContent = errorText(e);
    } finally {
      backupListeners.delete(onEvent);
    }
  };
  const cancel = async () => {
    try {
      await api('POST', `/backup-profiles/${encodeURIComponent(profile.value.trim())}/actions/cancel`);
      say('Cancel asked.');
    } catch (e) {
      err.textContent = errorText(e);
    }
  };
  v.replaceChildren(
    h(
      'div.card',
      {},
      h('h2', {}, 'Backups'),
      h(
        'datalist',
        { id: 'profiles' },
        known.map((n) => h('option', { value: n })),
      ),
      h(
        'div.toolbar',
        {},
        h('label', { for: 'profile' }, 'Profile'),
        profile,
        h('button', { type: 'button', onclick: showInfo }, 'Info'),
        h('button.primary', { type: 'button', onclick: run }, 'Back up now'),
        h('button.danger', { type: 'button', onclick: cancel }, 'Cancel'),
      ),
      h('div.toolbar', {}, bar, pct),
      err,
      info,
    ),
  );
}

// ---------------------------------------------------------------- policy

async function renderPolicy() {
  const v = $('#view-policy');
  let names;
  try {
    names = (await api('GET', '/policies')).json;
  } catch (e) {
    v.replaceChildren(h('p.error', {}, errorText(e)));
    return;
  }
  const editor = h('div', { id: 'policy-editor' });
  v.replaceChildren(
    h(
      'div.card',
      {},
      h('h2', {}, 'Policy files'),
      h(
        'ul.chips',
        { id: 'policy-list' },
        names.map((n) => h('li', {}, h('button', { type: 'button', 'data-policy': n, onclick: () => openPolicy(n, editor) }, n))),
      ),
    ),
    editor,
  );
}

async function openPolicy(name, editor) {
  let file;
  try {
    file = (await api('GET', `/policies/${encodeURIComponent(name)}`)).json;
  } catch (e) {
    say(errorText(e), true);
    return;
  }
  let token = file.token;
  const text = h('textarea.policy', { id: 'policy-text', spellcheck: 'false', 'aria-describedby': 'policy-error' });
  text.value = file.text;
  const err = h('div', { id: 'policy-error', role: 'alert' });
  const save = async () => {
    err.replaceChildren();
    try {
      const r = await api('PUT', `/policies/${encodeURIComponent(name)}`, { text: text.value, token });
      token = r.json.token;
      say(`Saved ${name}.`);
    } catch (e) {
      if (e.status === 409) {
        err.replaceChildren(
          h(
            'div.conflict',
            {},
            h('p.error', {}, `Conflict: ${e.message}`),
            h('p', {}, 'Your text was not saved and the file was not overwritten. '),
            h('button', { type: 'button', onclick: () => openPolicy(name, editor) }, 'Load the current version (your changes are lost)'),
          ),
        );
      } else if (e.status === 400 && e.body.line) {
        const lines = text.value.split('\n');
        const n = Number(e.body.line);
        err.replaceChildren(
          h('p.error', {}, `Line ${n}: ${e.message}. Nothing was saved.`),
          h(
            'ol.lines',
            { start: Math.max(1, n - 2) },
            lines.slice(Math.max(0, n - 3), n + 2).map((l, i) => h(Math.max(1, n - 2) + i === n ? 'li.line-error' : 'li', {}, l || ' ')),
          ),
        );
        // put the cursor on the line
        const at = lines.slice(0, n - 1).reduce((s, l) => s + l.length + 1, 0);
        text.focus();
        text.setSelectionRange(at, at + (lines[n - 1] ?? '').length);
      } else err.replaceChildren(h('p.error', {}, errorText(e)));
    }
  };
  editor.replaceChildren(
    h(
      'div.card',
      {},
      h('h2', {}, name),
      h('label', { for: 'policy-text' }, `Text of ${name}`),
      text,
      err,
      h(
        'div.actions',
        {},
        h('button.primary', { type: 'button', onclick: save }, 'Save'),
        h('button', { type: 'button', onclick: () => openPolicy(name, editor) }, 'Reload'),
      ),
    ),
  );
}

// ---------------------------------------------------------------- ask prompts

let asks = null;
function openAsks() {
  if (asks) asks.close();
  asks = new EventSource(`${API}/asks`);
  asks.onmessage = (m) => {
    let q;
    try {
      q = JSON.parse(m.data);
    } catch {
      return;
    }
    const box = $('#asks');
    const existing = box.querySelector(`[data-ask="${CSS.escape(q.id)}"]`);
    if (q.done) {
      existing?.remove();
      return;
    }
    if (existing) return;
    const sel = h(
      'select',
      { id: `ask-target-${q.id}` },
      q.targets.map((t) => h('option', { value: t, selected: t === q.default_target }, t)),
    );
    const answer = async (allow) => {
      try {
        await api('POST', `/asks/${encodeURIComponent(q.id)}`, allow ? { allow: true, target: sel.value } : { allow: false });
      } catch (e) {
        say(errorText(e), true);
      }
      card.remove();
    };
    const card = h(
      'section.card.ask',
      { 'data-ask': q.id, 'aria-label': 'Operation confirmation' },
      h('h2', {}, 'Allow this call?'),
      h('p', {}, h('strong', {}, q.source), ' asks for ', h('strong', {}, q.service), q.argument && q.argument !== '+' ? ` with argument ${q.argument}` : ''),
      h(
        'div.toolbar',
        {},
        h('label', { for: `ask-target-${q.id}` }, 'Target'),
        sel,
        h('button.primary', { type: 'button', onclick: () => answer(true) }, 'Allow'),
        h('button.danger', { type: 'button', onclick: () => answer(false) }, 'Deny'),
      ),
      h('p', {}, `Denied on its own in ${Math.max(0, Math.round((q.deadline - Date.now()) / 1000))} s without an answer.`),
    );
    box.append(card);
    sel.focus();
  };
}

// a module script runs once the document is parsed
void start();
