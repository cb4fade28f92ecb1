/** The home page at /: sign in or register, then my rooms and a form to create one. */
import { clearStatus, field, h, replace, sayError, statusLine } from '../dom';
import { api, ApiError } from '../net/api';
import type { Room, User } from '../net/protocol';
import type { Shell } from '../shell';
import { accountBox } from './account';
import { authForms } from './auth';
import { roomCard } from './roomCard';

export async function mountHome(shell: Shell): Promise<void> {
  let me: User | null = null;
  try {
    me = await api.me();
  } catch (err) {
    if (!(err instanceof ApiError && err.code === 'unauthorized')) {
      const status = statusLine();
      sayError(status, err);
      replace(shell.main, h('div', { class: 'card narrow' }, status));
      return;
    }
  }
  replace(shell.account, accountBox(me));
  if (!me) {
    replace(shell.main, authForms(() => void mountHome(shell)));
    return;
  }
  dashboard(shell, me);
}

function dashboard(shell: Shell, me: User): void {
  const list = h('div', { class: 'room-list', testid: 'room-list' });
  const listStatus = statusLine();

  async function refresh(): Promise<void> {
    clearStatus(listStatus);
    try {
      const { rooms } = await api.listRooms();
      rooms.sort((a, b) => rank(a) - rank(b) || b.created_at.localeCompare(a.created_at));
      if (!rooms.length) replace(list, h('p', { class: 'empty', i18n: 'rooms.none' }));
      else replace(list, ...rooms.map((r) => roomCard(r, me, () => void refresh())));
    } catch (err) {
      sayError(listStatus, err);
    }
  }

  replace(
    shell.main,
    h(
      'div',
      { class: 'home' },
      createRoomForm(() => void refresh()),
      h('section', { class: 'rooms' }, h('h2', { i18n: 'rooms.title' }), listStatus, list),
    ),
  );
  void refresh();
}

const rank = (r: Room): number => (r.status === 'open' ? 0 : 1);

function createRoomForm(onCreated: (r: Room) => void): HTMLElement {
  const title = h('input', { testid: 'room-title-input', attrs: { type: 'text', name: 'title', required: true, maxlength: 200 } });
  const summary = h('textarea', { testid: 'room-summary-input', attrs: { name: 'summary', rows: 3, maxlength: 4000 } });
  const lobby = h('input', { testid: 'room-lobby-input', attrs: { type: 'checkbox', name: 'lobby', checked: true, id: 'new-room-lobby' } });
  const status = statusLine();
  const button = h('button', { class: 'primary', testid: 'create-room', i18n: 'rooms.create', attrs: { type: 'submit' } });
  return h(
    'form',
    {
      class: 'card create-room',
      on: {
        submit: (ev) => {
          ev.preventDefault();
          button.disabled = true;
          clearStatus(status);
          api
            .createRoom({ title: title.value.trim(), summary: summary.value.trim(), lobby: lobby.checked })
            .then((room) => {
              title.value = '';
              summary.value = '';
              onCreated(room);
            })
            .catch((err: unknown) => sayError(status, err))
            .finally(() => {
              button.disabled = false;
            });
        },
      },
    },
    h('h2', { i18n: 'rooms.new_title' }),
    field('rooms.field_title', title),
    field('rooms.field_summary', summary, 'rooms.summary_hint'),
    h('div', { class: 'switch-row' }, lobby, h('label', { i18n: 'rooms.field_lobby', attrs: { for: 'new-room-lobby' } })),
    status,
    h('div', { class: 'actions' }, button),
  );
}
