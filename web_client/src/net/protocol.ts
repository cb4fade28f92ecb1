/**
 * The consultd wire contract, as specified in docs/protocol.md: HTTP bodies, socket.io
 * event names and payloads. Types only, plus the event-name constants; no socket here.
 *
 * tests/ parses the `ClientEvent` and `ServerEvent` objects below and compares them with
 * the server's event names: keep one `name: 'name'` entry per line.
 */

// ---------------------------------------------------------------- HTTP objects

export type Role = 'host' | 'participant' | 'observer';
export type CodeRole = 'participant' | 'observer';
export type RoomStatus = 'open' | 'ended';
export type ParticipantState = 'lobby' | 'joined' | 'reconnecting' | 'left' | 'removed' | 'rejected';

export interface User {
  id: string;
  name: string;
  email: string;
  specialty: string;
  country: string;
  languages: string[];
}

export interface Room {
  id: string;
  title: string;
  summary: string;
  lobby: boolean;
  status: RoomStatus;
  host_user_id: string;
  created_at: string;
  link: string;
}

export interface ShareCode {
  id: string;
  role: CodeRole;
  expires_at: string;
  max_uses: number;
  uses: number;
  revoked: boolean;
  locked: boolean;
  created_at: string;
  /** Present only in the response that created the code. */
  code?: string;
}

export interface Admission {
  room_id: string;
  participant_id: string;
  token: string;
  role: Role;
  state: 'lobby' | 'admitted';
}

export interface AuditEvent {
  seq: number;
  at: string;
  actor: string;
  action: string;
  target: string;
  room_id: string;
  detail: Record<string, unknown>;
}

export interface Invite {
  user_id: string;
  email: string;
}

export interface RegisterBody {
  name: string;
  email: string;
  password: string;
  specialty: string;
  country: string;
  languages: string[];
}

export interface LoginBody {
  email: string;
  password: string;
}

export interface CreateRoomBody {
  title: string;
  summary: string;
  lobby: boolean;
}

export interface PatchRoomBody {
  lobby?: boolean;
  title?: string;
  summary?: string;
}

export interface CreateCodeBody {
  role: CodeRole;
  expires_in_s: number;
  max_uses: number;
}

export interface RedeemBody {
  code: string;
  display_name: string;
}

/** Error codes shared by HTTP error bodies, acks, `connect_error` and the `error` event. */
export const ERROR_CODES = [
  'bad_request',
  'validation_error',
  'unauthorized',
  'forbidden',
  'not_found',
  'conflict',
  'gone',
  'locked',
  'payload_too_large',
  'rate_limited',
  'annotation_rejected',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export interface ErrorInfo {
  code: string;
  message: string;
  details?: unknown[];
}

export interface ErrorBody {
  error: ErrorInfo;
}

// ---------------------------------------------------------------- socket.io objects

export interface Participant {
  id: string;
  name: string;
  role: Role;
  state: ParticipantState;
  user_id: string | null;
  specialty: string | null;
}

export interface ChatMessage {
  /** The client-generated id. */
  id: string;
  seq: number;
  room_id: string;
  author_id: string;
  author_name: string;
  text: string;
  /** Milliseconds since the epoch. */
  ts: number;
}

/** The `auth` object of the socket.io CONNECT packet. */
export interface SocketAuth {
  room: string;
  token?: string;
  since?: number;
}

// ---------------------------------------------------------------- event names

/** Events the client emits. */
export const ClientEvent = {
  chat: 'chat',
  admit: 'admit',
  reject: 'reject',
  remove: 'remove',
  transfer_host: 'transfer_host',
  set_lobby: 'set_lobby',
  end: 'end',
  leave: 'leave',
  y: 'y',
  viewer: 'viewer',
  media_join: 'media_join',
  media_offer: 'media_offer',
  media_candidate: 'media_candidate',
  media_mute: 'media_mute',
  media_leave: 'media_leave',
} as const;
export type ClientEventName = (typeof ClientEvent)[keyof typeof ClientEvent];

/** Events the server emits. */
export const ServerEvent = {
  lobby: 'lobby',
  joined: 'joined',
  presence: 'presence',
  chat: 'chat',
  room: 'room',
  rejected: 'rejected',
  removed: 'removed',
  ended: 'ended',
  server_shutdown: 'server_shutdown',
  error: 'error',
  y: 'y',
  imaging: 'imaging',
  viewer: 'viewer',
  media_negotiate: 'media_negotiate',
  media_tracks: 'media_tracks',
  media_speaker: 'media_speaker',
  media_closed: 'media_closed',
} as const;
export type ServerEventName = (typeof ServerEvent)[keyof typeof ServerEvent];

// ---------------------------------------------------------------- server -> client payloads

export interface LobbyPayload {
  room_id: string;
  participant: Participant;
}

export interface JoinedPayload {
  room: Room;
  self: Participant;
  participants: Participant[];
  history: ChatMessage[];
  history_complete: boolean;
  last_seq: number;
}

export interface ReasonPayload {
  reason: string;
}

export interface ServerShutdownPayload {
  reconnect_after_s: number;
}

export interface ErrorEventPayload {
  code: string;
  message: string;
  event: string;
}

/** One y-protocols message (sync step 1/2, update, awareness) for one annotation document.
 * Send an ArrayBuffer holding exactly the message: the browser build of notepack (bundled
 * by socket.io-msgpack-parser) encodes an ArrayBuffer as msgpack bin, but a Uint8Array as
 * a plain object, which the server refuses. */
export interface YPayload {
  doc: string;
  data: ArrayBuffer;
}

/** As received: the msgpack parser hands binary over as an ArrayBuffer (wrap it in a
 * Uint8Array before decoding). */
export interface YPayloadIn {
  doc: string;
  data: ArrayBuffer;
}

export interface ServerToClientEvents {
  lobby: (payload: LobbyPayload) => void;
  joined: (payload: JoinedPayload) => void;
  presence: (payload: Participant) => void;
  chat: (payload: ChatMessage) => void;
  room: (payload: Room) => void;
  rejected: (payload: ReasonPayload) => void;
  removed: (payload: ReasonPayload) => void;
  ended: (payload: Room) => void;
  server_shutdown: (payload: ServerShutdownPayload) => void;
  error: (payload: ErrorEventPayload) => void;
  y: (payload: YPayloadIn) => void;
  imaging: (payload: ImagingEvent) => void;
  viewer: (payload: ViewerEvent) => void;
  media_negotiate: (payload: MediaNegotiatePayload) => void;
  media_tracks: (payload: MediaTracksPayload) => void;
  media_speaker: (payload: MediaSpeakerPayload) => void;
  media_closed: (payload: MediaClosedPayload) => void;
}

/** What a presenter's viewer shows (docs/protocol.md, `viewer`); followers track it. */
export interface ViewState {
  study_uid: string;
  series_uid: string;
  sop_uid: string;
  /** 1-based frame of a multi-frame instance (1 otherwise). */
  frame: number;
  /** Window in rescaled units (HU for CT); null for colour images or the image's own. */
  window_center: number | null;
  window_width: number | null;
  /** 1 = the whole image fits the viewport. */
  zoom: number;
  /** Image pixels: the image point at the viewport centre is (columns/2 - pan_x, rows/2 - pan_y). */
  pan_x: number;
  pan_y: number;
}

/** `viewer` from the server: who presents (null: nobody) and what. */
export interface ViewerEvent {
  presenter: string | null;
  view: ViewState | null;
}

/** `imaging` from the server: an instance was stored in the room. */
export interface ImagingEvent {
  kind: 'instance_added' | string;
  study_uid: string;
  series_uid: string;
  sop_uid: string;
  /** Instances the series now holds. */
  instances: number;
  frames: number;
  instance_number: number | null;
  modality: string | null;
  burned_in: boolean;
}

/** `viewer` from the client: start (or keep) presenting `view`, or stop (`follow: false`). */
export interface ViewerPayload {
  follow: boolean;
  view?: ViewState | null;
}

// ---------------------------------------------------------------- media (docs/protocol.md, "Media")

export type MediaSource = 'microphone' | 'camera' | 'screen';

/** One published track of the room; a remote track's `track.id` is `producer_id` and its
 * `streams[0].id` is `stream_id`. */
export interface MediaTrack {
  producer_id: string;
  participant_id: string;
  stream_id: string;
  /** The publishing participant's display name. */
  name: string;
  kind: 'audio' | 'video';
  source: MediaSource;
  muted: boolean;
}

export interface MediaIceServer {
  urls: string[];
  username?: string;
  credential?: string;
}

export interface MediaJoinAck {
  ice_servers: MediaIceServer[];
  can_publish: boolean;
  tracks: MediaTrack[];
}

export interface MediaOfferPayload {
  sdp: string;
  /** The source of each sending m-line, by MID. */
  sources: Record<string, MediaSource>;
}

export interface MediaCandidatePayload {
  /** "" ends the candidates. */
  candidate: string;
  sdp_mid: string | null;
  sdp_mline_index: number | null;
}

export interface MediaMutePayload {
  source: MediaSource;
  muted: boolean;
}

/** Add that many `recvonly` transceivers of each kind, then offer again. */
export interface MediaNegotiatePayload {
  audio: number;
  video: number;
}

export interface MediaTracksPayload {
  tracks: MediaTrack[];
}

export interface MediaSpeakerPayload {
  participant_id: string | null;
}

export type MediaClosedReason = 'left' | 'removed' | 'ended' | 'demoted';

export interface MediaClosedPayload {
  reason: MediaClosedReason;
}

export const MEDIA_SDP_MAX_CHARS = 65536;
export const MEDIA_CANDIDATE_MAX_CHARS = 1024;

// ---------------------------------------------------------------- client -> server payloads

export type AckFail = { ok: false; error: ErrorInfo };
export type Ack<T extends object = object> = ({ ok: true } & T) | AckFail;

export interface ChatPayload {
  id: string;
  text: string;
}

export interface ParticipantRef {
  participant_id: string;
}

export interface SetLobbyPayload {
  enabled: boolean;
}

export type Empty = Record<string, never>;

export interface ClientToServerEvents {
  y: (payload: YPayload, ack: (res: Ack) => void) => void;
  chat: (payload: ChatPayload, ack: (res: Ack<{ message: ChatMessage }>) => void) => void;
  admit: (payload: ParticipantRef, ack: (res: Ack) => void) => void;
  reject: (payload: ParticipantRef, ack: (res: Ack) => void) => void;
  remove: (payload: ParticipantRef, ack: (res: Ack) => void) => void;
  transfer_host: (payload: ParticipantRef, ack: (res: Ack) => void) => void;
  set_lobby: (payload: SetLobbyPayload, ack: (res: Ack) => void) => void;
  end: (payload: Empty, ack: (res: Ack) => void) => void;
  leave: (payload: Empty, ack: (res: Ack) => void) => void;
  viewer: (payload: ViewerPayload, ack: (res: Ack) => void) => void;
  media_join: (payload: Empty, ack: (res: Ack<MediaJoinAck>) => void) => void;
  media_offer: (payload: MediaOfferPayload, ack: (res: Ack<{ sdp: string }>) => void) => void;
  media_candidate: (payload: MediaCandidatePayload, ack: (res: Ack) => void) => void;
  media_mute: (payload: MediaMutePayload, ack: (res: Ack) => void) => void;
  media_leave: (payload: Empty, ack: (res: Ack) => void) => void;
}

/** Chat limits from docs/protocol.md. */
export const CHAT_MAX_CHARS = 4000;
export const CHAT_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
export const DISPLAY_NAME_MAX = 80;
export const PASSWORD_MIN = 10;
export const PASSWORD_MAX = 256;
export const CODE_EXPIRY_MIN_S = 60;
export const CODE_EXPIRY_MAX_S = 604800;
export const CODE_MAX_USES_MAX = 500;
