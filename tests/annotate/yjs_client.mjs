// A browser-like annotation client for the interop test (tests/annotate/test_yjs_interop.py):
// the real `yjs` and `y-protocols/sync` over socket.io with the msgpack parser, as the
// browser client does it (docs/protocol.md, `y` event).
//
// Reads one JSON object on stdin: {url, room, token, doc, expect: [annotation ids]}.
// Connects, syncs document `doc` (sync step 1, applies step 2, answers the server's step 1),
// adds annotation "n1" (author: its own participant id) to the Y.Map "annotations", sends
// the update and checks the ack is {ok: true}, then waits until every id in `expect` is in
// the map. Prints the map's toJSON() as one line of JSON on stdout and exits 0; on any
// failure or after TIMEOUT_MS, prints a message on stderr and exits non-zero.
//
// Modules resolve from web_client/node_modules (`npm ci` in web_client).

import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const TIMEOUT_MS = 10_000;
const REMOTE = 'server'; // transaction origin of what the server sent
const LOCAL = 'local';

function fail(message, code = 1) {
  process.stderr.write(`yjs_client: ${message}\n`);
  process.exit(code);
}

const here = path.dirname(fileURLToPath(import.meta.url));
const webClient = path.resolve(here, '..', '..', 'web_client');
const require = createRequire(path.join(webClient, 'package.json'));

let Y, syncProtocol, encoding, decoding, io, msgpackParser;
try {
  Y = require('yjs');
  syncProtocol = require('y-protocols/sync');
  encoding = require('lib0/encoding');
  decoding = require('lib0/decoding');
  ({ io } = require('socket.io-client'));
  msgpackParser = require('socket.io-msgpack-parser');
} catch (err) {
  fail(`cannot load the npm packages from ${webClient}/node_modules ` +
       `(run \`npm ci\` in web_client): ${err.message}`, 4);
}

const MESSAGE_SYNC = 0; // y-protocols message types (PROTOCOL.md)
const MESSAGE_AWARENESS = 1;

/** The annotation this client draws (annotations/SCHEMA.md), `author` = its participant id. */
function nodeNote(author) {
  const uid = '1.2.840.99.1';
  return {
    id: 'n1',
    author,
    created: 1700000000000, // beyond 31 bits: lib0 writes a float64
    updated: 1700000004000,
    kind: 'line',
    style: { color: '#00C0ff', width: 1.5 }, // 1.5: a float32
    anchor: { study_uid: uid, series_uid: uid, instance_uid: uid, frame: 1 }, // 1: a varInt
    geometry: { points: [[0.1, -20.25], [160, 180.5]] }, // 0.1: a float64
  };
}

/** An exact-size Uint8Array: notepack sends a Uint8Array's whole backing ArrayBuffer. */
function exact(u8) {
  return u8.byteOffset === 0 && u8.byteLength === u8.buffer.byteLength ? u8 : u8.slice();
}

/** Bytes received from the server (a Buffer for msgpack bin, an ArrayBuffer for ext 0). */
function bytesOf(data) {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new Error(`y data is not binary: ${typeof data}`);
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

async function main() {
  const cfg = await readStdin();
  const expect = cfg.expect ?? [];
  const doc = new Y.Doc();
  const ymap = doc.getMap('annotations');
  let synced = false;
  let received = 0;
  const problems = [];
  let done = false;
  let wake = () => {};
  const changed = () => wake();
  const timer = setTimeout(() => {
    fail(`timed out after ${TIMEOUT_MS} ms; map: ${JSON.stringify(ymap.toJSON())}; ` +
         `synced: ${synced}; y events: ${received}`, 2);
  }, TIMEOUT_MS);

  const socket = io(cfg.url, {
    path: '/socket.io/',
    transports: ['websocket'],
    parser: msgpackParser,
    auth: { room: cfg.room, token: cfg.token },
    reconnection: false,
  });

  const send = async (encoder) => {
    const data = exact(encoding.toUint8Array(encoder));
    return socket.timeout(5000).emitWithAck('y', { doc: cfg.doc, data });
  };

  socket.on('connect_error', (err) => fail(`connect_error: ${JSON.stringify(err.data ?? err.message)}`, 3));
  socket.on('error', (e) => problems.push(`error event: ${JSON.stringify(e)}`));
  socket.on('disconnect', (reason) => {
    if (!done) problems.push(`disconnected: ${reason}`);
    changed();
  });

  socket.on('y', (payload) => {
    if (payload?.doc !== cfg.doc) return;
    received += 1;
    const decoder = decoding.createDecoder(bytesOf(payload.data));
    const type = decoding.readVarUint(decoder);
    if (type === MESSAGE_AWARENESS) return;
    if (type !== MESSAGE_SYNC) {
      problems.push(`unexpected message type ${type}`);
      return changed();
    }
    const reply = encoding.createEncoder();
    encoding.writeVarUint(reply, MESSAGE_SYNC);
    const syncType = syncProtocol.readSyncMessage(decoder, reply, doc, REMOTE);
    if (syncType === syncProtocol.messageYjsSyncStep2) synced = true;
    if (syncType === syncProtocol.messageYjsSyncStep1) {
      // Answer the server's step 1 with our step 2 (what it may lack).
      send(reply).then(
        (ack) => { if (ack?.ok !== true) problems.push(`step 2 refused: ${JSON.stringify(ack)}`); changed(); },
        (err) => { problems.push(`step 2 not acked: ${err.message}`); changed(); },
      );
    }
    changed();
  });

  const until = async (pred) => {
    while (!pred()) {
      if (problems.length) fail(problems.join('; '));
      await new Promise((resolve) => { wake = resolve; });
    }
    if (problems.length) fail(problems.join('; '));
  };

  const joined = await new Promise((resolve) => socket.once('joined', resolve));
  const self = joined.self.id;

  // Sync step 1: the server answers with step 2 (what we lack), then its own step 1.
  const step1 = encoding.createEncoder();
  encoding.writeVarUint(step1, MESSAGE_SYNC);
  syncProtocol.writeSyncStep1(step1, doc);
  const ack1 = await send(step1);
  if (ack1?.ok !== true) fail(`sync step 1 refused: ${JSON.stringify(ack1)}`);
  await until(() => synced);

  // Draw: one transaction, its incremental update sent as an Update message.
  const updates = [];
  const onUpdate = (update, origin) => { if (origin === LOCAL) updates.push(update); };
  doc.on('update', onUpdate);
  doc.transact(() => ymap.set('n1', nodeNote(self)), LOCAL);
  doc.off('update', onUpdate);
  if (updates.length !== 1) fail(`expected one local update, got ${updates.length}`);
  const msg = encoding.createEncoder();
  encoding.writeVarUint(msg, MESSAGE_SYNC);
  syncProtocol.writeUpdate(msg, updates[0]);
  const ack = await send(msg);
  if (ack?.ok !== true) fail(`update refused: ${JSON.stringify(ack)}`);

  await until(() => expect.every((id) => ymap.has(id)));
  done = true;
  clearTimeout(timer);
  socket.disconnect();
  process.stdout.write(JSON.stringify(ymap.toJSON()) + '\n', () => process.exit(0));
}

main().catch((err) => fail(err?.stack ?? String(err)));
