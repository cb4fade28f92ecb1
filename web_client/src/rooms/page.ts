/**
 * The room page at /r/<room_id>: get admitted (join as host/invited physician, resume with
 * the participant cookie, or redeem a share code), then drive the socket through the lobby,
 * the room and its terminal states.
 */
import { AnnotationPanel } from '../annotations/panel';
import { ChatPanel } from '../chat/panel';
import { ImagingPanel } from '../imaging/panel';
import { MediaPanel } from '../media/panel';
import { clearStatus, h, replace, say, statusLine } from '../dom';
import { bindText, errorKey, t, type MsgKey } from '../i18n';
import { api, ApiError } from '../net/api';
import {
  ClientEvent,
  ServerEvent,
  type Admission,
  type ClientToServerEvents,
  type ErrorInfo,
  type JoinedPayload,
  type Participant,
  type Room,
  type User,
} from '../net/protocol';
import { AckError, RoomSocket, type ConnectionStatus } from '../net/socket';
import type { Shell } from '../shell';
import { accountBox } from '../home/account';
import { redeemForm } from './join';
import { ParticipantsPanel } from './participants';
import { clearToken, loadToken, saveToken } from './session';

const STATUS_KEYS: Record<ConnectionStatus, MsgKey> = {
  connecting: 'connection.connecting',
  connected: 'connection.connected',
  reconnecting: 'connection.reconnecting',
  closed: 'connection.closed',
};

export function mountRoomPage(shell: Shell, roomId: string): Promise<void> {
  return new RoomPage(shell, roomId).start();
}

interface RoomView {
  root: HTMLElement;
  people: ParticipantsPanel;
  chat: ChatPanel;
  annotations: AnnotationPanel | null;
  imaging: ImagingPanel | null;
  media: MediaPanel | null;
  hostTools: HTMLElement;
  lobbySwitch: HTMLInputElement;
}

class RoomPage {
  private me: User | null = null;
  private socket: RoomSocket | null = null;
  private room: Room | null = null;
  private self: Participant | null = null;
  private live = false;
  private view: RoomView | null = null;

  private readonly titleEl: HTMLHeadingElement;
  private readonly summaryEl: HTMLDetailsElement;
  private readonly connEl: HTMLElement;
  private readonly notice: HTMLParagraphElement;
  private readonly stage: HTMLElement;

  constructor(
    private readonly shell: Shell,
    private readonly roomId: string,
  ) {
    this.titleEl = h('h1', { class: 'room-title', testid: 'room-title', i18n: 'room.title_placeholder' });
    this.summaryEl = h('details', { class: 'room-summary', attrs: { hidden: true } });
    this.connEl = h('span', {
      class: 'conn',
      testid: 'connection-status',
      attrs: { role: 'status', 'aria-live': 'polite', 'data-state': 'closed' },
    });
    this.notice = statusLine('room-notice');
    this.stage = h('div', { class: 'stage' });
    this.setConnection('closed');
    replace(
      shell.main,
      h(
        'div',
        { class: 'room-page' },
        h('div', { class: 'room-head' }, h('div', { class: 'room-head-text' }, this.titleEl, this.summaryEl), this.connEl),
        this.notice,
        this.stage,
      ),
    );
  }

  async start(): Promise<void> {
    this.showMessage('room.loading');
    this.me = await api.me().catch(() => null);
    replace(this.shell.account, accountBox(this.me));

    if (this.me) {
      try {
        this.admitted(await api.join(this.roomId));
        return;
      } catch (err) {
        if (err instanceof ApiError && err.code === 'gone') return this.showEnded();
        // not host nor invited: fall through to the cookie, then to a share code
      }
    }
    if (loadToken(this.roomId)) {
      this.connect();
      return;
    }
    try {
      // 200 means this browser already holds a participant cookie for the room.
      this.setRoom(await api.getRoom(this.roomId));
      if (this.room?.status === 'ended') return this.showEnded();
      this.connect();
    } catch (err) {
      if (err instanceof ApiError && err.code === 'gone') return this.showEnded();
      if (err instanceof ApiError && err.code === 'network') return this.showMessage('errors.network', true);
      this.showRedeem();
    }
  }

  // ------------------------------------------------------------ admission

  private showRedeem(notice?: MsgKey): void {
    this.setConnection('closed');
    replace(
      this.stage,
      redeemForm({
        roomId: this.roomId,
        ...(this.me ? { defaultName: this.me.name } : {}),
        ...(notice ? { notice } : {}),
        onAdmitted: (a) => this.admitted(a),
      }),
    );
  }

  private admitted(a: Admission): void {
    saveToken(this.roomId, a.token);
    this.connect();
  }

  // ------------------------------------------------------------ socket

  private connect(): void {
    this.socket?.close();
    this.dropView();
    this.showMessage('room.connecting');
    const socket = new RoomSocket({
      roomId: this.roomId,
      getToken: () => loadToken(this.roomId),
      getSince: () => this.view?.chat.lastSeq ?? null,
      onFatal: (e) => this.onFatal(e),
    });
    this.socket = socket;
    socket.onStatus((s) => {
      if (s !== 'connected') this.live = false;
      this.setConnection(s);
    });
    const io = socket.socket;
    io.on(ServerEvent.lobby, ({ participant }) => this.showLobby(participant));
    io.on(ServerEvent.joined, (p) => this.onJoined(p));
    io.on(ServerEvent.presence, (p) => this.onPresence(p));
    io.on(ServerEvent.chat, (m) => this.view?.chat.onMessage(m));
    io.on(ServerEvent.room, (r) => this.setRoom(r));
    io.on(ServerEvent.rejected, () => {
      clearToken(this.roomId);
      this.finish('room.rejected_title', 'room.rejected_body');
    });
    io.on(ServerEvent.removed, () => {
      clearToken(this.roomId);
      this.finish('room.removed_title', 'room.removed_body');
    });
    io.on(ServerEvent.ended, (r) => {
      this.setRoom(r);
      this.showEnded();
    });
    io.on(ServerEvent.server_shutdown, ({ reconnect_after_s }) => {
      say(this.notice, 'room.server_restarting', 'info', { seconds: Math.max(0, Math.round(reconnect_after_s)) });
    });
    io.on(ServerEvent.error, (e) => {
      // Only pointers go as `y` without an ack: best effort, nothing to tell the user.
      if (e.event !== ClientEvent.y) say(this.notice, errorKey(e), 'error');
    });
    socket.connect();
  }

  private onFatal(e: ErrorInfo): void {
    this.socket = null;
    this.live = false;
    switch (e.code) {
      case 'unauthorized':
        clearToken(this.roomId);
        this.dropView();
        this.showRedeem('join.expired');
        break;
      case 'gone':
        this.showEnded();
        break;
      case 'not_found':
        this.finish('room.not_found_title', 'room.not_found_body');
        break;
      default:
        this.finish('room.no_access_title', errorKey(e));
    }
  }

  private showLobby(me: Participant): void {
    this.self = me;
    this.live = false;
    replace(
      this.stage,
      h(
        'div',
        { class: 'card narrow lobby-waiting', testid: 'lobby-waiting' },
        h('div', { class: 'spinner', attrs: { 'aria-hidden': 'true' } }),
        h('h2', { i18n: 'lobby.title' }),
        h('p', { i18n: ['lobby.body', { name: me.name }] }),
        h('p', { class: 'hint', i18n: 'lobby.hint' }),
        h('div', { class: 'actions' }, this.leaveButton()),
      ),
    );
  }

  private onJoined(p: JoinedPayload): void {
    this.self = p.self;
    this.setRoom(p.room);
    this.live = true;
    if (this.notice.dataset['kind'] !== 'error') clearStatus(this.notice);
    const view = this.view ?? this.buildView();
    if (this.stage.firstElementChild !== view.root) replace(this.stage, view.root);
    view.people.setAll(p.self, p.participants);
    view.chat.onJoined(p);
    view.imaging?.onJoined(p);
    view.media?.onJoined(p);
    view.annotations?.onJoined(p.self.id, p.self.role, p);
    this.applyRole();
  }

  private onPresence(p: Participant): void {
    if (!this.view) return;
    this.view.people.upsert(p);
    if (this.self && p.id === this.self.id) {
      this.self = p;
      this.applyRole();
    }
  }

  // ------------------------------------------------------------ room view

  private buildView(): RoomView {
    const people = new ParticipantsPanel({
      admit: (id) => this.act(ClientEvent.admit, id),
      reject: (id) => this.act(ClientEvent.reject, id),
      remove: (id) => this.act(ClientEvent.remove, id),
      transferHost: (id) => this.act(ClientEvent.transfer_host, id),
    });
    const chat = new ChatPanel({
      send: async (id, text) => {
        if (!this.socket || !this.live) throw new AckError('offline', 'not in the room');
        return (await this.socket.send(ClientEvent.chat, { id, text })).message;
      },
      isLive: () => this.live && (this.socket?.connected ?? false),
      self: () => ({ id: this.self?.id ?? '', name: this.self?.name ?? '' }),
    });

    const toolStatus = statusLine();
    const lobbySwitch = h('input', {
      testid: 'lobby-toggle',
      attrs: { type: 'checkbox', role: 'switch', id: 'lobby-switch' },
      on: {
        change: () => {
          const enabled = lobbySwitch.checked;
          lobbySwitch.disabled = true;
          clearStatus(toolStatus);
          this.request(ClientEvent.set_lobby, { enabled })
            .catch((err: unknown) => {
              lobbySwitch.checked = !enabled;
              say(toolStatus, errorKey(err), 'error');
            })
            .finally(() => {
              lobbySwitch.disabled = false;
            });
        },
      },
    });
    const endButton: HTMLButtonElement = h('button', {
      class: 'danger',
      testid: 'end-room',
      i18n: 'room.end',
      attrs: { type: 'button' },
      on: {
        click: () => {
          if (!confirm(t('room.confirm_end'))) return;
          endButton.disabled = true;
          this.request(ClientEvent.end, {})
            .catch((err: unknown) => say(toolStatus, errorKey(err), 'error'))
            .finally(() => {
              endButton.disabled = false;
            });
        },
      },
    });
    const hostTools = h(
      'section',
      { class: 'host-tools panel', testid: 'host-tools', attrs: { hidden: true } },
      h('h2', { i18n: 'room.host_tools' }),
      h('div', { class: 'switch-row' }, lobbySwitch, h('label', { i18n: 'room.lobby_switch', attrs: { for: 'lobby-switch' } })),
      h('p', { class: 'hint', i18n: 'room.lobby_switch_hint' }),
      h('div', { class: 'actions' }, endButton),
      toolStatus,
    );
    const root = h(
      'div',
      { class: 'room-layout' },
      h('aside', { class: 'room-side' }, people.el, hostTools, h('div', { class: 'actions' }, this.leaveButton())),
      chat.el,
    );
    // The viewer is the scene the annotations are drawn on (the demo image until a series is open).
    const imaging = this.socket ? new ImagingPanel(this.socket, this.roomId, () => loadToken(this.roomId)) : null;
    const annotations = this.socket
      ? new AnnotationPanel(this.socket, imaging?.viewer, { roomId: this.roomId, token: () => loadToken(this.roomId) })
      : null;
    // The call sits above the images: faces first, then what is discussed.
    const media = this.socket ? new MediaPanel(this.socket) : null;
    if (media) root.appendChild(media.el);
    if (imaging) root.appendChild(imaging.el);
    if (annotations) root.appendChild(annotations.el);
    this.view = { root, people, chat, annotations, imaging, media, hostTools, lobbySwitch };
    return this.view;
  }

  private applyRole(): void {
    if (!this.view || !this.self) return;
    const isHost = this.self.role === 'host';
    this.view.people.setHost(isHost);
    this.view.hostTools.hidden = !isHost;
    this.view.chat.setCanPost(this.self.role !== 'observer');
    this.view.annotations?.setRole(this.self.role);
    this.view.imaging?.setRole(this.self.role);
    this.view.media?.setRole(this.self.role);
    if (this.room) this.view.lobbySwitch.checked = this.room.lobby;
  }

  private setRoom(r: Room): void {
    this.room = r;
    this.titleEl.removeAttribute('data-i18n');
    this.titleEl.textContent = r.title;
    document.title = `${r.title} · consultd`;
    if (r.summary) {
      replace(this.summaryEl, h('summary', { i18n: 'room.summary' }), h('p', { class: 'summary-text' }, r.summary));
      this.summaryEl.hidden = false;
    } else {
      this.summaryEl.hidden = true;
    }
    if (this.view) this.view.lobbySwitch.checked = r.lobby;
  }

  private async act(event: 'admit' | 'reject' | 'remove' | 'transfer_host', participantId: string): Promise<void> {
    await this.request(event, { participant_id: participantId });
  }

  private async request<E extends 'admit' | 'reject' | 'remove' | 'transfer_host' | 'set_lobby' | 'end' | 'leave'>(
    event: E,
    payload: Parameters<ClientToServerEvents[E]>[0],
  ): Promise<void> {
    if (!this.socket) throw new AckError('offline', 'not connected');
    await this.socket.send(event, payload);
  }

  private leaveButton(): HTMLButtonElement {
    const btn: HTMLButtonElement = h('button', {
      testid: 'leave-room',
      i18n: 'room.leave',
      attrs: { type: 'button' },
      on: {
        click: () => {
          btn.disabled = true;
          const socket = this.socket;
          const done = (): void => {
            socket?.close();
            this.finish('room.left_title', 'room.left_body', true);
          };
          if (socket?.connected) void socket.send(ClientEvent.leave, {}, 3000).then(done, done);
          else done();
        },
      },
    });
    return btn;
  }

  /** Forget the room view; its call stops (camera and microphone released). */
  private dropView(): void {
    this.view?.media?.close();
    this.view = null;
  }

  // ------------------------------------------------------------ screens

  private setConnection(s: ConnectionStatus): void {
    this.connEl.dataset['state'] = s;
    bindText(this.connEl, STATUS_KEYS[s]);
  }

  private showMessage(key: MsgKey, retry = false): void {
    replace(
      this.stage,
      h(
        'div',
        { class: 'card narrow center' },
        h('p', { i18n: key }),
        retry ? h('button', { i18n: 'room.retry', attrs: { type: 'button' }, on: { click: () => location.reload() } }) : null,
      ),
    );
  }

  private showEnded(): void {
    this.finish('room.ended_title', 'room.ended_body');
  }

  /** A terminal screen: the socket is closed and the room view is gone. */
  private finish(titleKey: MsgKey, bodyKey: MsgKey, canRejoin = false): void {
    this.socket?.close();
    this.socket = null;
    this.live = false;
    this.dropView();
    this.setConnection('closed');
    replace(
      this.stage,
      h(
        'div',
        { class: 'card narrow center terminal', testid: 'room-closed' },
        h('h2', { i18n: titleKey }),
        h('p', { i18n: bodyKey }),
        h(
          'div',
          { class: 'actions' },
          canRejoin
            ? h('button', { class: 'primary', i18n: 'room.rejoin', attrs: { type: 'button' }, on: { click: () => location.reload() } })
            : null,
          this.me ? h('a', { class: 'button', i18n: 'room.back_home', attrs: { href: '/' } }) : null,
        ),
      ),
    );
  }
}
