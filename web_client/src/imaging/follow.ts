/**
 * "Follow me": a presenter's viewer drives everyone else's (docs/protocol.md, `viewer`).
 *
 * Presenting: every change this user makes to what the viewer shows (image, slice,
 * window/level, zoom, pan) is sent as `viewer {follow: true, view}`, at most every
 * SEND_INTERVAL_MS (the latest wins). Turning it off sends `{follow: false}`. One presenter
 * at a time: when someone else starts, we stop.
 *
 * Following: the server sends `viewer {presenter, view}` on every change (and when we join
 * while someone presents); the viewer shows that view. Scrolling or windowing by hand while
 * someone presents detaches this viewer until "Follow again".
 */
import { h } from '../dom';
import { bindText } from '../i18n';
import { ClientEvent, ServerEvent, type ViewerEvent, type ViewState } from '../net/protocol';
import type { RoomSocket } from '../net/socket';
import type { Roster } from '../annotations/roster';
import { Throttle } from '../annotations/throttle';
import type { Viewer } from './viewer';

const SEND_INTERVAL_MS = 60;

export class FollowControl {
  readonly el: HTMLElement;
  private readonly toggle: HTMLButtonElement;
  private readonly status: HTMLElement;
  private readonly rejoinBtn: HTMLButtonElement;
  private presenting = false;
  private presenter: string | null = null;
  private presented: ViewState | null = null;
  private detached = false;
  private selfId: string | null = null;
  private canPresent = false;
  private applying = 0;
  private readonly sender = new Throttle(SEND_INTERVAL_MS, () => this.sendView());

  constructor(
    private readonly socket: RoomSocket,
    private readonly viewer: Viewer,
    private readonly roster: Roster,
  ) {
    this.toggle = h('button', {
      class: 'small follow-toggle',
      testid: 'follow-toggle',
      i18n: 'imaging.follow_me',
      i18nAttrs: { title: 'imaging.follow_me_title' },
      attrs: { type: 'button', 'aria-pressed': 'false', disabled: true },
      on: { click: () => this.setPresenting(!this.presenting) },
    });
    this.status = h('span', { class: 'follow-status', testid: 'follow-status', attrs: { role: 'status', 'aria-live': 'polite' } });
    this.rejoinBtn = h('button', {
      class: 'small',
      testid: 'follow-again',
      i18n: 'imaging.follow_again',
      attrs: { type: 'button', hidden: true },
      on: { click: () => this.rejoin() },
    });
    this.el = h('div', { class: 'follow', testid: 'follow' }, this.toggle, this.status, this.rejoinBtn);

    socket.socket.on(ServerEvent.viewer, (e) => this.onViewer(e));
    socket.socket.on('disconnect', () => {
      // The server ends our presentation when we leave; on reconnect we start again.
      this.sender.cancel();
    });
    roster.onChange(() => this.show());
    viewer.onView((local) => this.viewChanged(local));
    viewer.onSeries(() => this.show());
    this.show();
  }

  get isPresenting(): boolean {
    return this.presenting;
  }

  /** The presenter's id, null when nobody presents (or it is us). */
  get following(): string | null {
    return this.presenter !== null && this.presenter !== this.selfId && !this.detached ? this.presenter : null;
  }

  onJoined(selfId: string, role: string): void {
    this.selfId = selfId;
    this.setRole(role);
    // Presenting survives a reconnect: say it again (the server forgot it when we left).
    if (this.presenting) this.sendView();
  }

  setRole(role: string): void {
    this.canPresent = role === 'host' || role === 'participant';
    if (!this.canPresent && this.presenting) this.setPresenting(false);
    this.show();
  }

  setPresenting(on: boolean): void {
    if (on && (!this.canPresent || !this.viewer.viewState())) return;
    this.presenting = on;
    if (on) {
      this.presenter = this.selfId;
      this.detached = false;
      this.sendView();
    } else {
      this.sender.cancel();
      if (this.presenter === this.selfId) this.presenter = null;
      this.socket.send(ClientEvent.viewer, { follow: false }).catch(() => undefined);
    }
    this.show();
  }

  private viewChanged(local: boolean): void {
    if (this.applying) return;
    if (this.presenting) {
      if (local) this.sender.request();
      return;
    }
    if (local && this.presenter !== null && this.presenter !== this.selfId && !this.detached) {
      this.detached = true;
      this.show();
    }
  }

  private sendView(): void {
    const view = this.viewer.viewState();
    if (!this.presenting || !view || !this.socket.connected) return;
    this.socket.send(ClientEvent.viewer, { follow: true, view: roundView(view) }).catch(() => undefined);
  }

  private onViewer(e: ViewerEvent): void {
    const presenter = typeof e?.presenter === 'string' ? e.presenter : null;
    if (presenter !== this.presenter) this.detached = false;
    this.presenter = presenter;
    this.presented = presenter !== null ? (e.view ?? null) : null;
    if (presenter !== null && presenter !== this.selfId && this.presenting) {
      // Someone else took over.
      this.presenting = false;
      this.sender.cancel();
    }
    this.show();
    if (this.following && this.presented) void this.apply(this.presented);
  }

  private rejoin(): void {
    this.detached = false;
    this.show();
    if (this.following && this.presented) void this.apply(this.presented);
  }

  private async apply(view: ViewState): Promise<void> {
    this.applying += 1;
    try {
      await this.viewer.applyView(view);
    } finally {
      this.applying -= 1;
    }
  }

  private show(): void {
    this.toggle.setAttribute('aria-pressed', String(this.presenting));
    this.toggle.disabled = !this.canPresent || (!this.presenting && !this.viewer.viewState());
    const other = this.presenter !== null && this.presenter !== this.selfId;
    const name = other ? (this.roster.name(this.presenter!) ?? '') : '';
    if (this.presenting) bindText(this.status, 'imaging.presenting');
    else if (other && this.detached) bindText(this.status, 'imaging.detached', { name });
    else if (other) bindText(this.status, 'imaging.following', { name });
    else this.status.textContent = '';
    this.status.dataset['state'] = this.presenting ? 'presenting' : other ? (this.detached ? 'detached' : 'following') : 'none';
    this.rejoinBtn.hidden = !(other && this.detached);
  }
}

/** Fewer digits on the wire (and within the schema's bounds). */
function roundView(v: ViewState): ViewState {
  const r = (x: number, d: number): number => Math.round(x * d) / d;
  return {
    ...v,
    window_center: v.window_center === null ? null : r(v.window_center, 100),
    window_width: v.window_width === null ? null : Math.max(0.01, r(v.window_width, 100)),
    zoom: Math.min(64, Math.max(0.05, r(v.zoom, 1000))),
    pan_x: r(v.pan_x, 100),
    pan_y: r(v.pan_y, 100),
  };
}
