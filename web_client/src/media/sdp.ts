/**
 * What the server's answer says about each m-line it sends on: `a=msid:<stream_id>
 * <producer_id>` (RFC 8830 §2). The browser may or may not copy the msid track id into
 * `track.id`, so remote tracks are matched to producers by MID from the SDP itself.
 */

export interface SectionMsid {
  streamId: string;
  trackId: string;
}

/** MID -> msid of every m-section of `sdp` that carries one. */
export function msidByMid(sdp: string): Map<string, SectionMsid> {
  const out = new Map<string, SectionMsid>();
  for (const section of sdp.split(/\r?\nm=/).slice(1)) {
    let mid: string | null = null;
    let msid: SectionMsid | null = null;
    for (const line of section.split(/\r?\n/)) {
      if (line.startsWith('a=mid:')) mid = line.slice(6).trim();
      else if (line.startsWith('a=msid:')) {
        const [streamId, trackId] = line.slice(7).trim().split(/\s+/);
        if (streamId && trackId) msid = { streamId, trackId };
      }
    }
    if (mid !== null && msid !== null) out.set(mid, msid);
  }
  return out;
}

/** The first `a=ice-ufrag` of `sdp` (BUNDLE: one for all m-lines), or null. */
export function iceUfrag(sdp: string | undefined | null): string | null {
  const m = sdp ? /^a=ice-ufrag:(\S+)/m.exec(sdp) : null;
  return m?.[1] ?? null;
}
