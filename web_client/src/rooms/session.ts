/**
 * Where this tab keeps a room's participant token. The server also sets it as the HttpOnly
 * cookie `consultd_p_<room>`, which is what resumes a closed-and-reopened tab; this copy is
 * the fallback passed in the socket `auth` when present.
 */
const key = (roomId: string): string => `consultd.token.${roomId}`;

export function loadToken(roomId: string): string | null {
  try {
    return sessionStorage.getItem(key(roomId));
  } catch {
    return null;
  }
}

export function saveToken(roomId: string, token: string): void {
  try {
    sessionStorage.setItem(key(roomId), token);
  } catch {
    // storage disabled: the cookie still works
  }
}

export function clearToken(roomId: string): void {
  try {
    sessionStorage.removeItem(key(roomId));
  } catch {
    // nothing stored
  }
}
