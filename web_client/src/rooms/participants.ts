/**
 * Who is in the room: participants with role and presence state, and, for the host,
 * the lobby queue with admit/reject plus remove and hand-over-host actions.
 */
import { clearStatus, h, replace, sayError, statusLine } from '../dom';
import { t, type MsgKey } from '../i18n';
import type { Participant, ParticipantState, Role } from '../net/protocol';

export interface ParticipantActions {
  admit: (id: string) => Promise<void>;
  reject: (id: string) => Promise<void>;
  remove: (id: string) => Promise<void>;
  transferHost: (id: string) => Promise<void>;
}

const ROLE_KEYS: Record<Role, MsgKey> = {
  host: 'roles.host',
  participant: 'roles.participant',
  observer: 'roles.observer',
};

const STATE_KEYS: Record<ParticipantState, MsgKey> = {
  lobby: 'presence.lobby',
  joined: 'presence.joined',
  reconnecting: 'presence.reconnecting',
  left: 'presence.left',
  removed: 'presence.removed',
  rejected: 'presence.rejected',
};

const ROLE_ORDER: Record<Role, number> = { host: 0, participant: 1, observer: 2 };
const STATE_ORDER: Record<ParticipantState, number> = { joined: 0, reconnecting: 1, lobby: 2, left: 3, removed: 4, rejected: 4 };

/** Shown in the room list; removed and rejected people drop out of it. */
const LISTED: ReadonlySet<ParticipantState> = new Set(['joined', 'reconnecting', 'left']);

export class ParticipantsPanel {
  readonly el: HTMLElement;
  private readonly people = new Map<string, Participant>();
  private readonly list: HTMLUListElement;
  private readonly lobbyList: HTMLUListElement;
  private readonly lobbySection: HTMLElement;
  private readonly status: HTMLParagraphElement;
  private selfId = '';
  private isHost = false;

  constructor(private readonly actions: ParticipantActions) {
    this.list = h('ul', { class: 'people', testid: 'participant-list', attrs: { 'aria-labelledby': 'people-heading' } });
    this.lobbyList = h('ul', { class: 'people lobby-queue', testid: 'lobby-list', attrs: { 'aria-labelledby': 'lobby-heading' } });
    this.lobbySection = h(
      'section',
      { class: 'lobby-section', attrs: { hidden: true } },
      h('h3', { i18n: 'room.lobby_heading', attrs: { id: 'lobby-heading' } }),
      this.lobbyList,
    );
    this.status = statusLine();
    this.el = h(
      'section',
      { class: 'participants panel' },
      h('h2', { i18n: 'room.participants_heading', attrs: { id: 'people-heading' } }),
      this.list,
      this.lobbySection,
      this.status,
    );
  }

  get self(): Participant | undefined {
    return this.people.get(this.selfId);
  }

  setAll(self: Participant, list: readonly Participant[]): void {
    this.people.clear();
    for (const p of list) this.people.set(p.id, p);
    this.people.set(self.id, self);
    this.selfId = self.id;
    this.render();
  }

  upsert(p: Participant): void {
    this.people.set(p.id, p);
    this.render();
  }

  setHost(isHost: boolean): void {
    this.isHost = isHost;
    this.render();
  }

  private render(): void {
    const all = [...this.people.values()];
    const listed = all
      .filter((p) => LISTED.has(p.state))
      .sort(
        (a, b) =>
          STATE_ORDER[a.state] - STATE_ORDER[b.state] ||
          ROLE_ORDER[a.role] - ROLE_ORDER[b.role] ||
          a.name.localeCompare(b.name),
      );
    replace(this.list, ...listed.map((p) => this.renderPerson(p)));

    const waiting = this.isHost ? all.filter((p) => p.state === 'lobby') : [];
    this.lobbySection.hidden = waiting.length === 0;
    replace(this.lobbyList, ...waiting.map((p) => this.renderLobbyEntry(p)));
  }

  private renderPerson(p: Participant): HTMLLIElement {
    const isSelf = p.id === this.selfId;
    const actions: HTMLElement[] = [];
    if (this.isHost && !isSelf && p.state !== 'left') {
      if (p.user_id !== null && p.role !== 'observer') {
        actions.push(
          this.actionButton('room.make_host', () => {
            if (confirm(t('room.confirm_transfer', { name: p.name }))) return this.actions.transferHost(p.id);
            return Promise.resolve();
          }),
        );
      }
      actions.push(
        this.actionButton(
          'room.remove',
          () => {
            if (confirm(t('room.confirm_remove', { name: p.name }))) return this.actions.remove(p.id);
            return Promise.resolve();
          },
          'danger',
        ),
      );
    }
    return h(
      'li',
      {
        class: `person state-${p.state}`,
        testid: `participant-${p.id}`,
        attrs: { 'data-state': p.state, 'data-role': p.role },
      },
      h('span', { class: `dot dot-${p.state}`, attrs: { 'aria-hidden': 'true' } }),
      h(
        'span',
        { class: 'person-main' },
        h('span', { class: 'person-name' }, p.name, isSelf ? ' ' : null, isSelf ? h('span', { class: 'you', i18n: 'room.you' }) : null),
        p.specialty ? h('span', { class: 'specialty' }, p.specialty) : null,
      ),
      h(
        'span',
        { class: 'person-badges' },
        h('span', { class: `badge role-${p.role}`, i18n: ROLE_KEYS[p.role] }),
        h('span', { class: `badge presence-${p.state}`, testid: 'presence-state', i18n: STATE_KEYS[p.state] }),
      ),
      actions.length ? h('span', { class: 'person-actions' }, ...actions) : null,
    );
  }

  private renderLobbyEntry(p: Participant): HTMLLIElement {
    return h(
      'li',
      { class: 'person state-lobby', testid: `lobby-${p.id}`, attrs: { 'data-state': p.state, 'data-role': p.role } },
      h(
        'span',
        { class: 'person-main' },
        h('span', { class: 'person-name' }, p.name),
        p.specialty ? h('span', { class: 'specialty' }, p.specialty) : null,
      ),
      h('span', { class: 'person-badges' }, h('span', { class: `badge role-${p.role}`, i18n: ROLE_KEYS[p.role] })),
      h(
        'span',
        { class: 'person-actions' },
        this.actionButton('room.admit', () => this.actions.admit(p.id), 'primary', `admit-${p.id}`),
        this.actionButton('room.reject', () => this.actions.reject(p.id), 'danger', `reject-${p.id}`),
      ),
    );
  }

  private actionButton(key: MsgKey, run: () => Promise<void>, kind = '', testid?: string): HTMLButtonElement {
    const btn: HTMLButtonElement = h('button', {
      class: `small ${kind}`.trim(),
      i18n: key,
      attrs: { type: 'button' },
      ...(testid ? { testid } : {}),
      on: {
        click: () => {
          btn.disabled = true;
          clearStatus(this.status);
          run()
            .catch((err: unknown) => sayError(this.status, err))
            .finally(() => {
              btn.disabled = false;
            });
        },
      },
    });
    return btn;
  }
}
