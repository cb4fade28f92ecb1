/**
 * One participant's media session with the room's SFU (docs/protocol.md, "Media"): one
 * RTCPeerConnection, BUNDLE, unified plan. The client always offers and the server answers,
 * so offers are serialised here (one in flight; a request made meanwhile folds into the
 * next one) and there is no glare.
 *
 * Sending m-lines are added when a source first has a track and never removed (the server
 * refuses a removed or reordered m-line): a stopped screen share or the camera in audio-only
 * mode goes `inactive`, a camera switched off sends nothing (`replaceTrack(null)`), a muted
 * microphone sends silence (`track.enabled = false`, done by the panel). Receiving m-lines
 * are the `recvonly` transceivers the server asks for with `media_negotiate`; which producer
 * each carries is read from the answer's `a=msid` by MID.
 *
 * Recovery: ICE `disconnected` for a moment or `failed` -> an ICE-restart offer; if the
 * connection is not back within a few seconds, `media_leave` then `media_join` with a new
 * RTCPeerConnection. A server that refuses the restart offer, or answers it with its old
 * ICE credentials, did not restart (RFC 8445 §9 changes them on both sides; aiortc 1.16
 * starts its ICE transport once and ignores new remote credentials): then the new
 * transport comes at once, and later recoveries skip the restart.
 */
import {
  ClientEvent,
  ServerEvent,
  MEDIA_CANDIDATE_MAX_CHARS,
  type MediaCandidatePayload,
  type MediaClosedReason,
  type MediaIceServer,
  type MediaSource,
  type MediaTrack,
} from '../net/protocol';
import { AckError, type RoomSocket } from '../net/socket';
import { iceUfrag, msidByMid } from './sdp';

export type SessionState = 'idle' | 'joining' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

/** A track the server forwards to us, and whose producer it is. */
export interface RemoteTrack {
  producerId: string;
  streamId: string;
  track: MediaStreamTrack;
}

export interface SessionListener {
  /** Our participant id (we never receive our own tracks). */
  selfId(): string;
  state(s: SessionState): void;
  /** The room's published tracks (`media_join`, `media_tracks`). */
  tracks(tracks: MediaTrack[]): void;
  /** The set of tracks we receive changed. */
  remote(): void;
  speaker(participantId: string | null): void;
  /** The server closed our transport (or, `demoted`, our producers). */
  closed(reason: MediaClosedReason): void;
  /** Something failed that the user should hear about (the session carries on if it can). */
  error(err: unknown): void;
}

const SOURCES: readonly MediaSource[] = ['microphone', 'camera', 'screen'];
/** `disconnected` often heals by itself (a Wi-Fi hiccup): wait this long before acting. */
const DISCONNECT_GRACE_MS = 1500;
/** After an ICE-restart offer, how long before giving up on it for a new transport. */
const RESTART_WAIT_MS = 4000;
/** A first connection that is not up by then is retried on a new transport. */
const CONNECT_TIMEOUT_MS = 15000;
const REBUILD_BACKOFF_MS = [1000, 2000, 4000, 8000];
/** Screen shares carry text: more bits than a face (the server's REMB caps the sum). */
const MAX_BITRATE: Record<'camera' | 'screen', number> = { camera: 1_000_000, screen: 2_500_000 };
/** Acks after which retrying the same thing is pointless. */
const NO_RETRY = new Set(['forbidden', 'not_found', 'gone', 'unauthorized']);

export class MediaSession {
  pc: RTCPeerConnection | null = null;
  canPublish = false;
  private stateValue: SessionState = 'idle';
  private readonly local: Record<MediaSource, MediaStreamTrack | null> = { microphone: null, camera: null, screen: null };
  private readonly senders = new Map<MediaSource, RTCRtpTransceiver>();
  private readonly receivers = new Set<RTCRtpTransceiver>();
  private readonly localStream = new MediaStream();
  private remoteTracks = new Map<string, RemoteTrack>();
  private audioOnly = false;
  /** `media_negotiate` counts that came before our peer connection. */
  private pendingRecv = { audio: 0, video: 0 };
  /** Our ICE candidates, held while an offer is out (the server applies them after it). */
  private heldCandidates: MediaCandidatePayload[] | null = [];
  /** Bumped for every new peer connection: callbacks of an older one are ignored. */
  private generation = 0;
  private offeringGen = -1;
  private offerWanted = false;
  private iceRestartWanted = false;
  private restartTimer: ReturnType<typeof setTimeout> | null = null;
  private graceTimer: ReturnType<typeof setTimeout> | null = null;
  private connectTimer: ReturnType<typeof setTimeout> | null = null;
  private rebuildTimer: ReturnType<typeof setTimeout> | null = null;
  private rebuildAttempts = 0;
  /** Whether the server restarts ICE (null: not tried yet). */
  private serverRestartsIce: boolean | null = null;
  /** `media_leave`s we sent ourselves: their `media_closed {left}` is no news. */
  private ownLeaves = 0;

  constructor(
    private readonly socket: RoomSocket,
    private readonly listener: SessionListener,
  ) {
    const io = socket.socket;
    io.on(ServerEvent.media_negotiate, ({ audio, video }) => this.onNegotiate(audio, video));
    io.on(ServerEvent.media_tracks, ({ tracks }) => {
      if (this.active) this.listener.tracks(tracks);
    });
    io.on(ServerEvent.media_speaker, ({ participant_id }) => {
      if (this.active) this.listener.speaker(participant_id);
    });
    io.on(ServerEvent.media_closed, ({ reason }) => this.onClosed(reason));
  }

  get state(): SessionState {
    return this.stateValue;
  }

  /** Joined (or joining, or recovering): not idle and not closed. */
  get active(): boolean {
    return this.stateValue !== 'idle' && this.stateValue !== 'closed';
  }

  /** Whether the server restarts ICE (null: not tried yet). */
  get iceRestarts(): boolean | null {
    return this.serverRestartsIce;
  }

  get receivingVideo(): boolean {
    return !this.audioOnly;
  }

  /** The tracks we receive, by producer id. */
  get remote(): ReadonlyMap<string, RemoteTrack> {
    return this.remoteTracks;
  }

  localTrack(source: MediaSource): MediaStreamTrack | null {
    return this.local[source];
  }

  /** `media_join`, then offer what we send and receivers for what the room has. */
  async start(): Promise<void> {
    this.clearTimers();
    this.closePc();
    const gen = ++this.generation;
    this.setState('joining');
    this.pendingRecv = { audio: 0, video: 0 };
    const ack = await this.socket.send(ClientEvent.media_join, {});
    if (gen !== this.generation) return;
    this.ownLeaves = 0;
    this.canPublish = ack.can_publish;
    this.listener.tracks(ack.tracks);
    const pc = this.newPc(ack.ice_servers, gen);
    if (this.canPublish) for (const source of SOURCES) this.syncSender(source);
    // Receivers for the tracks already there, in the first offer: a late joiner sees video
    // one round trip sooner. The server sends `media_negotiate` only after a first offer, and
    // refuses an offer without m-lines, so someone who sends nothing offers one audio
    // receiver (more follow with `media_negotiate`).
    let { audio, video } = this.pendingRecv;
    this.pendingRecv = { audio: 0, video: 0 };
    const self = this.listener.selfId();
    for (const t of ack.tracks) {
      if (t.participant_id === self) continue;
      if (t.kind === 'audio') audio++;
      else video++;
    }
    if (pc.getTransceivers().length === 0 && audio === 0 && (video === 0 || this.audioOnly)) audio = 1;
    this.addReceivers(audio, video);
    this.setState('connecting');
    this.connectTimer = setTimeout(() => {
      if (gen === this.generation && pc.connectionState !== 'connected') this.rebuild();
    }, CONNECT_TIMEOUT_MS);
    this.requestOffer();
  }

  /** Leave the call: our transport closes and our tracks leave everyone else's. */
  async leave(): Promise<void> {
    const was = this.active;
    this.generation++;
    this.clearTimers();
    this.closePc();
    this.setState('idle');
    if (was && this.socket.connected) {
      this.ownLeaves++;
      await this.socket.send(ClientEvent.media_leave, {}, 3000).catch(() => undefined);
    }
  }

  /** The socket is gone for good (the room ended, we were removed): drop everything. */
  close(): void {
    this.generation++;
    this.clearTimers();
    this.closePc();
    this.setState('closed');
  }

  /** Set (or clear) what we send for a source; m-lines and directions follow. */
  async setTrack(source: MediaSource, track: MediaStreamTrack | null): Promise<void> {
    this.local[source] = track;
    if (track && source === 'screen') track.contentHint = 'detail';
    if (!this.pc || !this.canPublish) return;
    if (this.syncSender(source)) this.requestOffer();
    const t = this.senders.get(source);
    if (t) await t.sender.replaceTrack(this.sends(source) ? track : null);
  }

  /** Tell the others that a source is muted (or not). */
  async mute(source: MediaSource, muted: boolean): Promise<void> {
    if (!this.active || !this.canPublish || !this.socket.connected) return;
    await this.socket.send(ClientEvent.media_mute, { source, muted });
  }

  /** Audio only: stop sending the camera and receiving video (the server stops forwarding
   * it once our receiving video m-lines are `inactive`). */
  async setAudioOnly(on: boolean): Promise<void> {
    if (on === this.audioOnly) return;
    this.audioOnly = on;
    if (!this.pc) return;
    for (const t of this.receivers) {
      if (t.receiver.track.kind === 'video') t.direction = on ? 'inactive' : 'recvonly';
    }
    this.syncSender('camera');
    const cam = this.senders.get('camera');
    if (cam) await cam.sender.replaceTrack(this.sends('camera') ? this.local.camera : null);
    this.requestOffer();
  }

  /** The room's socket is back (`joined`): the server kept our transport through its grace
   * period, so a live connection only offers again (in case an offer was lost with the
   * socket); a dead one gets a new transport. */
  resume(): void {
    if (!this.active) return;
    if (this.pc && this.pc.connectionState === 'connected') this.requestOffer();
    else this.rebuild();
  }

  /** A new transport from scratch: `media_leave`, then `media_join` (the same local tracks
   * are sent again). Retried with a backoff while it fails; waits for `joined` (resume())
   * while the room's socket is down. */
  rebuild(): void {
    if (this.stateValue === 'idle' || this.stateValue === 'closed') return;
    if (this.rebuildTimer !== null) return;
    this.generation++;
    this.clearTimers();
    this.closePc();
    this.setState('reconnecting');
    const delay = this.rebuildAttempts === 0 ? 0 : (REBUILD_BACKOFF_MS[this.rebuildAttempts - 1] ?? 8000);
    this.rebuildAttempts++;
    this.rebuildTimer = setTimeout(() => {
      this.rebuildTimer = null;
      void this.rebuildNow();
    }, delay);
  }

  private async rebuildNow(): Promise<void> {
    if (!this.socket.connected) return; // the room page calls rebuild() again on `joined`
    this.ownLeaves++;
    await this.socket.send(ClientEvent.media_leave, {}, 3000).catch(() => undefined);
    if (this.stateValue !== 'reconnecting') return;
    try {
      await this.start();
    } catch (err) {
      this.listener.error(err);
      if (err instanceof AckError && NO_RETRY.has(err.code)) {
        this.close();
        return;
      }
      this.setState('reconnecting');
      this.rebuild();
    }
  }

  // ------------------------------------------------------------ peer connection

  private newPc(iceServers: MediaIceServer[], gen: number): RTCPeerConnection {
    const servers: RTCIceServer[] = iceServers.map((s) => ({
      urls: s.urls,
      ...(s.username !== undefined ? { username: s.username } : {}),
      ...(s.credential !== undefined ? { credential: s.credential } : {}),
    }));
    const pc = new RTCPeerConnection({ iceServers: servers, bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    this.pc = pc;
    this.heldCandidates = [];
    pc.onicecandidate = (ev) => {
      if (gen !== this.generation) return;
      const c = ev.candidate;
      const payload: MediaCandidatePayload =
        c && c.candidate
          ? { candidate: c.candidate, sdp_mid: c.sdpMid, sdp_mline_index: c.sdpMLineIndex }
          : { candidate: '', sdp_mid: null, sdp_mline_index: null };
      if (payload.candidate.length > MEDIA_CANDIDATE_MAX_CHARS) return;
      if (this.heldCandidates) this.heldCandidates.push(payload);
      else this.sendCandidate(payload);
    };
    pc.onconnectionstatechange = () => {
      if (gen === this.generation) this.onConnectionState(pc);
    };
    return pc;
  }

  private closePc(): void {
    const pc = this.pc;
    this.pc = null;
    this.senders.clear();
    this.receivers.clear();
    this.heldCandidates = [];
    if (this.remoteTracks.size) {
      this.remoteTracks = new Map();
      this.listener.remote();
    }
    if (pc) {
      pc.onicecandidate = null;
      pc.onconnectionstatechange = null;
      pc.close();
    }
  }

  private onConnectionState(pc: RTCPeerConnection): void {
    switch (pc.connectionState) {
      case 'connected':
        this.clearTimers();
        this.rebuildAttempts = 0;
        this.setState('connected');
        break;
      case 'disconnected':
        this.setState('reconnecting');
        if (this.graceTimer === null && this.restartTimer === null) {
          this.graceTimer = setTimeout(() => {
            this.graceTimer = null;
            if (pc === this.pc && pc.connectionState !== 'connected') this.restartIce();
          }, DISCONNECT_GRACE_MS);
        }
        break;
      case 'failed':
        this.setState('reconnecting');
        this.restartIce();
        break;
      default:
        break;
    }
  }

  /** First an ICE restart; a new transport if that has not worked within RESTART_WAIT_MS. */
  restartIce(): void {
    if (this.restartTimer !== null) return;
    const pc = this.pc;
    if (!pc) return;
    if (this.serverRestartsIce === false) {
      this.rebuild();
      return;
    }
    this.requestOffer(true);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (pc === this.pc && pc.connectionState !== 'connected') this.rebuild();
    }, RESTART_WAIT_MS);
  }

  /** Whether a source's m-line should carry its track now. */
  private sends(source: MediaSource): boolean {
    if (!this.canPublish) return false;
    if (source === 'camera' && this.audioOnly) return false;
    return source === 'screen' ? this.local.screen !== null : true;
  }

  /** Add the source's m-line if it has a track and none yet, set its direction. Returns
   * whether the next offer must differ from the last. */
  private syncSender(source: MediaSource): boolean {
    const pc = this.pc;
    if (!pc) return false;
    let t = this.senders.get(source);
    const want: RTCRtpTransceiverDirection = this.sends(source) ? 'sendonly' : 'inactive';
    if (!t) {
      const track = this.local[source];
      if (!track || want === 'inactive') return false;
      const init: RTCRtpTransceiverInit = { direction: 'sendonly', streams: [this.localStream] };
      // One encoding, no simulcast: the SFU forwards what it gets.
      if (source !== 'microphone') init.sendEncodings = [{ maxBitrate: MAX_BITRATE[source] }];
      t = pc.addTransceiver(track, init);
      this.senders.set(source, t);
      return true;
    }
    if (t.direction === want) return false;
    t.direction = want;
    return true;
  }

  private addReceivers(audio: number, video: number): void {
    const pc = this.pc;
    if (!pc) return;
    for (let i = 0; i < audio; i++) this.receivers.add(pc.addTransceiver('audio', { direction: 'recvonly' }));
    // Audio only: no video m-lines at all (the server keeps those consumers waiting).
    if (!this.audioOnly) {
      for (let i = 0; i < video; i++) this.receivers.add(pc.addTransceiver('video', { direction: 'recvonly' }));
    }
  }

  // ------------------------------------------------------------ signalling

  private onNegotiate(audio: number, video: number): void {
    if (!this.active) return;
    if (!this.pc) {
      this.pendingRecv.audio += audio;
      this.pendingRecv.video += video;
      return;
    }
    this.addReceivers(audio, video);
    // Audio only, and the server only wants video: offering again would just repeat it.
    if (this.audioOnly && audio === 0 && video > 0) return;
    this.requestOffer();
  }

  private onClosed(reason: MediaClosedReason): void {
    if (reason === 'left' && this.ownLeaves > 0) {
      this.ownLeaves--;
      return;
    }
    if (!this.active) return;
    if (reason === 'demoted') {
      // Our producers are gone; we keep receiving.
      this.canPublish = false;
      for (const source of SOURCES) {
        this.local[source]?.stop(); // the camera light goes off
        this.local[source] = null;
        const t = this.senders.get(source);
        if (t) {
          t.direction = 'inactive';
          void t.sender.replaceTrack(null).catch(() => undefined);
        }
      }
      this.listener.closed(reason);
      this.requestOffer();
      return;
    }
    this.generation++;
    this.clearTimers();
    this.closePc();
    this.setState('closed');
    this.listener.closed(reason);
  }

  private requestOffer(iceRestart = false): void {
    if (iceRestart) this.iceRestartWanted = true;
    this.offerWanted = true;
    if (this.offeringGen === this.generation) return;
    void this.offerLoop(this.generation);
  }

  private async offerLoop(gen: number): Promise<void> {
    this.offeringGen = gen;
    try {
      while (this.offerWanted && gen === this.generation && this.pc) {
        this.offerWanted = false;
        const restart = this.iceRestartWanted;
        this.iceRestartWanted = false;
        await this.offerOnce(this.pc, restart, gen);
      }
    } catch (err) {
      if (gen === this.generation) this.offerFailed(err);
    } finally {
      if (this.offeringGen === gen) this.offeringGen = -1;
    }
  }

  private async offerOnce(pc: RTCPeerConnection, iceRestart: boolean, gen: number): Promise<void> {
    if (pc.getTransceivers().length === 0) return; // nothing to say yet: media_negotiate will come
    this.heldCandidates ??= [];
    const serverUfrag = iceUfrag(pc.remoteDescription?.sdp);
    const offer = await pc.createOffer(iceRestart ? { iceRestart: true } : {});
    await pc.setLocalDescription(offer);
    const sdp = pc.localDescription?.sdp ?? offer.sdp ?? '';
    const sources: Record<string, MediaSource> = {};
    for (const [source, t] of this.senders) if (t.mid !== null) sources[t.mid] = source;
    let answer: string;
    try {
      answer = (await this.socket.send(ClientEvent.media_offer, { sdp, sources }, 15000)).sdp;
    } catch (err) {
      if (gen === this.generation && pc.signalingState === 'have-local-offer') {
        await pc.setLocalDescription({ type: 'rollback' }).catch(() => undefined);
      }
      if (iceRestart && gen === this.generation && err instanceof AckError && err.code === 'media_negotiation_failed') {
        // A server that refuses ICE restarts: recover on a new transport, quietly.
        this.serverRestartsIce = false;
        this.rebuild();
        return;
      }
      throw err;
    }
    if (gen !== this.generation || pc.signalingState !== 'have-local-offer') return;
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    if (iceRestart && serverUfrag !== null) {
      this.serverRestartsIce = iceUfrag(answer) !== serverUfrag;
      if (!this.serverRestartsIce) {
        // Our new credentials are not the server's: only a new transport recovers.
        this.rebuild();
        return;
      }
    }
    this.mapRemote(pc, answer);
    const held = this.heldCandidates ?? [];
    this.heldCandidates = null;
    for (const c of held) this.sendCandidate(c);
  }

  private offerFailed(err: unknown): void {
    const code = err instanceof AckError ? err.code : 'unknown';
    this.listener.error(err);
    if (code === 'media_publish_not_allowed') {
      // An observer, or the room's publisher cap: carry on receiving only.
      this.canPublish = false;
      for (const source of SOURCES) this.syncSender(source);
      this.requestOffer();
      return;
    }
    if (code === 'offline') return; // the room page rebuilds on the next `joined`
    if (NO_RETRY.has(code)) {
      this.close();
      return;
    }
    this.rebuild();
  }

  private sendCandidate(c: MediaCandidatePayload): void {
    if (!this.socket.connected) return;
    // A refused candidate is not fatal: the server's own candidates usually suffice.
    void this.socket.send(ClientEvent.media_candidate, c).catch(() => undefined);
  }

  /** Which producer each receiving m-line carries, from the answer's msid lines. */
  private mapRemote(pc: RTCPeerConnection, sdp: string): void {
    const msids = msidByMid(sdp);
    const next = new Map<string, RemoteTrack>();
    for (const t of pc.getTransceivers()) {
      if (!this.receivers.has(t) || t.mid === null) continue;
      const dir = t.currentDirection;
      if (dir !== 'recvonly' && dir !== 'sendrecv') continue;
      const m = msids.get(t.mid);
      if (!m) continue;
      next.set(m.trackId, { producerId: m.trackId, streamId: m.streamId, track: t.receiver.track });
    }
    const same =
      next.size === this.remoteTracks.size &&
      [...next].every(([id, r]) => this.remoteTracks.get(id)?.track === r.track);
    this.remoteTracks = next;
    if (!same) this.listener.remote();
  }

  private clearTimers(): void {
    for (const timer of [this.restartTimer, this.graceTimer, this.connectTimer, this.rebuildTimer]) {
      if (timer !== null) clearTimeout(timer);
    }
    this.restartTimer = this.graceTimer = this.connectTimer = this.rebuildTimer = null;
  }

  private setState(s: SessionState): void {
    if (s === this.stateValue) return;
    this.stateValue = s;
    this.listener.state(s);
  }
}
